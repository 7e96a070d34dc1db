"""Projection-head model (docs/theory.md §3)."""

from .._types import Alignment, ProjectionState, Scalar
from ._pairs import pair_sum


def projection_loss(state: ProjectionState, held: ProjectionState, A: Alignment) -> Scalar:
    """`L_P = 1/2 sum_ic A_ic [ |W x_i - h.y_c|^2 + |y_c - h.x_i|^2 ]` (docs/theory.md §3).

    With ``held = state`` this is `L_P(x, y, W)` and its gradient the conservative field; with
    ``held`` frozen it is `L_P^sg` (same value), whose first-slot gradient is the stop-gradient
    field `F_sg` (see [`vector_field`][collapse_jax.vector_field]). Both pair sums use the expanded
    form ([`pair_sum`][collapse_jax.pair_sum]), cost `O(N d (d + K))`, for any `A` and any
    `d`.
    """
    # Held: the label targets of the predictor term and the sample targets of the direct term.
    predictor = pair_sum(A, state.x @ state.W.T, held.y)
    direct = pair_sum(A, held.x, state.y)
    return 0.5 * (predictor + direct)
