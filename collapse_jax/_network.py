"""Training network rows with optax, one run or a `phi x seed (x lr)` study in one ``jit(vmap)``.

A training member (:func:`network_member`) draws the shared samples and the start from its
key, builds the optimiser with its learning rate (which may be traced, so learning rates are a
sweep axis), trains with [`train`][collapse_jax.train] on the row's loss (the gradient of
`L(z, z)`, or of `L(z, stop_gradient(z))` for stop-gradient rows) and records
[`network_metrics`][collapse_jax.network_metrics] at log-spaced steps. The study
([`network_sweep`][collapse_jax.network_sweep]) runs members on the package's sweep engine
([`run_grid`][collapse_jax.run_grid]); encoder widths change array shapes, so each width is a
call of its own.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._integrate import train
from ._models.network import VARIANTS, network_row, network_start
from ._network_data import NetworkData, network_alignment, with_frustration

__all__ = [
    "NetworkConfig",
    "network_steps",
    "network_optimizer",
    "network_member",
    "network_run",
    "network_sweep",
    "NetworkSweep",
    "fit_late_decay",
    "network_summary",
    "OPTIMIZERS",
    "RECORDED",
    "DEFAULT_LR",
]

#: Default learning rate of a network training (with the defaults of
#: [`NetworkConfig`][collapse_jax.NetworkConfig], docs/network.md).
DEFAULT_LR = 0.1

#: Optimisers by name (``--optimizer``).
OPTIMIZERS = ("sgd", "momentum", "adam")

#: What every training records at its saved steps (docs/network.md).
RECORDED = (
    "loss",
    "min_l2",
    "spread",
    "min_l2_means",
    "accuracy",
    "accuracy_test",
    "rankme",
    "std",
    "nc1",
)


class NetworkConfig(NamedTuple):
    """Everything of a network training but the data, the ratio, the seed and the learning
    rate (the sweep axes). Defaults: the setup whose default run shows the two-stage pattern
    at `phi = 0.02` (docs/network.md).

    Attributes:
        variant: a key of [`VARIANTS`][collapse_jax.VARIANTS].
        steps: optimiser updates.
        dim: embedding dimension `d`.
        width, depth, activation: the encoder ([`Encoder`][collapse_jax.Encoder]).
        optimizer: ``sgd``, ``momentum`` (heavy ball, 0.9) or ``adam``.
        weight_decay: decoupled weight decay (``optax.add_decayed_weights``) on every trained
            array (0: none).
        batch_size: samples per step (``None``: full batch); a minibatch is drawn without
            replacement at every step, its alignment rows rescaled by `N / b` so the gradient is
            an unbiased estimate of the full-batch one.
        points: log-spaced record steps; late: evenly spaced record steps over the last half
            (where the late decay is fitted).
        value: the main hyper-parameter of a mechanism row (``None``: its default).
        label_scale: multiplies the start of the labels (`y ~ 2 N(0, 1)`, as in the minimal
            model).
    """

    variant: str = "plain"
    steps: int = 10_000
    dim: int = 16
    width: int = 128
    depth: int = 1
    activation: str = "tanh"
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    batch_size: int | None = None
    points: int = 60
    late: int = 21
    value: float | None = None
    label_scale: float = 1.0


def network_steps(steps: int, points: int = 60, late: int = 21) -> np.ndarray:
    """Record steps: 0, ``points`` log-spaced steps from 1 to ``steps`` and ``late`` evenly
    spaced steps over the last half (the late-decay fit window), merged and sorted."""
    steps = int(steps)
    logs = np.round(np.logspace(0, np.log10(steps), max(int(points), 2))) if steps > 1 else []
    lin = np.round(np.linspace(steps / 2, steps, max(int(late), 2)))
    return np.unique(np.concatenate([[0, steps], logs, lin]).astype(np.int64))


def network_optimizer(name: str, lr, *, weight_decay=0.0):
    """An optax transformation: ``sgd``, ``momentum`` (0.9) or ``adam``, with optional
    decoupled weight decay. ``lr`` may be traced."""
    import optax

    if name == "sgd":
        opt = optax.sgd(lr)
    elif name == "momentum":
        opt = optax.sgd(lr, momentum=0.9)
    elif name == "adam":
        opt = optax.adam(lr)
    else:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if weight_decay:
        opt = optax.chain(optax.add_decayed_weights(weight_decay), opt)
    return opt


def _check_config(config: NetworkConfig, data: NetworkData) -> NetworkConfig:
    if config.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {config.variant!r}")
    for name in ("steps", "dim", "width", "points", "late"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {config.optimizer!r}")
    wd = float(config.weight_decay)
    if not (np.isfinite(wd) and wd >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {config.weight_decay!r}")
    b = config.batch_size
    if b is not None and (isinstance(b, bool) or not 1 <= int(b) <= data.n_samples):
        raise ValueError(f"batch_size must be in [1, {data.n_samples}] or None, got {b!r}")
    return config


def network_member(
    data: NetworkData, config: NetworkConfig | None = None, *, progress=None, final_state=False
):
    """One training as a function ``member(frustration, key, lr) -> {step?, recorded...}``.

    Every argument may be traced: ``vmap`` it over ratios, keys and learning rates (the sweep
    does). The key draws the shared samples (``fold_in(key, 1)``; nested in `phi`), the start
    (``row.start``-like: encoder, labels, projection; the same for every variant) and the
    minibatches (``fold_in(key, 4)``). Returns a dict of `(T,)` arrays, one per name of
    [`RECORDED`][collapse_jax.RECORDED], at [`network_steps`][collapse_jax.network_steps].
    ``progress``: optional host function ``progress(loss)`` called (through
    ``jax.debug.callback``) at every record step, e.g. to move a progress bar (one call per
    record step; in order for one training). ``final_state``: return ``(records, state)``, the
    state after the last step included (encoder, labels, projection).
    """
    config = _check_config(NetworkConfig() if config is None else config, data)
    row = network_row(config.variant)
    save = network_steps(config.steps, config.points, config.late)
    N = data.n_samples
    b = config.batch_size

    def member(frustration, key, lr):
        d = with_frustration(data, jax.random.fold_in(key, 1), frustration)
        state0 = network_start(
            config.variant,
            key,
            d,
            config.dim,
            width=config.width,
            depth=config.depth,
            activation=config.activation,
            label_scale=config.label_scale,
        )
        args = row.data_args(d, config.value)
        opt = network_optimizer(config.optimizer, lr, weight_decay=config.weight_decay)
        sample_args = None
        if b is not None and b < N:

            def sample_args(k):
                idx = jax.random.choice(k, N, (b,), replace=False)
                A = network_alignment(d)[idx] * (N / b)
                return args._replace(inputs=d.X[idx], mech=args.mech._replace(A=A))

        def record(state, full_args):
            out = row.metrics(row, state, d, full_args)
            if progress is not None:
                jax.debug.callback(progress, out["loss"])
            return out

        post_update = None
        if row.ema:

            def post_update(before, after, step_args):
                # the EMA target is not trained: explicit Euler of its relaxation (dt = lr)
                rate = lr / args.mech.params["tau_ema"]
                return after._replace(y_ema=before.y_ema + rate * (before.y - before.y_ema))

        _, rec, last = train(
            row.loss,
            state0,
            args,
            opt,
            steps=config.steps,
            stop_gradient=row.stop_gradient,
            sample_args=sample_args,
            key=jax.random.fold_in(key, 4),
            post_update=post_update,
            save_steps=save,
            record=record,
            return_final=True,
        )
        return (rec, last) if final_state else rec

    return member


def _keys(seeds) -> np.ndarray:
    return np.stack([np.asarray(jax.random.PRNGKey(int(s))) for s in seeds])


def _check_ratios(frustration) -> np.ndarray:
    phis = np.atleast_1d(np.asarray(frustration, dtype=np.float64))
    if phis.ndim != 1 or phis.size == 0:
        raise ValueError(
            f"frustration must be a ratio or a 1-d list of ratios, got {frustration!r}"
        )
    bad = phis[~((phis >= 0) & (phis < 1))]
    if bad.size:
        raise ValueError(f"frustration must be in [0, 1), got {bad[0]!r}")
    return phis


def _check_lr(lr) -> np.ndarray:
    lrs = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    bad = lrs[~(np.isfinite(lrs) & (lrs > 0))]
    if lrs.ndim != 1 or lrs.size == 0 or bad.size:
        raise ValueError(f"lr must be a finite number > 0 (or a list of them), got {lr!r}")
    return lrs


#: The host function the compiled single training reports to (set by ``network_run``).
_PROGRESS = [None]


def _progress_hook(loss):
    if _PROGRESS[0] is not None:
        _PROGRESS[0](loss)


@functools.partial(jax.jit, static_argnames=("config", "progress"))
def _train_one(data, phi, key, lr, *, config, progress):
    """One training with its final state, compiled once per data shape, configuration and
    progress on/off (repeated runs, e.g. several seeds or ratios one after another, reuse it)."""
    member = network_member(
        data, config, progress=_progress_hook if progress else None, final_state=True
    )
    return member(phi, key, lr)


def network_run(
    data: NetworkData,
    *,
    frustration: float = 0.02,
    seed: int = 0,
    lr: float = DEFAULT_LR,
    config: NetworkConfig | None = None,
    progress=None,
    return_state: bool = False,
) -> dict:
    """One network training (jitted, not vmapped): ``step`` and the recorded arrays
    ([`RECORDED`][collapse_jax.RECORDED]), ``shared`` (the number of shared training samples)
    and the summary of [`network_summary`][collapse_jax.network_summary]. ``progress``: see
    [`network_member`][collapse_jax.network_member]; ``return_state``: add ``state``, the
    trained state after the last step."""
    config = NetworkConfig() if config is None else config
    (phi,) = _check_ratios(frustration)
    (lr,) = _check_lr(lr)
    dtype = data.X.dtype
    _check_config(config, data)
    key = jax.random.PRNGKey(int(seed))
    _PROGRESS[0] = progress
    try:
        rec, state = _train_one(
            data,
            jnp.asarray(phi, dtype),
            key,
            jnp.asarray(lr, dtype),
            config=config,
            progress=progress is not None,
        )
        rec = {k: np.asarray(v) for k, v in rec.items()}
    finally:
        _PROGRESS[0] = None
    step = network_steps(config.steps, config.points, config.late)
    shared = int(round(phi * data.n_samples))
    return {
        "step": step,
        **rec,
        "frustration": float(phi),
        "shared": shared,
        **network_summary(step, rec["accuracy"], rec["min_l2"]),
        **({"state": state} if return_state else {}),
    }


class NetworkSweep(NamedTuple):
    """A `phi x seed x lr` study: recorded arrays `(F, S, L, T)`, summaries `(F, S, L)`.

    Attributes:
        frustration: `(F,)`; seed: `(S,)`; lr: `(L,)`; step: `(T,)`.
        shared: `(F,)` shared training samples per ratio.
        records: name -> `(F, S, L, T)` array (the names of
            [`RECORDED`][collapse_jax.RECORDED]).
        summary: name -> `(F, S, L)` array (the keys of
            [`network_summary`][collapse_jax.network_summary]; ``better_fit`` as strings).
        metadata: the configuration, timings and environment.
    """

    frustration: np.ndarray
    seed: np.ndarray
    lr: np.ndarray
    step: np.ndarray
    shared: np.ndarray
    records: dict
    summary: dict
    metadata: dict


def network_sweep(
    data: NetworkData,
    frustration,
    seeds,
    *,
    lr=DEFAULT_LR,
    config: NetworkConfig | None = None,
    devices=None,
) -> NetworkSweep:
    """Every `phi x seed x lr` training in one sharded ``jit(vmap)`` on
    [`run_grid`][collapse_jax.run_grid]; ``seeds`` an int `S` (seeds `0..S-1`) or a list."""
    from ._sweep import environment, run_grid

    config = NetworkConfig() if config is None else config
    phis = _check_ratios(frustration)
    lrs = _check_lr(lr)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seeds = np.arange(seeds)
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
    dtype = data.X.dtype
    member = network_member(data, config)
    out, timing = run_grid(
        member,
        {"frustration": phis.astype(dtype), "key": _keys(seeds), "lr": lrs.astype(dtype)},
        devices=devices,
    )
    step = network_steps(config.steps, config.points, config.late)
    out = {k: np.asarray(v) for k, v in out.items()}
    summary = {}
    for idx in np.ndindex(phis.size, seeds.size, lrs.size):
        s = network_summary(step, out["accuracy"][idx], out["min_l2"][idx])
        for k, v in s.items():
            summary.setdefault(k, np.empty((phis.size, seeds.size, lrs.size), object))[idx] = v
    summary = {
        k: (v.astype(np.float64) if k != "better_fit" else v.astype(str))
        for k, v in summary.items()
    }
    meta = {
        "config": config._asdict(),
        "data": data.name,
        "n_samples": data.n_samples,
        "n_classes": data.n_classes,
        **timing,
        **environment(),
    }
    shared = np.round(phis * data.n_samples).astype(np.int64)
    return NetworkSweep(phis, seeds, lrs, step, shared, out, summary, meta)


def fit_late_decay(step, values, start: float = 0.5) -> dict:
    """The late decay of ``values`` (e.g. MinL2) fitted two ways over `step >= start * last`.

    ``slow_rate_fit``: the least-squares slope of `log v` against the step (an exponential
    `v ~ e^{r step}`, `r < 0` for a decay, per step); ``power_law_exponent``: the slope of
    `log v` against `log step` (`v ~ step^p`); ``better_fit``: the one with the smaller sum of
    squared residuals of `log v` (both fits have two parameters), ``"exponential"`` or
    ``"power law"``; ``rss_exponential``, ``rss_power_law``. NaN (``better_fit`` ``"none"``)
    with fewer than three finite positive values in the window.
    """
    step = np.asarray(step, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    window = (step >= start * step.max()) & (step > 0) & np.isfinite(v) & (v > 0)
    nan = float("nan")
    if window.sum() < 3:
        return {
            "slow_rate_fit": nan,
            "power_law_exponent": nan,
            "better_fit": "none",
            "rss_exponential": nan,
            "rss_power_law": nan,
        }
    s, lv = step[window], np.log(v[window])
    out = {}
    for name, x in (("exponential", s), ("power_law", np.log(s))):
        coef = np.polyfit(x - x.mean(), lv, 1)
        resid = lv - np.polyval(coef, x - x.mean())
        out[name] = (float(coef[0]), float(np.sum(resid**2)))
    better = "exponential" if out["exponential"][1] <= out["power_law"][1] else "power law"
    return {
        "slow_rate_fit": out["exponential"][0],
        "power_law_exponent": out["power_law"][0],
        "better_fit": better,
        "rss_exponential": out["exponential"][1],
        "rss_power_law": out["power_law"][1],
    }


def network_summary(step, accuracy, min_l2, *, drop: float = 0.1) -> dict:
    """What one training shows: ``peak_accuracy`` and ``peak_step`` (the first step where the
    clean training accuracy is at its maximum), ``final_accuracy``, ``accuracy_drop`` (peak -
    final), ``collapse_step`` (the first step after the peak with accuracy at least ``drop``
    below the peak; NaN if none), ``min_l2_at_peak``, ``final_min_l2`` and the late decay of the
    label MinL2 ([`fit_late_decay`][collapse_jax.fit_late_decay])."""
    step = np.asarray(step)
    acc = np.asarray(accuracy, dtype=np.float64)
    m = np.asarray(min_l2, dtype=np.float64)
    nan = float("nan")
    if not np.any(np.isfinite(acc)):
        peak, peak_i = nan, 0
    else:
        peak_i = int(np.nanargmax(acc))
        peak = float(acc[peak_i])
    after = np.flatnonzero((np.arange(acc.size) > peak_i) & (acc <= peak - drop))
    return {
        "peak_accuracy": peak,
        "peak_step": float(step[peak_i]),
        "final_accuracy": float(acc[-1]),
        "accuracy_drop": float(peak - acc[-1]),
        "collapse_step": float(step[after[0]]) if after.size else nan,
        "min_l2_at_peak": float(m[peak_i]),
        "final_min_l2": float(m[-1]),
        **fit_late_decay(step, m),
    }
