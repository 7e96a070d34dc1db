"""jaxtyping aliases shared by the package (named axes follow MODEL.md §1)."""

from typing import NamedTuple

from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "Array",
    "Float",
    "PRNGKeyArray",
    "Scalar",
    "EmbeddingState",
    "ProjectionState",
    "Alignment",
]

Scalar = Float[Array, ""]
Alignment = Float[Array, "samples classes"]


class EmbeddingState(NamedTuple):
    """State of the embedding-only model (MODEL.md §2).

    Attributes:
        x: sample embeddings, shape `(N, d)`.
        y: label embeddings, shape `(K, d)`.
    """

    x: Float[Array, "samples dim"]
    y: Float[Array, "classes dim"]


class ProjectionState(NamedTuple):
    """State of the projection-head model (MODEL.md §3).

    Attributes:
        x: sample embeddings, shape `(N, d)`.
        y: label embeddings, shape `(K, d)`.
        W: the projection (predictor) acting on the data branch, shape `(d, d)`.
    """

    x: Float[Array, "samples dim"]
    y: Float[Array, "classes dim"]
    W: Float[Array, "dim dim"]
