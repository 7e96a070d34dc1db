"""The embedding model (docs/theory.md §2): its metrics and its Jacobian spectrum report.

Registry row ``mse`` of [`MODELS`][collapse_jax.MODELS]. The state is
[`EmbeddingState`][collapse_jax.EmbeddingState], the start
[`init_embedding_state`][collapse_jax.init_embedding_state], the loss
[`embedding_loss`][collapse_jax.embedding_loss], the closed forms in
[`exact_solution`][collapse_jax.exact_solution] and
[`embedding_spectrum`][collapse_jax.embedding_spectrum].
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._data import ShareRule, StandardData, init_embedding_state
from .._exact import exact_min_l2, exact_solution, lambda_pm, sector_eigenvalues
from .._fields import vector_field
from .._integrate import log_times, simulate
from .._losses import embedding_loss
from .._metrics import (
    _metrics_along,
    fit_fast_rate,
    fit_slow_rate,
    min_l2,
    nearest_label_accuracy,
)
from .._spectral import asymmetry_norm, eigenvalues, is_symmetric, jacobian, sector_spectra
from .._sweep import SweepResult, frustration_sweep
from .._types import Array, Float

__all__ = [
    "embedding_metrics",
    "embedding_spectrum_report",
    "embedding_member",
    "embedding_run_report",
    "embedding_sweep",
    "fitted_rates",
]


def embedding_metrics(state, data) -> dict[str, Float[Array, ""]]:
    """MinL2, loss and accuracies of one embedding-model state (docs/theory.md §1, §2).

    ``data`` is a [`StandardData`][collapse_jax.StandardData]; `vmap` over a leading time axis
    of ``state`` for a trajectory.
    """
    from .._losses import embedding_loss

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
    [`sector_spectra`][collapse_jax.sector_spectra]).
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


Method = Literal["exact", "integrate"]  # the two paths of an embedding sweep member


def embedding_member(
    data, key, *, dim: int, ts, method: Method = "exact", full_metrics: bool = True, **solve_kw
):
    """One sweep member of the embedding model: metrics at ``ts`` from the default start.

    ``method="exact"`` uses the sector solution (MinL2 round-off free); ``"integrate"`` uses
    [`simulate`][collapse_jax.simulate] with ``solve_kw`` (and ``throw=False``). With
    ``full_metrics=False`` the exact path computes MinL2 alone (`O(K^2 d)` per time point:
    no state is formed) and accuracy and loss are NaN. A member whose state or MinL2 is not
    finite at some save time reports ``result`` 9 (diffrax's ``nonfinite``), so a sweep counts
    it among its failed members.
    """
    import diffrax

    nonfinite = jnp.asarray(diffrax.RESULTS.nonfinite._value, jnp.int32)
    z0 = init_embedding_state(key, data.n_samples, data.n_classes, dim)
    if method == "exact" and not full_metrics:
        ml = exact_min_l2(z0, data, ts)
        nan = jnp.full_like(ml, jnp.nan)
        return {
            "min_l2": ml,
            "accuracy": nan,
            "accuracy_all": nan,
            "loss": nan,
            "result": jnp.where(jnp.all(jnp.isfinite(ml)), 0, nonfinite).astype(jnp.int32),
            "steps": jnp.zeros((), jnp.int32),
        }
    if method == "exact":
        ys = exact_solution(z0, data, ts)
        ml = exact_min_l2(z0, data, ts)
        result = steps = jnp.zeros((), jnp.int32)
    elif method == "integrate":
        sol = simulate(vector_field(embedding_loss), z0, data.matrix(), ts=ts, **solve_kw)
        ys = sol.ys
        ml = jax.vmap(min_l2)(ys.y)
        result = sol.result._value.astype(jnp.int32)
        steps = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    else:
        raise ValueError(f"method must be 'exact' or 'integrate', got {method!r}")
    m = jax.vmap(lambda s: embedding_metrics(s, data))(ys)
    finite = jnp.all(jnp.isfinite(ys.x)) & jnp.all(jnp.isfinite(ys.y)) & jnp.all(jnp.isfinite(ml))
    # a member whose state is not finite failed, whatever its solver said
    result = jnp.where(finite | (result != 0), result, nonfinite)
    return {
        "min_l2": ml,
        "accuracy": m["accuracy"],
        "accuracy_all": m["accuracy_all"],
        "loss": m["loss"],
        "result": result,
        "steps": steps,
    }


def embedding_run_report(
    data: StandardData,
    state0,
    ts,
    *,
    solver: Literal["kvaerno5", "tsit5", "exact"] = "kvaerno5",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 200_000,
    progress_meter=None,
) -> dict:
    """Integrate the embedding model from ``state0``; its metrics at ``ts`` vs the exact solution.

    What ``collapse-jax simulate`` reports (embedding model).

    Args:
        data: a [`StandardData`][collapse_jax.StandardData].
        state0: the start ([`init_embedding_state`][collapse_jax.init_embedding_state]).
        ts: save times.
        solver: ``"kvaerno5"`` (implicit, [`simulate`][collapse_jax.simulate]'s default),
            ``"tsit5"`` (explicit) or ``"exact"`` (the sector solution
            [`exact_solution`][collapse_jax.exact_solution], no integration).
        rtol, atol: tolerances (default [`DEFAULT_RTOL`][collapse_jax.DEFAULT_RTOL],
            [`DEFAULT_ATOL`][collapse_jax.DEFAULT_ATOL]).
        max_steps, progress_meter: as in [`simulate`][collapse_jax.simulate].

    Returns:
        ``t``, ``min_l2``, ``loss``, ``accuracy``, ``accuracy_all`` (numpy, `(T,)`),
        ``final_state_norm``, ``solver``, ``result`` (its name), ``steps``, ``rtol``, ``atol``,
        ``seconds`` (integration and metrics), then the comparison with the exact solution
        ([`compare_with_exact`][collapse_jax.compare_with_exact]: ``min_l2_exact``,
        ``max_rel_error_vs_exact``), ``slow_rate_fit``, ``slow_rate_predicted``,
        ``fast_rate_predicted`` and ``final_min_l2``.
    """
    import time

    import diffrax

    from .._exact import compare_with_exact
    from .._integrate import DEFAULT_ATOL, DEFAULT_RTOL, result_name
    from .._projection import _final_norm

    if solver not in ("kvaerno5", "tsit5", "exact"):
        raise ValueError(f"solver must be 'kvaerno5', 'tsit5' or 'exact', got {solver!r}")
    rtol = DEFAULT_RTOL if rtol is None else rtol
    atol = DEFAULT_ATOL if atol is None else atol
    start = time.perf_counter()
    if solver == "exact":
        ys = exact_solution(state0, data, ts)
        result, steps = "successful", 0
    else:
        sol = simulate(
            vector_field(embedding_loss),
            state0,
            data.matrix(),
            ts=ts,
            solver=None if solver == "kvaerno5" else diffrax.Tsit5(),
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
            progress_meter=progress_meter,
        )
        ys, result, steps = sol.ys, result_name(sol.result), int(sol.stats["num_steps"])
    metrics = _metrics_along(embedding_metrics, ys, data)
    seconds = time.perf_counter() - start
    ml = np.asarray(metrics["min_l2"])
    exact = compare_with_exact(state0, data, ts, ml)
    return {
        "t": np.asarray(ts),
        "min_l2": ml,
        "loss": np.asarray(metrics["loss"]),
        "accuracy": np.asarray(metrics["accuracy"]),
        "accuracy_all": np.asarray(metrics["accuracy_all"]),
        "final_state_norm": _final_norm(ys),
        "solver": solver,
        "result": result,
        "steps": steps,
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "min_l2_exact": exact["min_l2_exact"],
        "max_rel_error_vs_exact": exact["max_rel_error_vs_exact"],
        "slow_rate_fit": fit_slow_rate(ts, ml),
        "slow_rate_predicted": exact["slow_rate_predicted"],
        "fast_rate_predicted": exact["fast_rate_predicted"],
        "final_min_l2": float(ml[-1]),
    }


def embedding_sweep(
    frustration,
    seeds,
    *,
    n_classes: int = 3,
    per_class: int = 10,
    dim: int = 4,
    ts=None,
    method: Method = "exact",
    rule: ShareRule = "round",
    max_shared: int | None = None,
    devices=None,
    full_metrics: bool = True,
    **solve_kw,
) -> SweepResult:
    """Sweep the embedding model over frustration ratios x seeds in one ``jit(vmap)`` call.

    Args:
        frustration: ratios `phi` in `[0, 1)`.
        seeds: integer seeds (or a count ``int``: seeds ``0 .. count-1``).
        ts: save times (default 100 log-spaced in `[1e-2, 1e3]`).
        method: ``"exact"`` (sector fast path) or ``"integrate"`` (diffrax, ``solve_kw``).
        rule: how ratios become shared rows
            ([`frustration_data`][collapse_jax.frustration_data]).
        max_shared: the fixed number of shared rows
            ([`frustration_data`][collapse_jax.frustration_data]); default: the most any
            ratio needs.
        devices: devices of the sweep mesh (default all).
        full_metrics: see [`embedding_member`][collapse_jax.embedding_member].
    """
    ts = log_times(1e-2, 1e3, 100) if ts is None else jnp.asarray(ts)

    def member(d, k):
        return embedding_member(
            d, k, dim=dim, ts=ts, method=method, full_metrics=full_metrics, **solve_kw
        )

    metadata = {
        "model": "embedding",
        "method": method,
        "full_metrics": full_metrics,
        "dim": dim,
        "solve_kw": {k: repr(v) for k, v in solve_kw.items()},
    }
    return frustration_sweep(
        member,
        frustration,
        seeds,
        ts,
        n_classes=n_classes,
        per_class=per_class,
        rule=rule,
        max_shared=max_shared,
        devices=devices,
        metadata=metadata,
    )


def fitted_rates(result: SweepResult) -> dict[str, np.ndarray]:
    """Per-member slow and fast rates of MinL2(t) and their predictions `lambda_pm`."""
    F, S = result.result.shape
    slow = np.full((F, S), np.nan)
    fast = np.full((F, S), np.nan)
    for i in range(F):
        for j in range(S):
            slow[i, j] = fit_slow_rate(result.t, result.min_l2[i, j])
            fast[i, j] = fit_fast_rate(result.t, result.min_l2[i, j], slow[i, j])
    lp, lm = lambda_pm(float(result.metadata["per_class"]), jnp.asarray(result.shared))
    return {
        "slow_rate_fit": slow,
        "fast_rate_fit": fast,
        "slow_rate_predicted": np.asarray(lp),
        "fast_rate_predicted": np.asarray(lm),
    }
