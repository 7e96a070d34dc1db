"""Every collapse-prevention mechanism in one minimal model, compared.

[`mechanism_sweep`][collapse_jax.mechanism_sweep] integrates one
[`Mechanism`][collapse_jax.Mechanism] over a `frustration x hyper-parameter x seed` grid
in one ``jit(vmap)`` call (shapes are fixed by the frustration masks of
[`frustration_data`][collapse_jax.frustration_data]);
[`compare_mechanisms`][collapse_jax.compare_mechanisms] runs it for every mechanism,
classifies each member and builds the table of the frustration range in which each mechanism keeps a
finite separation. [`fixed_point_analysis`][collapse_jax.fixed_point_analysis] tabulates
the steady state and linear stability of every mechanism
([`mechanism_fixed_point`][collapse_jax.mechanism_fixed_point]), and
[`training_comparison`][collapse_jax.training_comparison] classifies
[`train_mechanism`][collapse_jax.train_mechanism], the discrete (optax) counterpart of the
flow, per optimiser. Every grid runs on the sharded engine of
[`run_grid`][collapse_jax.run_grid].

Classification of a member (documented choice, from `MinL2(t)` at the save times):

* ``"collapsed"``: MinL2 fell below ``collapse_fraction`` (1e-2) of its start
  ([`collapse_time`][collapse_jax.collapse_time] is finite);
* ``"separated"``: it did not, and the late log-slope
  ([`fit_slow_rate`][collapse_jax.fit_slow_rate] over the last decade of times where MinL2
  is above `RATE_FLOOR` of its start) times the horizon is above ``-1`` (less than one e-fold of
  decay at the final rate over the whole run: a finite separation, or a growing one);
* ``"decaying"``: neither within the horizon (slow collapse still under way).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ._data import frustration_data, shared_from_frustration
from ._diagnostics import diagnose
from ._fixed_points import mechanism_fixed_point, predicted_zero_modes
from ._integrate import log_times, simulate, train
from ._mechanisms import MECHANISMS, Mechanism, get_mechanism, mechanism_metrics
from ._metrics import fit_slow_rate, min_l2
from ._sweep import collapse_time, environment, run_grid

__all__ = [
    "DIAGNOSTIC_KEYS",
    "mechanism_member",
    "mechanism_sweep",
    "classify",
    "compare_mechanisms",
    "separation_table",
    "fixed_point_analysis",
    "train_mechanism",
    "training_comparison",
    "default_optimizers",
    "QUICK",
    "FULL",
]

#: Diagnostics (docs/theory.md §5) kept for the final clean-sample embeddings.
DIAGNOSTIC_KEYS = (
    "rankme",
    "participation_ratio",
    "std_l2_normalized",
    "nc1",
    "min_l2_class_means",
    "ncm_accuracy",
)

#: Late rates are fitted where MinL2 is above this fraction of its start: clear of the
#: integrator's tolerance (rtol 1e-7 on O(1) labels); below it the fit sees noise (measured:
#: EMA, tau_ema = 2, fitted -0.089 with the default floor vs the closed form -0.186).
RATE_FLOOR = 1e-5

#: Grid of ``collapse-jax mechanisms --quick`` and of the full run.
QUICK = dict(frustration=(0.0, 0.1, 0.25), seeds=1, per_class=6, dim=4, t1=200.0, points=40)
FULL = dict(
    frustration=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4), seeds=2, per_class=8, dim=5, t1=400.0, points=60
)


def mechanism_member(
    mech: Mechanism,
    data,
    key,
    value,
    *,
    dim: int,
    ts,
    solver=None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    max_steps: int = 400_000,
):
    """One member: integrate ``mech`` from its default start, metrics at ``ts``.

    Returns MinL2, accuracies and loss at ``ts``, the diffrax result code and step count, and
    [`DIAGNOSTIC_KEYS`][collapse_jax.DIAGNOSTIC_KEYS] of
    [`diagnose`][collapse_jax.diagnose] on the final clean-sample embeddings `x_i` (with
    their classes; shared rows are left out so that the shape does not depend on the frustration
    ratio). Default solver: ``Tsit5`` (explicit; these small systems are stiff only mildly, and
    implicit solvers cost more to compile than to run).
    """
    z0 = mech.start(key, data, dim)
    args = mech.data_args(data, value)
    sol = simulate(
        mech.field(),
        z0,
        args,
        ts=ts,
        solver=diffrax.Tsit5() if solver is None else solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    m = jax.vmap(lambda s: mechanism_metrics(mech, s, data, args))(sol.ys)
    n_clean = data.n_classes * data.per_class
    x_final = sol.ys.x[-1, :n_clean]
    # a failed solve leaves inf in ys: diagnose a placeholder and report NaN instead
    finite = jnp.all(jnp.isfinite(x_final))
    diag = diagnose(
        jnp.where(finite, x_final, jnp.eye(*x_final.shape, dtype=x_final.dtype)),
        np.asarray(data.labels),
        n_classes=data.n_classes,
    )
    diag = {k: jnp.where(finite, diag[k], jnp.nan) for k in DIAGNOSTIC_KEYS}
    return {
        **m,
        "result": sol.result._value.astype(jnp.int32),
        "steps": jnp.asarray(sol.stats["num_steps"], jnp.int32),
        **{f"diag_{k}": diag[k] for k in DIAGNOSTIC_KEYS},
    }


def mechanism_sweep(
    mechanism,
    frustration: Sequence[float],
    values=None,
    seeds=1,
    *,
    n_classes: int = 3,
    per_class: int = 6,
    dim: int = 4,
    t1: float = 200.0,
    points: int = 40,
    devices=None,
    **member_kw,
) -> dict:
    """``jit(vmap)`` of [`mechanism_member`][collapse_jax.mechanism_member] over
    `frustration x values x seeds`.

    Args:
        mechanism: a [`Mechanism`][collapse_jax.Mechanism] or its registry name.
        frustration: ratios `phi` (rule ``"round"``: `M = round(phi K n / (1 - phi))` shared
            rows, reported as ``shared``).
        values: main hyper-parameter values (default: the mechanism's ``grid``; ignored, one
            value, for mechanisms without one).
        seeds: count or list of seeds of the default initial state.
        devices: devices of the sweep mesh (default all): the grid runs on the sharded
            engine of [`run_grid`][collapse_jax.run_grid].

    Returns:
        A dict of host arrays with axes `(F, H, S[, T])` (``min_l2``, ``accuracy``,
        ``accuracy_all``, ``loss``, ``result``, ``steps``, ``diag_*``), ``collapse_time``,
        ``slow_rate``, ``status`` ([`classify`][collapse_jax.classify]), the axes
        ``frustration``, ``shared``, ``values``, ``seeds``, ``t`` and ``seconds``.
    """
    mech = get_mechanism(mechanism)
    phis = np.atleast_1d(np.asarray(frustration, dtype=np.float64))
    if mech.hyper is None:
        vals = np.array([np.nan])
    else:
        vals = np.atleast_1d(np.asarray(mech.grid if values is None else values, np.float64))
        if vals.size == 0 or not np.all(np.isfinite(vals) & (vals > 0)):
            raise ValueError(f"values of {mech.hyper} must be positive numbers, got {values!r}")
    seeds = np.arange(seeds) if isinstance(seeds, (int, np.integer)) else np.asarray(seeds)
    if seeds.size == 0:
        raise ValueError("seeds must name at least one seed")
    M = shared_from_frustration(n_classes, per_class, phis)
    max_shared = int(np.max(np.round(M)))
    data = frustration_data(n_classes, per_class, phis, max_shared=max_shared)
    F, H, S = phis.size, vals.size, seeds.size
    keys = np.stack([np.asarray(jax.random.PRNGKey(int(s))) for s in seeds])
    ts = log_times(1e-2, t1, points)

    def member(data, value, key):
        return mechanism_member(
            mech, data, key, None if mech.hyper is None else value, dim=dim, ts=ts, **member_kw
        )

    # the grid: frustration outermost, then value, then seed
    res, timing = run_grid(member, {"data": data, "value": vals, "key": keys}, devices=devices)
    seconds = timing["compile_seconds"] + timing["run_seconds"]
    t = np.asarray(ts)
    res["collapse_time"] = collapse_time(t, res["min_l2"])
    rates = np.full((F, H, S), np.nan)
    for idx in np.ndindex(F, H, S):
        ml = res["min_l2"][idx]
        rates[idx] = fit_slow_rate(t, ml, floor=RATE_FLOOR * ml[0])
    res["slow_rate"] = rates
    res["status"] = classify(t, res["min_l2"], rates)
    res.update(
        mechanism=mech.name,
        hyper=mech.hyper,
        frustration=phis,
        shared=np.asarray(data.shared_total).reshape(F),
        values=vals,
        seeds=seeds,
        t=t,
        seconds=seconds,
        n_classes=n_classes,
        per_class=per_class,
        dim=dim,
    )
    return res


def classify(t, min_l2, slow_rate, *, collapse_fraction: float = 1e-2) -> np.ndarray:
    """``"collapsed"`` / ``"separated"`` / ``"decaying"`` per member (module docstring)."""
    t = np.asarray(t)
    ct = collapse_time(t, min_l2, collapse_fraction)
    rate = np.asarray(slow_rate)
    steady = np.isfinite(rate) & (rate * t[-1] > -1.0)
    return np.where(np.isfinite(ct), "collapsed", np.where(steady, "separated", "decaying"))


def _separated_up_to(frustration, separated) -> float | None:
    """The largest ratio such that every ratio up to it is separated (``None``: not even the
    first)."""
    upto = None
    for phi, good in zip(frustration, separated, strict=True):
        if not good:
            break
        upto = float(phi)
    return upto


def separation_table(results: dict) -> list[dict]:
    """One row per mechanism and hyper-parameter value: where it keeps a finite separation.

    ``separated_up_to`` is the largest ratio `phi` such that every member at every ratio up to
    it is ``"separated"`` (``None`` if already the smallest ratio is not); ``separated_at``
    lists the ratios where all seeds are separated; ``final_min_l2_ratio`` the seed-median of
    final / initial MinL2 per ratio.
    """
    rows = []
    for name, r in results.items():
        for h, v in enumerate(r["values"]):
            ok = np.all(r["status"][:, h, :] == "separated", axis=-1)
            ratio = r["min_l2"][:, h, :, -1] / r["min_l2"][:, h, :, 0]
            rows.append(
                {
                    "mechanism": name,
                    "hyper": r["hyper"],
                    "value": None if np.isnan(v) else float(v),
                    "separated_up_to": _separated_up_to(r["frustration"], ok),
                    "separated_at": [
                        float(p) for p, g in zip(r["frustration"], ok, strict=True) if g
                    ],  # fmt: skip
                    "status": [list(s) for s in r["status"][:, h, :]],
                    "final_min_l2_ratio": np.median(ratio, axis=-1).tolist(),
                    "slow_rate": np.median(r["slow_rate"][:, h, :], axis=-1).tolist(),
                    "final_accuracy": np.median(r["accuracy"][:, h, :, -1], axis=-1).tolist(),
                    "frustration": r["frustration"].tolist(),
                    "shared": r["shared"].tolist(),
                }
            )
    return rows


def compare_mechanisms(
    mechanisms: Sequence[str] | None = None,
    *,
    frustration=QUICK["frustration"],
    seeds=QUICK["seeds"],
    per_class: int = QUICK["per_class"],
    dim: int = QUICK["dim"],
    t1: float = QUICK["t1"],
    points: int = QUICK["points"],
    values: dict | None = None,
    progress=None,
) -> dict:
    """[`mechanism_sweep`][collapse_jax.mechanism_sweep] for every mechanism
    (default all of [`MECHANISMS`][collapse_jax.MECHANISMS]) and the
    [`separation_table`][collapse_jax.separation_table].

    ``values`` maps a mechanism name to its hyper-parameter values (default its ``grid``).
    Returns ``{"results": name -> sweep dict, "table": rows, "seconds": total,
    "environment": ...}``.
    """
    names = list(MECHANISMS) if mechanisms is None else list(mechanisms)
    for n in names:
        get_mechanism(n)
    values = values or {}
    results = {}
    start = time.perf_counter()
    for n in names:
        if progress is not None:
            progress(n)
        results[n] = mechanism_sweep(
            n,
            frustration,
            values.get(n),
            seeds,
            per_class=per_class,
            dim=dim,
            t1=t1,
            points=points,
        )
    return {
        "results": results,
        "table": separation_table(results),
        "seconds": time.perf_counter() - start,
        "environment": environment(),
    }


# --- fixed points and linear stability of every mechanism ----------------------------------


def fixed_point_analysis(
    mechanisms: Sequence[str] | None = None,
    *,
    frustration=(0.0, 0.1),
    n_classes: int = 3,
    per_class: int = 6,
    dim: int = 4,
    seed: int = 0,
    t_max: float = 1e4,
    zero_tol: float = 1e-7,
    progress=None,
) -> list[dict]:
    """[`mechanism_fixed_point`][collapse_jax.mechanism_fixed_point] for every mechanism
    (default hyper-parameters) and frustration ratio, with
    [`predicted_zero_modes`][collapse_jax.predicted_zero_modes].

    `M = round(phi K n / (1 - phi))` active shared samples (no inactive rows). One row per
    (mechanism, ratio): ``mechanism``, ``frustration``, ``shared``, ``status``, ``t``,
    ``residual``, ``max_real``, ``zero_modes``, ``zero_modes_predicted`` (``None`` where
    there is no prediction), ``zero_modes_why``, ``min_l2``, ``n_variables``,
    ``asymmetry_norm``, ``smallest_nonzero`` (smallest `|lambda|` above ``zero_tol``).
    """
    from ._data import standard_data

    names = list(MECHANISMS) if mechanisms is None else list(mechanisms)
    rows = []
    for phi in np.atleast_1d(np.asarray(frustration, np.float64)):
        M = int(round(shared_from_frustration(n_classes, per_class, float(phi))))
        data = standard_data(n_classes, per_class, M)
        for name in names:
            if progress is not None:
                progress(f"{name} phi={phi:g}")
            mech = get_mechanism(name)
            z0 = mech.start(jax.random.PRNGKey(seed), data, dim)
            out = mechanism_fixed_point(mech, data, z0, zero_tol=zero_tol, t_max=t_max)
            pred, why = predicted_zero_modes(mech, out["state"], data)
            mod = np.abs(out["eigenvalues"])
            rows.append(
                {
                    "mechanism": name,
                    "frustration": float(phi),
                    "shared": M,
                    "status": out["status"],
                    "t": out["t"],
                    "residual": out["residual"],
                    "max_real": out["max_real"],
                    "zero_modes": out["zero_modes"],
                    "zero_modes_predicted": pred,
                    "zero_modes_why": why,
                    "min_l2": out["min_l2"],
                    "n_variables": out["n_variables"],
                    "asymmetry_norm": out["asymmetry_norm"],
                    "smallest_nonzero": float(np.min(mod[mod > zero_tol])),
                }
            )
    return rows


# --- discrete training (optax) --------------------------------------------------------------


def train_mechanism(
    mechanism,
    data,
    state0,
    optimizer,
    *,
    steps: int,
    dt: float,
    value=None,
    batch_size: int | None = None,
    key=None,
    save_every: int = 1,
):
    """Discrete training of a mechanism with an optax optimiser, on the same loss as its flow.

    The gradient is that of [`training_loss`][collapse_jax.training_loss]
    (``lax.stop_gradient`` on the held slot for stop-gradient and EMA mechanisms). The EMA target is
    not trained: after each update `y_ema <- y_ema + (dt / tau_ema)(y - y_ema)` (explicit Euler of
    its relaxation with the pre-update `y`; ``dt`` is the flow time one step stands for, the
    learning rate for ``optax.sgd``), so weight decay never acts on it. Minibatch noise: with
    ``batch_size`` `b`, every step keeps each row of `A` with probability `b/N` and rescales it by
    `N/b` (an unbiased estimate of the full-batch gradient); step `j` uses ``fold_in(key, j)``.

    Returns ``(steps_saved, states)`` like [`collapse_jax.train`][collapse_jax.train].
    `jit`/`vmap`-able over ``data`` (frustration masks) and ``value``.
    """
    mech = get_mechanism(mechanism)
    if batch_size is not None and key is None:
        raise ValueError("train_mechanism: batch_size needs a PRNG key (key=...)")
    args = mech.data_args(data, value)
    N = args.A.shape[0]
    sample_args = None
    if batch_size is not None:

        def sample_args(k):
            keep = jax.random.bernoulli(k, batch_size / N, (N,))
            return args._replace(A=args.A * keep[:, None].astype(args.A.dtype) * (N / batch_size))

    post_update = None
    if mech.ema:

        def post_update(before, after, step_args):
            # the EMA target is not trained: explicit Euler of its relaxation, pre-update `y`
            rate = dt / args.params["tau_ema"]
            return after._replace(y_ema=before.y_ema + rate * (before.y - before.y_ema))

    return train(
        mech.loss,
        state0,
        args,
        optimizer,
        steps=steps,
        stop_gradient=mech.stop_gradient,
        save_every=save_every,
        sample_args=sample_args,
        key=key,
        post_update=post_update,
    )


def default_optimizers(lr: float = 5e-3) -> dict:
    """Optimisers of [`training_comparison`][collapse_jax.training_comparison]:
    ``name -> (optax transform, dt, batch)``.

    All stand for the same flow time per step (`dt = lr`): plain gradient descent
    (``gd``), heavy-ball momentum 0.9 at learning rate `lr (1 - 0.9)` (same terminal
    velocity), Adam at `lr` (its steps are normalised, so `dt` is nominal), gradient descent
    with decoupled weight decay `1e-2` (``optax.add_decayed_weights``), and gradient descent
    on random half-batches (minibatch noise).
    """
    import optax

    return {
        "gd": (optax.sgd(lr), lr, None),
        "momentum": (optax.sgd(lr * 0.1, momentum=0.9), lr, None),
        "adam": (optax.adam(lr), lr, None),
        "weight_decay": (optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(lr)), lr, None),
        "minibatch": (optax.sgd(lr), lr, "half"),
    }


def training_comparison(
    mechanisms: Sequence[str] | None = None,
    *,
    frustration=QUICK["frustration"],
    seed: int = 0,
    n_classes: int = 3,
    per_class: int = QUICK["per_class"],
    dim: int = QUICK["dim"],
    t1: float = 100.0,
    optimizers: dict | None = None,
    points: int = 50,
    progress=None,
) -> dict:
    """Discrete training for every mechanism and optimiser over frustration ratios.

    Each (mechanism, optimiser) is one sharded ``jit(vmap)``
    ([`run_grid`][collapse_jax.run_grid]) of
    [`train_mechanism`][collapse_jax.train_mechanism] over the ratios (default
    hyper-parameter, one seed), run for `t1 / dt` steps; members are classified like the flow
    ([`classify`][collapse_jax.classify], with `t = step dt`). Returns
    ``{"rows": [...], "seconds": ...}``; each row holds the mechanism, optimiser, ratios, ``status``
    per ratio, ``final_min_l2_ratio`` and ``separated_up_to``.
    """
    names = list(MECHANISMS) if mechanisms is None else list(mechanisms)
    optimizers = default_optimizers() if optimizers is None else optimizers
    phis = np.atleast_1d(np.asarray(frustration, dtype=np.float64))
    M = shared_from_frustration(n_classes, per_class, phis)
    data = frustration_data(n_classes, per_class, phis, max_shared=int(np.max(np.round(M))))
    rows = []
    start = time.perf_counter()
    for name in names:
        mech = get_mechanism(name)
        z0 = mech.start(jax.random.PRNGKey(seed), data, dim)
        for opt_name, (opt, dt, batch) in optimizers.items():
            if progress is not None:
                progress(f"{name}/{opt_name}")
            steps = int(round(t1 / dt))
            save_every = max(1, steps // points)
            steps = save_every * (steps // save_every)
            bs = None if batch is None else max(1, data.n_samples // 2)

            def run(data, mech=mech, z0=z0, opt=opt, dt=dt, steps=steps, every=save_every, bs=bs):
                _, states = train_mechanism(
                    mech, data, z0, opt, steps=steps, dt=dt, batch_size=bs,
                    key=jax.random.PRNGKey(seed + 1), save_every=every,
                )  # fmt: skip
                return jax.vmap(min_l2)(states.y)

            ml, _ = run_grid(run, {"data": data})
            t = np.arange(ml.shape[-1]) * save_every * dt
            rates = np.array([fit_slow_rate(t[1:], m[1:], floor=RATE_FLOOR * m[0]) for m in ml])
            status = classify(t[1:], ml[:, 1:], rates)
            rows.append(
                {
                    "mechanism": name,
                    "optimizer": opt_name,
                    "frustration": phis.tolist(),
                    "status": status.tolist(),
                    "final_min_l2_ratio": (ml[:, -1] / ml[:, 0]).tolist(),
                    "slow_rate": rates.tolist(),
                    "separated_up_to": _separated_up_to(phis, status == "separated"),
                    "steps": steps,
                    "dt": dt,
                }
            )
    return {"rows": rows, "seconds": time.perf_counter() - start}


def _finite_difference_jacobian(field, state, args, h: float = 1e-6) -> np.ndarray:
    from ._spectral import finite_difference_jacobian

    return finite_difference_jacobian(field, state, args, step=h)


_DEPRECATED = {
    "finite_difference_jacobian": (
        _finite_difference_jacobian,
        "collapse_jax.comparison.finite_difference_jacobian is deprecated: use "
        "collapse_jax.finite_difference_jacobian (step=1e-6 for the old default)",
    ),
}


def __getattr__(name):
    # old import paths keep working for one release, with a DeprecationWarning
    if name in _DEPRECATED:
        import warnings

        value, message = _DEPRECATED[name]
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
