"""The projection-head model (docs/theory.md §3): its metrics and predicted zero modes.

Registry rows ``predictor`` and ``simsiam`` of [`collapse_jax.models`][collapse_jax.models]
(the same loss without and with stop-gradient). The state is
[`ProjectionState`][collapse_jax.ProjectionState], the start
[`init_projection_state`][collapse_jax.data.init_projection_state], the loss
[`projection_loss`][collapse_jax.losses.projection_loss], the `N`-independent path
[`simulate_projection`][collapse_jax.projection.simulate_projection].
"""

from __future__ import annotations

from .._types import Array, Float
from ..metrics import min_l2, nearest_label_accuracy
from ..projection import stop_gradient_zero_modes as stop_gradient_zero_modes

__all__ = ["projection_metrics", "stop_gradient_zero_modes"]


def projection_metrics(state, data) -> dict[str, Float[Array, ""]]:
    """MinL2, loss and accuracies of one projection-model state (docs/theory.md §1, §3).

    Accuracy uses the prediction `yhat(x) = W x`. The loss is `L_P` (equal in value to
    `L_P^sg`). `vmap` over a leading time axis of ``state`` for a trajectory.
    """
    from ..losses import projection_loss

    n_clean = data.n_classes * data.per_class
    predictions = state.x[:n_clean] @ state.W.T
    acc, acc_all = nearest_label_accuracy(predictions, state.y, data.per_class, data.shared_count)
    return {
        "min_l2": min_l2(state.y),
        "loss": projection_loss(state, state, data.matrix()),
        "accuracy": acc,
        "accuracy_all": acc_all,
    }
