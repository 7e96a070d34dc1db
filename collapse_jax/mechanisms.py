"""The registry of collapse-prevention mechanisms: name -> state, loss, field.

Each [`Mechanism`][collapse_jax.mechanisms.Mechanism] bundles a loss of
[`collapse_jax.losses.mechanisms`][collapse_jax.losses.mechanisms] (signature
``loss(state, held, args)`` with ``args`` a
[`MechanismArgs`][collapse_jax.losses.mechanisms.MechanismArgs]), the default initial state of
docs/theory.md §1 (plus `y_ema = y` and `W = I + 0.1 N(0, 1)` where the state has them), which field
to derive (conservative `-grad L(z, z)`, stop-gradient `-d_1 L(z, h)|_{h=z}`, or
[`EMAField`][collapse_jax.mechanisms.EMAField]) and its main hyper-parameter. Fields, Jacobians
([`collapse_jax.jacobian`][collapse_jax.spectral.jacobian]), integration
([`collapse_jax.simulate`][collapse_jax.integrate.simulate]), steady states and sweeps take these
objects unchanged.

| name | loss | field | main hyper-parameter (default) |
|---|---|---|---|
| ``mse`` | `L_E` (baseline, docs/theory.md §2) | conservative | none |
| ``infonce`` | InfoNCE, squared-distance logits | conservative | ``tau`` (1) |
| ``ema`` | samples -> held EMA labels | stop-gradient + EMA | ``tau_ema`` (1) |
| ``vicreg`` | `L_E` + variance hinge + covariance | conservative | ``mu`` (1) |
| ``predictor`` | `L_P` (docs/theory.md §3, P1) | conservative | none |
| ``simsiam`` | `L_P^sg` (docs/theory.md §3, P2) | stop-gradient | none |
| ``ema_predictor`` | predictor -> held EMA labels | stop-gradient + EMA | ``tau_ema`` (1) |

VICReg's other parameters: ``nu`` 0.04 (covariance), ``gamma`` 1 (target std), ``delta`` 0.1
(hinge smoothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .data import init_embedding_state, init_projection_state
from .fields import VectorField, vector_field
from .losses.mechanisms import (
    EMAPredictorState,
    EMAState,
    MechanismArgs,
    ema_loss,
    ema_predictor_loss,
    infonce_loss,
    mse_loss,
    predictor_loss,
    vicreg_loss,
)
from .metrics import min_l2, nearest_label_accuracy

__all__ = [
    "Mechanism",
    "MECHANISMS",
    "EMAField",
    "get_mechanism",
    "mechanism_metrics",
    "ema_bias_matrix",
]


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


def _init_ema(key, n_samples, n_classes, dim):
    z = init_embedding_state(key, n_samples, n_classes, dim)
    return EMAState(z.x, z.y, z.y)


def _init_ema_predictor(key, n_samples, n_classes, dim):
    z = init_projection_state(key, n_samples, n_classes, dim)
    return EMAPredictorState(z.x, z.y, z.W, z.y)


class Mechanism(NamedTuple):
    """One collapse-prevention mechanism.

    Attributes:
        name: registry key.
        loss: ``loss(state, held, MechanismArgs) -> scalar``.
        init: ``init(key, n_samples, n_classes, dim) -> state`` (docs/theory.md §1 defaults).
        stop_gradient: derive the stop-gradient field (held slot frozen).
        ema: the state has `y_ema`, relaxed by [`EMAField`][collapse_jax.mechanisms.EMAField].
        hyper: name of the main hyper-parameter (``None`` if there is none).
        params: default hyper-parameters (the main one included).
        grid: default values of the main hyper-parameter in comparison sweeps.
        description: one line.
    """

    name: str
    loss: Callable
    init: Callable
    stop_gradient: bool
    ema: bool
    hyper: str | None
    params: dict
    grid: tuple
    description: str

    @property
    def conservative(self) -> bool:
        """True when the field is `-grad` of a scalar (its Jacobian is symmetric)."""
        return not (self.stop_gradient or self.ema)

    @property
    def predictor(self) -> bool:
        """True when the state has a predictor `W` (accuracy then uses `yhat(x) = W x`)."""
        return "W" in self.init(jax.random.PRNGKey(0), 1, 2, 1)._fields

    @property
    def default(self) -> float | None:
        """Default value of the main hyper-parameter."""
        return None if self.hyper is None else self.params[self.hyper]

    def field(self):
        """The diffrax-shaped field `(t, state, MechanismArgs) -> d state/dt`."""
        if self.ema:
            return EMAField(self.loss)
        return vector_field(self.loss, stop_gradient=self.stop_gradient)

    def args(self, A, value=None, **overrides) -> MechanismArgs:
        """[`MechanismArgs`][collapse_jax.losses.mechanisms.MechanismArgs] with the defaults, the
        main hyper-parameter set to ``value``
        (if given) and any other ``overrides``; values may be traced (``vmap``)."""
        params = dict(self.params)
        if value is not None:
            if self.hyper is None:
                raise ValueError(f"mechanism {self.name!r} has no hyper-parameter, got {value}")
            params[self.hyper] = value
        unknown = set(overrides) - set(params)
        if unknown:
            raise ValueError(f"mechanism {self.name!r} has no parameters {sorted(unknown)}")
        params.update(overrides)
        dtype = jnp.asarray(A).dtype
        return MechanismArgs(A, {k: jnp.asarray(v, dtype) for k, v in params.items()})


MECHANISMS: dict[str, Mechanism] = {
    m.name: m
    for m in (
        Mechanism(
            "mse", mse_loss, init_embedding_state, False, False, None, {}, (None,),
            "plain MSE alignment (baseline, docs/theory.md §2)",
        ),
        Mechanism(
            "infonce", infonce_loss, init_embedding_state, False, False, "tau",
            {"tau": 1.0}, (0.3, 3.0), "InfoNCE over label embeddings, temperature tau",
        ),
        Mechanism(
            "ema", ema_loss, _init_ema, True, True, "tau_ema", {"tau_ema": 1.0}, (1.0, 10.0),
            "samples align with a held EMA copy of the labels (time constant tau_ema)",
        ),
        Mechanism(
            "vicreg", vicreg_loss, init_embedding_state, False, False, "mu",
            {"mu": 1.0, "nu": 0.04, "gamma": 1.0, "delta": 0.1}, (0.1, 1.0),
            "MSE + VICReg variance hinge (mu, gamma) and covariance penalty (nu)",
        ),
        Mechanism(
            "predictor", predictor_loss, init_projection_state, False, False, None, {}, (None,),
            "projection head W without stop-gradient (docs/theory.md §3, P1)",
        ),
        Mechanism(
            "simsiam", predictor_loss, init_projection_state, True, False, None, {}, (None,),
            "predictor W with stop-gradient (docs/theory.md §3, P2)",
        ),
        Mechanism(
            "ema_predictor", ema_predictor_loss, _init_ema_predictor, True, True, "tau_ema",
            {"tau_ema": 1.0}, (1.0, 10.0),
            "predictor W with stop-gradient towards an EMA target (BYOL-like)",
        ),
    )
}  # fmt: skip


def get_mechanism(name: str) -> Mechanism:
    """The registered mechanism ``name`` (``ValueError`` naming the choices otherwise)."""
    if isinstance(name, Mechanism):
        return name
    if name not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {sorted(MECHANISMS)}, got {name!r}")
    return MECHANISMS[name]


def mechanism_metrics(mech: Mechanism, state, data, args: MechanismArgs) -> dict[str, Any]:
    """MinL2, loss value and nearest-label accuracy of one state (docs/theory.md §1).

    Accuracy uses `yhat(x) = W x` for mechanisms with a predictor, `x` otherwise. `vmap` over
    a leading time axis of ``state`` for a trajectory.
    """
    n_clean = data.n_classes * data.per_class
    pred = state.x[:n_clean]
    if "W" in state._fields:
        pred = pred @ state.W.T
    acc, acc_all = nearest_label_accuracy(pred, state.y, data.per_class, data.shared_count)
    return {
        "min_l2": min_l2(state.y),
        "loss": mech.loss(state, state, args),
        "accuracy": acc,
        "accuracy_all": acc_all,
    }


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
