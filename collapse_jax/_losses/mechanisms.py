"""Collapse-prevention mechanisms as losses on the standard data layer.

Every loss has the package signature ``loss(state, held, args)`` (docs/theory.md §3: ``held`` is the
slot where stop-gradient copies stand) with ``args`` a
[`MechanismArgs`][collapse_jax.MechanismArgs]: the alignment matrix `A` of
[`matrix`][collapse_jax.StandardData.matrix] (frustration masks included: an all-zero row is an
inactive sample) and a dict of hyper-parameters, so that a sweep can `vmap` over both. Conventions
follow docs/theory.md: sums over sample–label pairs, factor `1/2` on squared distances, every pair
sum in expanded form (docs/theory.md §6: the `N x K` distance matrix is formed by a matrix product,
never an `N x K x d` tensor; cost `O(N K d)`).

Mechanisms (formula next to each function):

* ``mse_loss``: the embedding model `L_E` (the baseline, docs/theory.md §2).
* ``infonce_loss``: contrastive, InfoNCE over the label embeddings with temperature `tau`.
* ``ema_loss``: samples align with a held exponential-moving-average copy `y_ema` of the
  labels; `y_ema` relaxes as `dy_ema/dt = (y - y_ema) / tau_ema` (the field wrapper is
  [`EMAField`][collapse_jax.EMAField]).
* ``vicreg_loss``: `L_E` plus the VICReg variance hinge and covariance penalty on the samples.
* ``ema_predictor_loss``: the projection model's predictor `W` with stop-gradient, aiming at
  the EMA target (BYOL-like); with `tau_ema -> 0` it is the stop-gradient projection model.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Alignment, Array, Float, Scalar
from ._pairs import pair_sum
from .projection import projection_loss

__all__ = [
    "MechanismArgs",
    "EMAState",
    "EMAPredictorState",
    "sample_presence",
    "squared_distances",
    "mse_loss",
    "infonce_loss",
    "ema_loss",
    "vicreg_loss",
    "vicreg_terms",
    "smooth_hinge",
    "ema_predictor_loss",
    "predictor_loss",
]


class MechanismArgs(NamedTuple):
    """Arguments of every mechanism loss.

    Attributes:
        A: alignment matrix `(N, K)` (docs/theory.md §1).
        params: hyper-parameters by name (scalars; a pytree, so they can be `vmap`-ed).
    """

    A: Alignment
    params: dict


class EMAState(NamedTuple):
    """Embedding model plus an EMA copy of the labels.

    Attributes:
        x: samples `(N, d)`; y: labels `(K, d)`; y_ema: the EMA target `(K, d)`.
    """

    x: Float[Array, "samples dim"]
    y: Float[Array, "classes dim"]
    y_ema: Float[Array, "classes dim"]


class EMAPredictorState(NamedTuple):
    """Projection model (predictor `W`) plus an EMA copy of the labels."""

    x: Float[Array, "samples dim"]
    y: Float[Array, "classes dim"]
    W: Float[Array, "dim dim"]
    y_ema: Float[Array, "classes dim"]


def sample_presence(A: Alignment) -> Float[Array, " samples"]:
    """`p_i = max_c A_ic`: 1 for a clean or an active shared sample (rule ``"round"``), the
    shared weight `w` under rule ``"spread"``, 0 for an inactive row."""
    return jnp.max(A, axis=1)


def squared_distances(
    a: Float[Array, "samples dim"], b: Float[Array, "classes dim"]
) -> Float[Array, "samples classes"]:
    """`D_ic = |a_i - b_c|^2 = |a_i|^2 - 2 a_i.b_c + |b_c|^2` (a matrix product, `O(N K d)`)."""
    return jnp.sum(a * a, axis=-1)[:, None] - 2.0 * a @ b.T + jnp.sum(b * b, axis=-1)[None, :]


def mse_loss(state, held, args: MechanismArgs) -> Scalar:
    """`L_E = 1/2 sum_ic A_ic |x_i - y_c|^2` (docs/theory.md §2). Conservative; no
    hyper-parameter."""
    del held
    return 0.5 * pair_sum(args.A, state.x, state.y)


def infonce_loss(state, held, args: MechanismArgs) -> Scalar:
    """InfoNCE over the label embeddings, temperature `tau` = ``params["tau"]``:

    `L_NCE = (tau/2) sum_i sum_c A_ic [ -log softmax_c( -|x_i - y_c'|^2 / tau ) ]`
    `      = 1/2 sum_ic A_ic |x_i - y_c|^2 + (tau/2) sum_i r_i logsumexp_c'(-|x_i - y_c'|^2/tau)`

    (`r = A 1`). Similarity: negative squared distance (the sample's nearest label is its most
    probable one, as in the accuracy of docs/theory.md §1). The prefactor `tau/2` gives the sample
    force `-(x_i - y_c) + sum_c' p_ic' (x_i - y_c')` per pair: the MSE attraction of the
    baseline plus a softmax-weighted repulsion from every label (the negatives); it only
    rescales time, not fixed points. `tau -> infinity` makes the repulsion uniform, `tau -> 0`
    a hard nearest-negative margin. Conservative. `O(N K d)`: the distance matrix comes from
    [`squared_distances`][collapse_jax.squared_distances].
    """
    del held
    tau = args.params["tau"]
    D = squared_distances(state.x, state.y)
    nll = -jax.nn.log_softmax(-D / tau, axis=-1)
    return 0.5 * tau * jnp.sum(args.A * nll)


def ema_loss(state: EMAState, held: EMAState, args: MechanismArgs) -> Scalar:
    """EMA (momentum) target, BYOL/MoCo-like, on the embedding model:

    `L_EMA(z, h) = 1/2 sum_ic A_ic [ |x_i - h.y_ema_c|^2 + |y_c - h.x_i|^2 ]`

    Samples align with the held EMA copy of the labels, labels with the held samples; the live
    `y_ema` does not enter, so the loss gives it no force. Its dynamics is the relaxation
    `dy_ema/dt = (y - y_ema) / tau_ema` added by
    [`EMAField`][collapse_jax.EMAField]. At `tau_ema -> 0`
    (`y_ema = y`) the field is exactly the MSE field `-grad L_E`; for `tau_ema > 0` the target lags.
    Only the stop-gradient field is meaningful.
    """
    # held: the EMA target of the samples, and the samples as targets of the labels
    target = pair_sum(args.A, state.x, held.y_ema)
    labels = pair_sum(args.A, held.x, state.y)
    return 0.5 * (target + labels)


def smooth_hinge(u, delta):
    """`relu(u)` smoothed to `C^1` over a width ``delta`` (Huber form):

    `0` for `u <= 0`, `u^2 / (2 delta)` for `0 < u < delta`, `u - delta/2` for `u >= delta`.

    VICReg's hinge is a plain relu; its gradient jumps at `std_j = gamma`, where the flow
    then slides along the kink and an adaptive solver stalls (measured: 400 000 Tsit5 steps
    not enough for `t = 200` at `mu = 1`, K=3, n=6, M=2, d=4). With the `C^1` form the field is
    Lipschitz; the force is exactly zero once `std_j >= gamma`, and equals relu's for
    `std_j <= gamma - delta`.
    """
    u = jnp.asarray(u)
    inner = jnp.clip(u, 0.0, delta)
    return inner * inner / (2.0 * delta) + jnp.maximum(u - delta, 0.0)


def vicreg_terms(x: Float[Array, "samples dim"], A: Alignment, gamma, delta=0.1, eps=1e-4):
    """VICReg statistics of the samples present (weights `p_i`,
    [`sample_presence`][collapse_jax.sample_presence]).

    Mean `m = sum_i p_i x_i / P`, covariance `C = sum_i p_i (x_i - m)(x_i - m)^T / P` with
    `P = sum_i p_i` (population normalisation, so inactive rows never count), per-dimension
    `std_j = sqrt(C_jj + eps)` (`eps = 1e-4` as in VICReg). Returns ``(hinge, offdiag, P)``:
    `hinge = sum_j h(gamma - std_j)` with `h` the
    [`smooth_hinge`][collapse_jax.smooth_hinge] of width ``delta``, and
    `offdiag = (1/d) sum_{j != k} C_jk^2`. `O(N d^2)`.
    """
    p = sample_presence(A)
    P = jnp.sum(p)
    safe = jnp.maximum(P, jnp.finfo(x.dtype).tiny)
    m = (p @ x) / safe
    xc = x - m
    C = (xc * p[:, None]).T @ xc / safe
    std = jnp.sqrt(jnp.diagonal(C) + eps)
    hinge = jnp.sum(smooth_hinge(gamma - std, delta))
    d = x.shape[-1]
    off = (jnp.sum(C * C) - jnp.sum(jnp.diagonal(C) ** 2)) / d
    return hinge, off, P


def vicreg_loss(state, held, args: MechanismArgs) -> Scalar:
    """MSE alignment plus VICReg variance and covariance terms on the sample embeddings:

    `L_V = L_E + P [ mu sum_j h(gamma - std_j(x)) + (nu/d) sum_{j != k} C_jk(x)^2 ]`

    with the statistics of [`vicreg_terms`][collapse_jax.vicreg_terms] (`P` =
    number of samples present; `h` the relu hinge smoothed over ``delta``,
    [`smooth_hinge`][collapse_jax.smooth_hinge]). The factor `P` makes the
    regularisers per-sample terms like the summed alignment loss (VICReg averages every term over
    the batch). Hyper-parameters ``mu`` (variance weight, the main one), ``nu`` (covariance weight),
    ``gamma`` (target std), ``delta`` (hinge smoothing). Conservative.
    """
    del held
    prm = args.params
    hinge, off, P = vicreg_terms(state.x, args.A, prm["gamma"], prm["delta"])
    return 0.5 * pair_sum(args.A, state.x, state.y) + P * (prm["mu"] * hinge + prm["nu"] * off)


def ema_predictor_loss(
    state: EMAPredictorState, held: EMAPredictorState, args: MechanismArgs
) -> Scalar:
    """Predictor with stop-gradient towards an EMA target (BYOL-like, docs/theory.md §3 + EMA):

    `L(z, h) = 1/2 sum_ic A_ic [ |W x_i - h.y_ema_c|^2 + |y_c - h.x_i|^2 ]`

    With `tau_ema -> 0` (`y_ema = y`) this is `L_P^sg` of docs/theory.md §3 (SimSiam); `y_ema`
    relaxes as in [`ema_loss`][collapse_jax.ema_loss]
    ([`EMAField`][collapse_jax.EMAField]).
    """
    # held: the EMA target of the predictor branch, and the samples as targets of the labels
    predictor = pair_sum(args.A, state.x @ state.W.T, held.y_ema)
    direct = pair_sum(args.A, held.x, state.y)
    return 0.5 * (predictor + direct)


def predictor_loss(state, held, args: MechanismArgs) -> Scalar:
    """`L_P(z, h)` of docs/theory.md §3 (predictor `W`), on
    [`MechanismArgs`][collapse_jax.MechanismArgs].

    With the stop-gradient field this is SimSiam (stop-gradient + predictor); with the
    conservative field it is the projection head without stop-gradient (collapses, P1).
    """
    return projection_loss(state, held, args.A)
