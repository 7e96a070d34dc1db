"""Pair sums in expanded form (docs/theory.md §6): never build the `N x K x d` pair tensor."""

import jax.numpy as jnp

from .._types import Alignment, Array, Float, Scalar


def pair_sum(
    A: Alignment, a: Float[Array, "samples dim"], b: Float[Array, "classes dim"]
) -> Scalar:
    """`sum_ic A_ic |a_i - b_c|^2`, computed as

    `sum_i r_i |a_i|^2 - 2 sum_i a_i . (A b)_i + sum_c s_c |b_c|^2`, with `r = A 1`, `s = A^T 1`.

    Cost `O(N d K)` for the value and, through `jax.grad`, for the gradient.
    """
    r = jnp.sum(A, axis=1)
    s = jnp.sum(A, axis=0)
    return (
        jnp.sum(r * jnp.sum(a * a, axis=-1))
        - 2.0 * jnp.sum(a * (A @ b))
        + jnp.sum(s * jnp.sum(b * b, axis=-1))
    )
