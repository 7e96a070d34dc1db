"""The network model: an MLP encoder `x_i = f_theta(xi_i)` on real data (docs/network.md).

Nothing here writes a loss. A network row of the registry takes a row of the minimal model
(``mse``, ``predictor``, ``simsiam`` or a collapse-prevention mechanism) and puts an
[`Encoder`][collapse_jax.Encoder] into the state's ``x`` slot: the loss evaluates the encoder
on the inputs, in the live slot and in the held slot, and hands the embeddings to the row's own
held-slot loss. Stop-gradient therefore means what it means in the minimal model: the held
slot's encoder output and labels are constants for the optimiser. The state is the row's own
state type (``EmbeddingState``, ``ProjectionState``, ...) with the encoder in place of the
sample embeddings, so the labels ``y``, the projection ``W`` and the EMA target ``y_ema`` are
trained (or relaxed) exactly as in the minimal model.

Rows: ``network`` (plain, `L_E`), ``network_projection`` (`L_P` without stop-gradient),
``network_stop_gradient`` (`L_P^sg`), and ``network_<mechanism>`` for every mechanism row
(``infonce``, ``ema``, ``vicreg``, ``ema_predictor``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._losses.mechanisms import MechanismArgs
from .._network_data import NetworkData, network_alignment
from . import MODELS, Model, register

__all__ = [
    "Encoder",
    "init_encoder",
    "NetworkArgs",
    "network_loss",
    "network_row",
    "network_metrics",
    "network_start",
    "VARIANTS",
    "ACTIVATIONS",
]

#: Activation functions of the encoder, by name.
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "linear": lambda h: h,
}

#: Network variants -> the minimal-model row whose loss they use.
VARIANTS = {
    "plain": "mse",
    "projection": "predictor",
    "stop-gradient": "simsiam",
    "infonce": "infonce",
    "ema": "ema",
    "vicreg": "vicreg",
    "ema_predictor": "ema_predictor",
}


class Encoder(eqx.Module):
    """An MLP `f_theta`: ``depth`` hidden layers of ``width`` units, then a linear layer to the
    embedding dimension. Applied to a batch of inputs `(N, D) -> (N, d)`.

    Attributes:
        weights: `(out, in)` matrices, one per layer.
        biases: `(out,)` vectors.
        activation: name in [`ACTIVATIONS`][collapse_jax.ACTIVATIONS] (static).
    """

    weights: tuple
    biases: tuple
    activation: str = eqx.field(static=True, default="tanh")

    def __call__(self, inputs):
        act = ACTIVATIONS[self.activation]
        h = inputs
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ W.T + b
            if i < last:
                h = act(h)
        return h


def init_encoder(
    key,
    n_inputs: int,
    dim: int,
    *,
    width: int = 128,
    depth: int = 1,
    activation="tanh",
    dtype=jnp.float64,
) -> Encoder:
    """An [`Encoder`][collapse_jax.Encoder] with PyTorch's default initialisation of linear
    layers: weights and biases uniform in `±1/sqrt(fan_in)`.

    Raises:
        ValueError: naming a non-positive size or an unknown activation.
    """
    for name, v, low in (
        ("n_inputs", n_inputs, 1),
        ("dim", dim, 1),
        ("width", width, 1),
        ("depth", depth, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    sizes = [int(n_inputs)] + [int(width)] * int(depth) + [int(dim)]
    weights, biases = [], []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        kw, kb = jax.random.split(jax.random.fold_in(key, i))
        bound = 1.0 / np.sqrt(fan_in)
        # drawn in float64 when it is enabled, then cast: a float32 run starts from the same
        # (rounded) encoder as the float64 run of the same key
        draw = jnp.float64 if jax.config.jax_enable_x64 else dtype
        weights.append(jax.random.uniform(kw, (fan_out, fan_in), draw, -bound, bound).astype(dtype))
        biases.append(jax.random.uniform(kb, (fan_out,), draw, -bound, bound).astype(dtype))
    return Encoder(tuple(weights), tuple(biases), activation)


class NetworkArgs(NamedTuple):
    """Third argument of a network row's loss.

    Attributes:
        inputs: the inputs `xi` `(N, D)` the encoder is applied to (a minibatch in training).
        mech: [`MechanismArgs`][collapse_jax.MechanismArgs] of the minimal-model row: the
            alignment matrix of these inputs and the hyper-parameters.
    """

    inputs: Any
    mech: MechanismArgs


@functools.cache
def network_loss(loss):
    """The network form of a held-slot loss ``loss(state, held, MechanismArgs)``:
    ``(state, held, NetworkArgs) -> loss(state with x = f(inputs), held with x = f_held(inputs),
    mech)``. Cached, so that one row's loss is one function (jit caches hit)."""

    def network(state, held, args: NetworkArgs):
        live = state._replace(x=state.x(args.inputs))
        hold = held._replace(x=held.x(args.inputs))
        return loss(live, hold, args.mech)

    network.__name__ = network.__qualname__ = f"network_{getattr(loss, '__name__', 'loss')}"
    network.__doc__ = f"{loss.__name__} with the sample embeddings x = f_theta(inputs)."
    return network


def _prediction(state, x):
    return x @ state.W.T if "W" in state._fields else x


def network_metrics(model: Model, state, data: NetworkData, args: NetworkArgs) -> dict:
    """What a network training records (docs/network.md, "What is recorded").

    ``loss`` (`L(z, z)` on the full training set), ``min_l2`` (label embeddings), ``spread``
    (their root-mean-square distance from their mean: the scale against which MinL2 is read),
    ``min_l2_means`` (class means of `f(xi)` over the clean training samples), ``accuracy``
    (nearest label of `yhat = W f(xi)`, or `f(xi)` without a projection, on the clean training
    samples), ``accuracy_test``, and the diagnostics of the training embeddings `f(xi)`
    (every training sample with its true class): ``rankme``, ``std`` (of the normalised
    embeddings) and ``nc1``. Accuracies are NaN once any value is not finite.
    """
    from .._collapse_metrics import (
        class_means,
        min_l2_class_means,
        nc1,
        ncm_counts,
        rankme,
        singular_values,
        std_l2_normalized,
    )
    from .._metrics import min_l2

    x = state.x(data.X)
    clean = ~data.shared
    finite = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(state.y))
    clean_labels = jnp.where(clean, data.labels, -1)
    every_label = jnp.ones(data.n_classes, bool)

    def nearest_label(inputs_x, labels):
        # nearest-label accuracy = nearest-class-mean scoring with the labels as the means
        # (ties wrong; unlabelled samples, -1, not counted)
        right, total = ncm_counts(_prediction(state, inputs_x), labels, state.y, every_label)
        return right.astype(x.dtype) / jnp.maximum(total, 1).astype(x.dtype)

    acc = nearest_label(x, clean_labels)
    if data.labels_test.shape[0]:
        acc_test = nearest_label(state.x(data.X_test), data.labels_test)
    else:
        acc_test = jnp.nan
    means_clean, counts_clean = class_means(x, clean_labels, data.n_classes)
    means, counts = class_means(x, data.labels, data.n_classes)
    present = counts > 0
    within = x - means[data.labels]
    return {
        "loss": model.loss(state, state, args),
        "min_l2": min_l2(state.y),
        "spread": jnp.sqrt(jnp.mean(jnp.sum((state.y - jnp.mean(state.y, 0)) ** 2, axis=-1))),
        "min_l2_means": min_l2_class_means(means_clean, counts_clean > 0),
        "accuracy": jnp.where(finite, acc, jnp.nan),
        "accuracy_test": jnp.where(finite, acc_test, jnp.nan),
        "rankme": rankme(singular_values(x)),
        "std": std_l2_normalized(x),
        "nc1": nc1(within, jnp.sum(counts), means, present),
    }


def _init_unsupported(key, n_samples, n_classes, dim):
    raise TypeError("a network row starts from its data: use row.start(key, data, dim)")


def _start(base: Model, key, data: NetworkData, dim: int, label_scale: float = 1.0, **encoder):
    """The base row's start with an encoder in the ``x`` slot.

    Labels, projection and EMA copy exactly as the base row draws them from ``key`` (labels
    `y ~ 2 N(0, 1)`, `W = I + 0.1 N(0, 1)`, `y_ema = y`: docs/theory.md §1), the labels
    multiplied by ``label_scale``; the encoder is drawn from ``fold_in(key, 2)``. Every variant
    therefore starts from the same encoder and labels for one key.
    """
    dtype = data.X.dtype
    z = base.init(key, 1, data.n_classes, dim)
    z = jax.tree.map(lambda a: a.astype(dtype), z)
    enc = init_encoder(jax.random.fold_in(key, 2), data.n_inputs, dim, dtype=dtype, **encoder)
    z = z._replace(x=enc, y=z.y * label_scale)
    if "y_ema" in z._fields:
        z = z._replace(y_ema=z.y)
    return z


def network_start(
    variant: str,
    key,
    data: NetworkData,
    dim: int,
    *,
    width: int = 128,
    depth: int = 1,
    activation: str = "tanh",
    label_scale: float = 1.0,
):
    """The start of a network row with a chosen encoder architecture (``row.start(key, data,
    dim)`` gives the default one: width 128, one hidden layer, tanh) and labels
    `y ~ 2 label_scale N(0, 1)`."""
    network_row(variant)  # a clear error for an unknown variant
    base = MODELS[VARIANTS[variant]]
    return _start(
        base, key, data, dim, label_scale, width=width, depth=depth, activation=activation
    )


def _args(base: Model, data: NetworkData, params: dict) -> NetworkArgs:
    A = network_alignment(data)
    return NetworkArgs(data.X, base.args(A, None, **params))


def network_row(variant: str = "plain") -> Model:
    """The registered network row of ``variant`` (a key of
    [`VARIANTS`][collapse_jax.VARIANTS]): ``plain``, ``projection``, ``stop-gradient`` or a
    mechanism name."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    return MODELS[_row_name(variant)]


def _row_name(variant: str) -> str:
    return "network" if variant == "plain" else "network_" + variant.replace("-", "_")


def _register() -> None:
    for variant, base_name in VARIANTS.items():
        base = MODELS[base_name]
        register(
            Model(
                _row_name(variant),
                network_loss(base.loss),
                _init_unsupported,
                base.stop_gradient,
                base.ema,
                base.hyper,
                dict(base.params),
                base.grid,
                f"MLP encoder on real data, {variant} ({base.description})",
                metrics=network_metrics,
                init_data=functools.partial(_start, base),
                args_data=functools.partial(_args, base),
            ),
            replace=True,
        )


_register()
