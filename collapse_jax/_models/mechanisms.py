"""The collapse-prevention mechanisms' own pieces: the EMA field and its closed form.

Their losses live in [`MechanismArgs`][collapse_jax.MechanismArgs]; their
registry rows in [`MODELS`][collapse_jax.MODELS].
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import numpy as np

from .._data import init_embedding_state, init_projection_state
from .._fields import VectorField
from .._losses.mechanisms import EMAPredictorState, EMAState

__all__ = ["EMAField", "ema_bias_matrix", "init_ema_state", "init_ema_predictor_state"]


class EMAField(eqx.Module):
    """Field of a mechanism with an EMA target (docs/theory.md §3 held-slot construction + EMA).

    `F(z) = -d_1 L(z, h)|_{h=z}` for every part of the state, except
    `dy_ema/dt = (y - y_ema) / tau_ema` with `tau_ema` = ``args.params["tau_ema"]`` (the
    loss holds `y_ema` only in the held slot, so it exerts no force on the live copy). Written
    without ``lax.stop_gradient``: the autodiff Jacobian of this field is correct.
    """

    loss: Callable = eqx.field(static=True)

    def __call__(self, t, state, args):
        F = VectorField(self.loss, stop_gradient=True)(t, state, args)
        tau = args.params["tau_ema"]
        return F._replace(y_ema=(state.y - state.y_ema) / tau)


def init_ema_state(key, n_samples, n_classes, dim) -> EMAState:
    """The embedding model's default start (docs/theory.md §1) with `y_ema = y`."""
    z = init_embedding_state(key, n_samples, n_classes, dim)
    return EMAState(z.x, z.y, z.y)


def init_ema_predictor_state(key, n_samples, n_classes, dim) -> EMAPredictorState:
    """The projection model's default start (docs/theory.md §1) with `y_ema = y`."""
    z = init_projection_state(key, n_samples, n_classes, dim)
    return EMAPredictorState(z.x, z.y, z.W, z.y)


def ema_bias_matrix(per_class: float, shared: float, tau_ema: float) -> np.ndarray:
    """Closed form: the EMA mechanism on the standard data set, class-bias sector.

    The EMA field is linear. Subtracting the mean over classes of the clean class means
    `x̄_c`, the labels `y_c` and the targets `e_c = y_ema,c` closes the bias sector
    (the shared samples carry no class bias):

    `d/dt (δx̄, δy, δe) = [[-1, 0, 1], [n, -(n+M), 0], [0, 1/tau, -1/tau]] (δx̄, δy, δe)`,

    each eigenvalue with multiplicity `(K-1) d` in the full Jacobian. `det = -M / tau`: for
    `M > 0` no eigenvalue is zero and the bias decays (collapse, like MSE, docs/theory.md §2), for
    `M = 0` one eigenvalue is zero (the bias is conserved). `tau -> 0` gives back MSE's
    `lambda_pm`.
    """
    n, M, tau = float(per_class), float(shared), float(tau_ema)
    return np.array([[-1.0, 0.0, 1.0], [n, -(n + M), 0.0], [0.0, 1.0 / tau, -1.0 / tau]])
