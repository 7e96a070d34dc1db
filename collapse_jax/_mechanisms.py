"""The registry of collapse-prevention mechanisms: name -> state, loss, field.

Each [`Mechanism`][collapse_jax.Mechanism] bundles a loss of
[`MechanismArgs`][collapse_jax.MechanismArgs] (signature
``loss(state, held, args)`` with ``args`` a
[`MechanismArgs`][collapse_jax.MechanismArgs]), the default initial state of
docs/theory.md §1 (plus `y_ema = y` and `W = I + 0.1 N(0, 1)` where the state has them), which field
to derive (conservative `-grad L(z, z)`, stop-gradient `-d_1 L(z, h)|_{h=z}`, or
[`EMAField`][collapse_jax.EMAField]) and its main hyper-parameter. Fields, Jacobians
([`collapse_jax.jacobian`][collapse_jax.jacobian]), integration
([`collapse_jax.simulate`][collapse_jax.simulate]), steady states and sweeps take these
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

from typing import Any

from ._models import MODELS, Model, get_model
from ._models.mechanisms import EMAField, ema_bias_matrix

__all__ = [
    "Mechanism",
    "MECHANISMS",
    "EMAField",
    "get_mechanism",
    "mechanism_metrics",
    "ema_bias_matrix",
]

#: A mechanism is a row of the one registry ([`Model`][collapse_jax.Model]).
Mechanism = Model

#: The compared mechanisms: the rows of [`MODELS`][collapse_jax.MODELS] named in the
#: table above (the same objects, not copies); models registered later are not compared.
MECHANISMS: dict[str, Model] = {
    name: MODELS[name]
    for name in ("mse", "infonce", "ema", "vicreg", "predictor", "simsiam", "ema_predictor")
}


def get_mechanism(name: str) -> Model:
    """The registered mechanism ``name`` (``ValueError`` naming the choices otherwise)."""
    if isinstance(name, Model):
        return name
    if name not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {sorted(MECHANISMS)}, got {name!r}")
    return get_model(name)


def mechanism_metrics(mech: Model, state, data, args) -> dict[str, Any]:
    """MinL2, loss value and nearest-label accuracy of one state (docs/theory.md §1): the
    registry row's ``metrics`` ([`label_metrics`][collapse_jax.label_metrics] by default).
    `vmap` over a leading time axis of ``state`` for a trajectory."""
    return mech.metrics(mech, state, data, args)
