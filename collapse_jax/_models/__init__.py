"""One registry of every model and mechanism: name -> state, loss, field, metrics, closed form.

A [`Model`][collapse_jax.Model] row bundles a held-slot loss ``loss(state, held, args)``
(``args`` a [`MechanismArgs`][collapse_jax.MechanismArgs]: the alignment
matrix and the hyper-parameters), the default initial state ``init(key, n_samples, n_classes,
dim)``, which field to derive (conservative `-grad L(z, z)`, stop-gradient
`-d_1 L(z, h)|_{h=z}`, or the EMA field of
[`EMAField`][collapse_jax.EMAField]), its metrics and its closed-form Jacobian
spectrum where there is one. The generic machinery (fields, integration, steady states, spectra,
sweeps) takes a row's ``field()`` and ``args(A)`` and knows no model by name; a new model is one
[`register`][collapse_jax.register] call (tests/test_new_model.py).

``mse`` is the embedding model (docs/theory.md §2); ``predictor`` and ``simsiam`` are the
projection model (docs/theory.md §3) without and with stop-gradient: the same loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from .._data import init_embedding_state, init_projection_state
from .._fields import vector_field
from .._losses.mechanisms import (
    MechanismArgs,
    ema_loss,
    ema_predictor_loss,
    infonce_loss,
    mse_loss,
    predictor_loss,
    vicreg_loss,
)
from .._metrics import min_l2, nearest_label_accuracy
from .mechanisms import EMAField, init_ema_predictor_state, init_ema_state

__all__ = ["Model", "MODELS", "register", "get_model", "label_metrics", "embedding_spectrum"]


def label_metrics(model, state, data, args: MechanismArgs) -> dict[str, Any]:
    """MinL2, loss value and nearest-label accuracy of one state (docs/theory.md §1).

    Accuracy uses `yhat(x) = W x` for states with a predictor `W`, `x` otherwise. `vmap` over
    a leading time axis of ``state`` for a trajectory.
    """
    n_clean = data.n_classes * data.per_class
    pred = state.x[:n_clean]
    if "W" in state._fields:
        pred = pred @ state.W.T
    acc, acc_all = nearest_label_accuracy(pred, state.y, data.per_class, data.shared_count)
    return {
        "min_l2": min_l2(state.y),
        "loss": model.loss(state, state, args),
        "accuracy": acc,
        "accuracy_all": acc_all,
    }


def embedding_spectrum(data, dim: int) -> np.ndarray:
    """Closed-form Jacobian spectrum of the embedding model (docs/theory.md §2), sorted: the
    sector eigenvalues of [`sector_eigenvalues`][collapse_jax.sector_eigenvalues], each
    ``dim`` times. The field is linear, so it holds at every state."""
    from .._exact import sector_eigenvalues

    rows = sector_eigenvalues(data)
    return np.sort(np.concatenate([np.repeat(p, dim) for p in rows.values()]))


class Model(NamedTuple):
    """One model (or collapse-prevention mechanism) of the registry.

    Attributes:
        name: registry key.
        loss: ``loss(state, held, MechanismArgs) -> scalar`` (held slot: docs/theory.md §3).
        init: ``init(key, n_samples, n_classes, dim) -> state`` (docs/theory.md §1 defaults).
        stop_gradient: derive the stop-gradient field (held slot frozen).
        ema: the state has `y_ema`, relaxed by
            [`EMAField`][collapse_jax.EMAField].
        hyper: name of the main hyper-parameter (``None`` if there is none).
        params: default hyper-parameters (the main one included).
        grid: default values of the main hyper-parameter in comparison sweeps.
        description: one line.
        metrics: ``metrics(model, state, data, args) -> dict`` (default
            [`label_metrics`][collapse_jax.label_metrics]).
        spectrum: closed-form Jacobian spectrum ``spectrum(data, dim) -> sorted eigenvalues``
            where the model has one (``None`` otherwise).
        init_data: ``init_data(key, data, dim) -> state`` for a model on data of its own
            (the teacher–student rows); ``None``: ``init`` on the standard data's sizes.
        args_data: ``args_data(data, params) -> args`` for a model on data of its own;
            ``None``: [`MechanismArgs`][collapse_jax.MechanismArgs] of ``data.matrix()``.

    The one convention for generic code: a row's start is
    [`start(key, data, dim)`][collapse_jax.Model.start] and its loss's third argument
    [`data_args(data, value)`][collapse_jax.Model.data_args], whatever data the model lives on
    (an alignment matrix with hyper-parameters for the standard data, the input moments for
    the teacher–student model).
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
    metrics: Callable = label_metrics
    spectrum: Callable | None = None
    init_data: Callable | None = None
    args_data: Callable | None = None

    @property
    def conservative(self) -> bool:
        """True when the field is `-grad` of a scalar (its Jacobian is symmetric)."""
        return not (self.stop_gradient or self.ema)

    def start(self, key, data, dim: int):
        """The default initial state on ``data`` (embedding dimension ``dim``)."""
        if self.init_data is not None:
            return self.init_data(key, data, dim)
        return self.init(key, data.n_samples, data.n_classes, dim)

    def data_args(self, data, value=None, **overrides):
        """The third argument of the row's loss on ``data``: the hyper-parameters as in
        [`args`][collapse_jax.Model.args] (``value`` the main one), then
        ``args_data(data, params)`` where the row has it, else ``args(data.matrix(), ...)``."""
        if self.args_data is None:
            return self.args(data.matrix(), value, **overrides)
        return self.args_data(data, self._params(value, overrides))

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
        """[`MechanismArgs`][collapse_jax.MechanismArgs] with the defaults, the
        main hyper-parameter set to ``value``
        (if given) and any other ``overrides``; values may be traced (``vmap``)."""
        params = self._params(value, overrides)
        dtype = jnp.asarray(A).dtype
        return MechanismArgs(A, {k: jnp.asarray(v, dtype) for k, v in params.items()})

    def _params(self, value, overrides) -> dict:
        params = dict(self.params)
        if value is not None:
            if self.hyper is None:
                raise ValueError(f"mechanism {self.name!r} has no hyper-parameter, got {value}")
            params[self.hyper] = value
        unknown = set(overrides) - set(params)
        if unknown:
            raise ValueError(f"mechanism {self.name!r} has no parameters {sorted(unknown)}")
        params.update(overrides)
        return params


#: Every registered model, by name (the mechanisms of docs/mechanisms.md first, in their order).
MODELS: dict[str, Model] = {}


def register(model: Model, *, replace: bool = False) -> Model:
    """Add ``model`` to [`MODELS`][collapse_jax.MODELS] and return it.

    Raises:
        TypeError: if ``model`` is not a [`Model`][collapse_jax.Model].
        ValueError: if the name is taken (pass ``replace=True`` to overwrite).
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a collapse_jax.Model, got {type(model).__name__}")
    if model.name in MODELS and not replace:
        raise ValueError(f"model name {model.name!r} is already registered")
    MODELS[model.name] = model
    return model


def get_model(name) -> Model:
    """The registered model ``name`` (``ValueError`` naming the choices otherwise)."""
    if isinstance(name, Model):
        return name
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name]


for _m in (
    Model(
        "mse",
        mse_loss,
        init_embedding_state,
        False,
        False,
        None,
        {},
        (None,),
        "plain MSE alignment (baseline, docs/theory.md §2)",
        spectrum=embedding_spectrum,
    ),
    Model(
        "infonce",
        infonce_loss,
        init_embedding_state,
        False,
        False,
        "tau",
        {"tau": 1.0},
        (0.3, 3.0),
        "InfoNCE over label embeddings, temperature tau",
    ),
    Model(
        "ema",
        ema_loss,
        init_ema_state,
        True,
        True,
        "tau_ema",
        {"tau_ema": 1.0},
        (1.0, 10.0),
        "samples align with a held EMA copy of the labels (time constant tau_ema)",
    ),
    Model(
        "vicreg",
        vicreg_loss,
        init_embedding_state,
        False,
        False,
        "mu",
        {"mu": 1.0, "nu": 0.04, "gamma": 1.0, "delta": 0.1},
        (0.1, 1.0),
        "MSE + VICReg variance hinge (mu, gamma) and covariance penalty (nu)",
    ),
    Model(
        "predictor",
        predictor_loss,
        init_projection_state,
        False,
        False,
        None,
        {},
        (None,),
        "projection head W without stop-gradient (docs/theory.md §3, P1)",
    ),
    Model(
        "simsiam",
        predictor_loss,
        init_projection_state,
        True,
        False,
        None,
        {},
        (None,),
        "predictor W with stop-gradient (docs/theory.md §3, P2)",
    ),
    Model(
        "ema_predictor",
        ema_predictor_loss,
        init_ema_predictor_state,
        True,
        True,
        "tau_ema",
        {"tau_ema": 1.0},
        (1.0, 10.0),
        "predictor W with stop-gradient towards an EMA target (BYOL-like)",
    ),
):
    register(_m)
del _m

# The teacher–student rows live with their model (they register themselves on import).
# The network rows wrap the rows above (they register themselves on import).
from . import network as _network  # noqa: E402, F401
from . import teacher_student as _teacher_student  # noqa: E402, F401
