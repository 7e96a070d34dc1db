"""From a loss to a vector field (docs/theory.md §2, §3).

Every loss is written once as ``loss(state, held, A)``, where ``held`` is the slot in which the
stop-gradient copies stand. From it:

* the conservative field is `F(z) = -grad_z L(z, z)` (both slots differentiated);
* the stop-gradient field is `F_sg(z) = -d_1 L(z, h)|_{h=z}` (only the first slot
  differentiated). It equals `-grad[L(z, stop_gradient(z))]` in value, but is written without
  `lax.stop_gradient` so that the autodiff Jacobian of `z -> F_sg(z)` is correct: it
  differentiates through the held slot too (docs/theory.md §3, "a trap").

[`training_loss`][collapse_jax.training_loss] is the scalar a discrete optimiser (optax)
differentiates; there the held slot is filled with `lax.stop_gradient(state)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

__all__ = ["VectorField", "vector_field", "training_loss"]

Loss = Callable[[Any, Any, Any], jax.Array]


class VectorField(eqx.Module):
    """A diffrax-shaped vector field `(t, state, args) -> d state / dt` derived from a loss.

    Attributes:
        loss: ``loss(state, held, args) -> scalar``.
        stop_gradient: if True, differentiate the first slot only (non-conservative field).
    """

    loss: Loss = eqx.field(static=True)
    stop_gradient: bool = eqx.field(static=True, default=False)

    def __call__(self, t, state, args):
        del t
        if self.stop_gradient:
            # Only the live slot is differentiated; `held` is the same state, so the outer
            # derivative (the Jacobian) still sees how the held copy moves with the state.
            grad = jax.grad(self.loss, argnums=0)(state, state, args)
        else:
            grad = jax.grad(lambda s: self.loss(s, s, args))(state)
        return jtu.tree_map(jnp.negative, grad)


def vector_field(loss: Loss, *, stop_gradient: bool = False) -> VectorField:
    """`-grad` of ``loss``: conservative, or with the held slot frozen (stop-gradient)."""
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {loss!r}")
    return VectorField(loss, bool(stop_gradient))


def training_loss(loss: Loss, *, stop_gradient: bool = False) -> Callable[[Any, Any], jax.Array]:
    """The scalar `z -> L(z, z)` or `z -> L(z, stop_gradient(z))`, for optimisers.

    Its gradient equals `-vector_field(loss, stop_gradient=...)` in value. Do not take a
    Jacobian of that gradient for the stop-gradient case (docs/theory.md §3): use the field.
    """

    def value(state, args):
        # The held copy is a constant for the optimiser: what stop-gradient means in training.
        held = jax.lax.stop_gradient(state) if stop_gradient else state
        return loss(state, held, args)

    return value
