"""The embedding model (docs/theory.md §2): its metrics.

Registry row ``mse`` of [`collapse_jax.models`][collapse_jax.models]. The state is
[`EmbeddingState`][collapse_jax.EmbeddingState], the start
[`init_embedding_state`][collapse_jax.data.init_embedding_state], the loss
[`embedding_loss`][collapse_jax.losses.embedding_loss], the closed forms in
[`collapse_jax.exact`][collapse_jax.exact] and
[`embedding_spectrum`][collapse_jax.models.embedding_spectrum].
"""

from __future__ import annotations

from .._types import Array, Float
from ..metrics import min_l2, nearest_label_accuracy

__all__ = ["embedding_metrics"]


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
