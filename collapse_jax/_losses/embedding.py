"""Embedding-only model (docs/theory.md §2)."""

from .._types import Alignment, EmbeddingState, Scalar
from ._pairs import pair_sum


def embedding_loss(state: EmbeddingState, held: EmbeddingState, A: Alignment) -> Scalar:
    """`L_E(x, y) = 1/2 sum_i sum_c A_ic |x_i - y_c|^2` (docs/theory.md §2).

    Every loss of the package takes the state, a *held* copy of it (the slot where
    stop-gradient copies stand, docs/theory.md §3) and the alignment matrix. This loss holds nothing
    fixed, so ``held`` is unused: its field is conservative.
    """
    del held
    return 0.5 * pair_sum(A, state.x, state.y)
