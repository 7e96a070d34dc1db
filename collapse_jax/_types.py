"""jaxtyping aliases shared by the package (named axes follow docs/theory.md §1)."""

from typing import NamedTuple

from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "Array",
    "Float",
    "PRNGKeyArray",
    "Scalar",
    "EmbeddingState",
    "Alignment",
    "TeacherStudentState",
    "ProjectionState",
]

Scalar = Float[Array, ""]
Alignment = Float[Array, "samples classes"]


class EmbeddingState(NamedTuple):
    """State of the embedding-only model (docs/theory.md §2).

    Attributes:
        x: sample embeddings, shape `(N, d)`.
        y: label embeddings, shape `(K, d)`.
    """

    x: Float[Array, "samples dim"]
    y: Float[Array, "classes dim"]


class TeacherStudentState(NamedTuple):
    """State of the linear teacher-student model (docs/theory.md §4).

    Attributes:
        U: student map, shape `(p, D)`; sample embeddings are `x_i = U xi_i`.
        y: label embeddings, shape `(2, p)`: row 0 is `y_+` (class `c = +1`), row 1 `y_-`.
        W: predictor, shape `(p, p)`, for the projection variant; ``None`` for the plain one
            (``None`` is an empty pytree, so fields and optimisers skip it).
    """

    U: Float[Array, "student input"]
    y: Float[Array, "2 student"]
    W: Float[Array, "student student"] | None = None


class ProjectionState(NamedTuple):
    """State of the projection-head model (docs/theory.md §3).

    Attributes:
        x: sample embeddings, shape `(N, d)`.
        y: label embeddings, shape `(K, d)`.
        W: the projection (predictor) acting on the data branch, shape `(d, d)`.
    """

    x: Float[Array, "samples dim"]
    y: Float[Array, "classes dim"]
    W: Float[Array, "dim dim"]
