"""The embedding model (docs/theory.md §2): its metrics and its Jacobian spectrum report.

Registry row ``mse`` of [`collapse_jax.models`][collapse_jax.models]. The state is
[`EmbeddingState`][collapse_jax.EmbeddingState], the start
[`init_embedding_state`][collapse_jax.data.init_embedding_state], the loss
[`embedding_loss`][collapse_jax.losses.embedding_loss], the closed forms in
[`collapse_jax.exact`][collapse_jax.exact] and
[`embedding_spectrum`][collapse_jax.models.embedding_spectrum].
"""

from __future__ import annotations

import numpy as np

from .._types import Array, Float
from ..data import StandardData
from ..exact import sector_eigenvalues
from ..metrics import min_l2, nearest_label_accuracy
from ..spectral import asymmetry_norm, eigenvalues, is_symmetric, jacobian, sector_spectra

__all__ = ["embedding_metrics", "embedding_spectrum_report"]


def embedding_metrics(state, data) -> dict[str, Float[Array, ""]]:
    """MinL2, loss and accuracies of one embedding-model state (docs/theory.md §1, §2).

    ``data`` is a [`StandardData`][collapse_jax.data.StandardData]; `vmap` over a leading time axis
    of ``state`` for a trajectory.
    """
    from ..losses import embedding_loss

    n_clean = data.n_classes * data.per_class
    acc, acc_all = nearest_label_accuracy(
        state.x[:n_clean], state.y, data.per_class, data.shared_count
    )
    return {
        "min_l2": min_l2(state.y),
        "loss": embedding_loss(state, state, data.matrix()),
        "accuracy": acc,
        "accuracy_all": acc_all,
    }


def embedding_spectrum_report(field, state, data: StandardData) -> dict:
    """Jacobian spectrum of the embedding model vs the closed form of docs/theory.md §2.

    Returns the keys of ``collapse-jax spectrum --json`` (docs/cli.md): ``numeric``,
    ``numeric_imag``, ``predicted``, ``max_abs_error`` (max over the whole sorted spectrum and
    over every sector), ``sectors``, ``symmetric``, ``asymmetry_norm``; plus
    ``sector_leakage`` (largest leakage, see
    [`sector_spectra`][collapse_jax.spectral.sector_spectra]).
    """
    dim = state.x.shape[-1]
    J = jacobian(field, state, data.matrix())
    ev = eigenvalues(J)
    predicted_rows = sector_eigenvalues(data)
    spectra = sector_spectra(J, data, dim)
    sectors, errors, leak = {}, [], 0.0
    for name, pred in predicted_rows.items():
        pred_d = np.sort(np.repeat(pred, dim))
        num = spectra[name]["numeric"]
        errors.append(np.max(np.abs(num - pred_d), initial=0.0))
        leak = max(leak, spectra[name]["leakage"])
        sectors[name] = {"numeric": num.real.tolist(), "predicted": pred_d.tolist()}
    predicted = np.sort(np.concatenate([np.repeat(p, dim) for p in predicted_rows.values()]))
    errors.append(np.max(np.abs(ev - predicted)))
    return {
        "numeric": ev.real.tolist(),
        "numeric_imag": ev.imag.tolist(),
        "predicted": predicted.tolist(),
        "max_abs_error": float(max(errors)),
        "sectors": sectors,
        "symmetric": is_symmetric(J),
        "asymmetry_norm": asymmetry_norm(J),
        "sector_leakage": leak,
    }
