"""The paper's whole story in one run: figures, verifications and a written report.

[`reproduce`][collapse_jax.reproduce.reproduce] runs five sections and writes PNG figures,
``report.md`` (which embeds them) and ``numbers.json`` (every number of the report,
machine-readable) into one folder:

1. ``embedding``: the embedding-only model: fast alignment and slow collapse. The exact
   sector solution against ``scipy.linalg.expm`` of the loss Hessian assembled in numpy; the
   diffrax-integrated path against the exact one; fast and slow rates fitted to the
   integrated path against `lambda_pm` written out in closed form, also against the class
   size `n` at fixed frustration; Jacobian sector spectra against the closed forms; `M = 0`
   against `M > 0`.
2. ``projection``: the projection head with and without stop-gradient (docs/theory.md §3, P1-P3):
   trajectories on the `N`-independent reduced path
   ([`simulate_projection`][collapse_jax.projection.simulate_projection]) and fixed points found,
   polished and classified by
   [`projection_fixed_point`][collapse_jax.steady.projection_fixed_point].
3. ``sweep``: a frustration sweep ([`embedding_sweep`][collapse_jax.sweep.embedding_sweep]) and its
   phase diagram; a few members against ``scipy.linalg.expm``; a small diffrax-integrated sweep
   whose fitted slow and fast rates (worst member) are held to `lambda_pm`; and a projection-model
   sweep with and without stop-gradient where this version of
   [`collapse_jax.sweep`][collapse_jax.sweep] has ``projection_sweep``.
4. ``teacher_student``: the linear teacher-student model (docs/theory.md §4).
5. ``diagnostics``: the collapse diagnostics on diffrax-integrated embeddings (class-mean
   MinL2 checked against numpy, its decay against `lambda+` in closed form).

The report reports; it does not re-derive. Every number comes from the library functions the
test suite checks (``lambda_pm``, ``exact_min_l2``, ``fit_slow_rate``,
``embedding_spectrum_report``, ``projection_fixed_point``, ``run_teacher_student``,
``trajectory_diagnostics``, ...), and every verification is stated with its measured error
and the tolerance it is held to. A section that raises is reported as failed and the others
still run.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np

__all__ = [
    "ReproduceConfig",
    "QUICK",
    "FULL",
    "SECTIONS",
    "reproduce",
    "fmt_error",
    "fmt_value",
]

#: Section names in report order.
SECTIONS = ("embedding", "projection", "sweep", "teacher_student", "diagnostics")

_TITLES = {
    "embedding": "Embedding-only model: fast alignment, slow collapse (docs/theory.md §2)",
    "projection": "Projection head and stop-gradient: P1-P3 (docs/theory.md §3)",
    "sweep": "Frustration sweeps: phase diagram and slow-rate fit (docs/theory.md §2, §3)",
    "teacher_student": "Linear teacher-student model (docs/theory.md §4)",
    "diagnostics": "Collapse diagnostics on simulated embeddings (docs/theory.md §5)",
}

_TIME_LABEL = "time t (gradient-flow time, dimensionless)"


class ReproduceConfig(NamedTuple):
    """Sizes of a [`reproduce`][collapse_jax.reproduce.reproduce] run.
    [`QUICK`][collapse_jax.reproduce.QUICK] and [`FULL`][collapse_jax.reproduce.FULL] are the two
    presets.

    Attributes:
        classes, per_class, shared, dim, seed: the embedding model `(K, n, M, d)` and its start
            (section 1; the `M = 0` comparison uses the same `K, n, d` and seed).
        t_min, t1, points: log-spaced save times of the embedding runs (section 1 adds 40
            equally spaced times over the fast phase, on which the fast rate is fitted).
        projection_seed, projection_t1: start and horizon of the projection trajectories
            (same `K, n, M, d`).
        projection_seeds: starts classified by branch for P2 (1: only ``projection_seed``).
        sweep_frustration: ``(start, stop, count)`` ratios of the embedding sweep (stop
            included); ``sweep_seeds`` seeds each.
        integrated_sweep: also run the sweep with diffrax (explicit ``Tsit5``) on
            ``integrated_sweep`` ratios x 2 seeds (0: skip) and hold its fitted slow and fast
            rates to `lambda_pm` written out.
        projection_sweep: run the projection-model sweep where
            ``collapse_jax.sweep.projection_sweep`` exists;
            ``projection_sweep_frustration``, ``projection_sweep_seeds``,
            ``projection_sweep_t1``, ``projection_sweep_per_class``: its sizes.
        ts_frustration, ts_seeds, ts_t1: teacher-student runs (docs/theory.md §4 defaults
            otherwise: `D = 100, P = 400, p = 5`).
        diagnostics_dim, diagnostics_t1, diagnostics_points: the embedding runs whose sample
            embeddings are diagnosed (section 5); `d > K` so that dimensional collapse shows.
        rates_vs_n, rates_vs_n_frustration, rates_vs_n_dim, rates_vs_n_t1: the per-class
            counts `n` (at one fixed frustration ratio) whose integrated fast and slow rates
            are held to `lambda_pm` (section 1).
        sweep_expm_members: members of the exact-path sweep (spread over the ratios) whose
            MinL2(t) is checked against ``scipy.linalg.expm`` (section 3).
        projection_reference_t1: the projection trajectories (lifted reduced path) are
            checked against a scipy LSODA integration of every sample up to this time
            (section 2; 0: skip).
        ts_sg_t1: horizon of the teacher-student stop-gradient runs (long enough for them to
            reach their fixed point: `|F|` falls to about 1e-11 of its start by `t = 2000`).
    """

    classes: int = 3
    per_class: int = 10
    shared: int = 2
    dim: int = 4
    seed: int = 0
    t_min: float = 1e-2
    t1: float = 1e3
    points: int = 100
    projection_seed: int = 1
    projection_t1: float = 1e3
    projection_seeds: int = 1
    sweep_frustration: tuple[float, float, int] = (0.0, 0.5, 16)
    sweep_seeds: int = 4
    integrated_sweep: int = 3
    projection_sweep: bool = True
    projection_sweep_frustration: tuple[float, float, int] = (0.0, 0.3, 4)
    projection_sweep_seeds: int = 2
    projection_sweep_t1: float = 1e3
    projection_sweep_per_class: int = 10
    ts_frustration: tuple[float, ...] = (0.0, 0.1, 0.2)
    ts_seeds: int = 1
    ts_t1: float = 400.0
    diagnostics_dim: int = 8
    diagnostics_t1: float = 100.0
    diagnostics_points: int = 40
    rates_vs_n: tuple[int, ...] = (5, 10, 20, 40)
    rates_vs_n_frustration: float = 0.2
    rates_vs_n_dim: int = 2
    rates_vs_n_t1: float = 100.0
    sweep_expm_members: int = 3
    projection_reference_t1: float = 1e3
    ts_sg_t1: float = 2000.0


#: ``--quick``: a few minutes on a 2-core laptop CPU, most of it JAX compilation.
QUICK = ReproduceConfig()

#: The full run: larger sweeps, P2 branch counts over many starts, more teacher-student runs
#: (sized for an accelerator; the fixed-point searches run on the host either way).
FULL = ReproduceConfig(
    points=200,
    projection_seeds=12,
    sweep_frustration=(0.0, 0.5, 64),
    sweep_seeds=16,
    integrated_sweep=16,
    projection_sweep_frustration=(0.0, 0.4, 12),
    projection_sweep_seeds=4,
    ts_frustration=(0.0, 0.1, 0.2, 0.3),
    ts_seeds=3,
    ts_sg_t1=1e4,  # seed 2 at f = 0 is still approaching its fixed point at t = 2000
    diagnostics_dim=16,
    diagnostics_points=80,
)


# --- numbers and their formatting ------------------------------------------------------------


def fmt_error(x) -> str:
    """How the report writes an error or a tolerance (``1.23e-06``)."""
    x = float(x)
    return f"{x:.2e}" if math.isfinite(x) else str(x)


def fmt_value(x) -> str:
    """How the report writes a measured value (6 significant digits)."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, str):
        return x
    x = float(x)
    return f"{x:.6g}" if math.isfinite(x) else str(x)


def _plain(obj):
    """JSON-ready copy: numpy/JAX scalars and arrays become Python; NaN/inf become null."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _plain(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


class Check(NamedTuple):
    """One verification: a measured quantity against its reference.

    ``error`` is ``|measured - reference|`` (``kind="abs"``), the same divided by
    ``|reference|`` (``"rel"``), or a bound violation: how far ``measured`` exceeds
    ``reference`` (``"bound"``, an upper bound) or falls short of it (``"bound_below"``), 0
    inside; for an ``"outcome"`` (a classification) it is 0 when the outcome matches and 1
    otherwise. A check passes when its error is finite and at most ``tolerance``.

    ``basis`` says what the reference is and why it is independent of the computation it
    checks (a closed form, ``scipy.linalg.expm``, a numpy loop, finite differences, an
    integration of every sample, ...); the report prints it beside every verification.
    """

    section: str
    what: str
    measured: object
    reference: object
    error: float
    kind: str
    tolerance: float
    basis: str = ""

    @property
    def passed(self) -> bool:
        return bool(math.isfinite(self.error) and self.error <= self.tolerance)

    def as_dict(self) -> dict:
        return {**_plain(self._asdict()), "passed": self.passed}


def _num(section, what, measured, reference, tol, kind="rel", *, basis: str = "") -> Check:
    m, r = float(measured), float(reference)
    if kind == "rel":
        err = abs(m - r) / abs(r) if r != 0 else abs(m - r)
    elif kind == "abs":
        err = abs(m - r)
    elif kind == "bound":
        err = max(m - r, 0.0)
    elif kind == "bound_below":
        err = max(r - m, 0.0)
    else:
        raise ValueError(kind)
    if not math.isfinite(m):
        err = float("inf")
    return Check(section, what, m, r, float(err), kind, float(tol), basis)


def _outcome(section, what, measured, expected, *, basis: str = "") -> Check:
    err = 0.0 if measured == expected else 1.0
    return Check(section, what, measured, expected, err, "outcome", 0.0, basis)


class Section(NamedTuple):
    name: str
    body: list[str]
    figures: list[str]
    checks: list[Check]
    numbers: dict


def _pyplot():
    from .plots import _pyplot as pyplot

    return pyplot()


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return str(path)


_FIG = "Figure #"  # numbered in report order by _report


def _table(header: str, rows: list[str]) -> str:
    """A Markdown table (one paragraph) from a ``a | b`` header and ``| a | b |`` rows."""
    ncol = header.count("|") + 1
    return "\n".join([f"| {header} |", "|" + "---|" * ncol, *rows])


def _cell(x) -> str:
    """A table cell: a value, or a dash where there is none (NaN)."""
    if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
        return "—"
    return fmt_value(x)


def _img(path: str, caption: str) -> str:
    return f"![{_FIG}: {caption}]({Path(path).name})\n\n*{_FIG}: {caption}*"


# --- 1. embedding model -----------------------------------------------------------------------


@eqx.filter_jit
def _path_metrics(ys, data):
    # one compiled function instead of dozens of eagerly dispatched (and compiled) ops
    from .metrics import embedding_metrics

    return jax.vmap(lambda s: embedding_metrics(s, data))(ys)


@eqx.filter_jit
def _exact_path(z, data, ts):
    """MinL2 (round-off free) and clean-sample accuracy on the exact sector solution."""
    from .exact import exact_min_l2, exact_solution

    return exact_min_l2(z, data, ts), _path_metrics(exact_solution(z, data, ts), data)["accuracy"]


def _closed_lambda(n, M) -> tuple[float, float]:
    """`lambda_pm = ½[−(n+M+1) ± √((n+M+1)² − 4M)]`, written out in numpy: the reference the
    fitted rates are held to (independent of the library's sector solution)."""
    b = float(n) + float(M) + 1.0
    r = math.sqrt(b * b - 4.0 * float(M))
    return 0.5 * (-b + r), 0.5 * (-b - r)


def _np_min_l2(y) -> np.ndarray:
    """MinL2 of label positions ``y`` (``(..., K, d)``) in numpy: the smallest pairwise
    distance."""
    y = np.asarray(y, dtype=np.float64)
    K = y.shape[-2]
    D = np.linalg.norm(y[..., :, None, :] - y[..., None, :, :], axis=-1)
    D[..., np.arange(K), np.arange(K)] = np.inf
    return D.min(axis=(-2, -1))


def _expm_reference(A, x0, y0, ts):
    """`z(t) = expm(J t) z(0)` with `J = −∇²L_E` assembled in numpy from the alignment matrix.

    `L_E = ½ Σ_ic A_ic ‖x_i − y_c‖²` is quadratic; per coordinate its Hessian over
    `(x_1..x_N, y_1..y_K)` is `[[diag(A 1), −A], [−Aᵀ, diag(Aᵀ 1)]]` and the full one is that
    matrix Kronecker `I_d`, so `expm(J t)` acts on each of the `d` coordinate columns alike.
    Returns ``(x(t), y(t))`` at every ``ts`` (``scipy.linalg.expm`` per time).
    """
    from scipy.linalg import expm

    A = np.asarray(A, dtype=np.float64)
    N, K = A.shape
    H = np.zeros((N + K, N + K))
    H[:N, :N] = np.diag(A.sum(axis=1))
    H[N:, N:] = np.diag(A.sum(axis=0))
    H[:N, N:] = -A
    H[N:, :N] = -A.T
    v0 = np.concatenate([np.asarray(x0, np.float64), np.asarray(y0, np.float64)])
    v = np.stack([expm(-H * float(t)) @ v0 for t in np.asarray(ts)])
    return v[:, :N], v[:, N:]


#: Window of the fast-rate fit on an integrated path: the residual of `log MinL2` about the
#: slow line is used where `_FAST_LO < |residual| < _FAST_HI`. Above `1e-3` the curvature of
#: `log(1 + r)` biases the slope; below `1e-5` the integrator's relative error (up to 2e-6
#: here) would enter it.
_FAST_LO, _FAST_HI = 1e-5, 1e-3


def _fit_fast(t, v, lo: float = _FAST_LO, hi: float = _FAST_HI, uniform=None):
    """Fast rate of ``v(t)`` and the number of points fitted.

    The residual `r(t)` of `log v` about its slow line (the window of
    [`fit_slow_rate`][collapse_jax.metrics.fit_slow_rate]) decays as `c e^{(lambda- - lambda+) t}`;
    its log-slope over the points before the slow window with ``lo < |r| < hi``, plus the slow
    slope, is the fast rate. With ``uniform`` (equally spaced times, a subset of ``t``) the slope is
    that of `log|r(t_k+1) − r(t_k)|` on that grid instead: differences remove a constant offset of
    the slow line (an integrator's error in its intercept, which biases the plain fit by
    `offset/|r|`).
    """
    from .metrics import _slow_fit

    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    slope, intercept, t_start = _slow_fit(t, v)
    if not np.isfinite(slope):
        return float("nan"), 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if uniform is None:
            tt = t
            r = np.log(v) - (slope * t + intercept)
            g = r
        else:
            tt = np.asarray(uniform, dtype=np.float64)
            r = np.log(v[np.searchsorted(t, tt)]) - (slope * tt + intercept)
            g = np.append(np.diff(r), np.nan)
        w = np.isfinite(g) & (np.abs(r) > lo) & (np.abs(r) < hi) & (tt < t_start)
        if w.sum() < 3:
            return float("nan"), int(w.sum())
        return float(np.polyfit(tt[w], np.log(np.abs(g[w])), 1)[0] + slope), int(w.sum())


def _rates_vs_n(cfg: ReproduceConfig) -> dict:
    """Fast and slow rates of MinL2 against `n` at a fixed frustration ratio, integrated with
    diffrax (explicit ``Tsit5``, `rtol = 1e-12`), all `n` in one compiled ``vmap``: every
    member's alignment matrix is padded with zero rows (inactive samples, which neither move
    nor pull) to one shape."""
    import diffrax

    from . import embedding_loss, init_embedding_state, log_times, simulate, vector_field

    K, d, phi = cfg.classes, cfg.rates_vs_n_dim, cfg.rates_vs_n_frustration
    ns = [int(v) for v in cfg.rates_vs_n]
    Ms = [int(np.round(phi * K * n / (1.0 - phi))) for n in ns]
    rows_clean, rows_shared = K * max(ns), max(Ms)
    N = rows_clean + rows_shared
    As = np.zeros((len(ns), N, K))
    for i, (n, M) in enumerate(zip(ns, Ms, strict=True)):
        As[i, : K * n] = np.repeat(np.eye(K), n, axis=0)
        As[i, rows_clean : rows_clean + M] = 1.0
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), len(ns))
    z0 = jax.vmap(lambda k: init_embedding_state(k, N, K, d))(keys)
    ts = log_times(1e-3, cfg.rates_vs_n_t1, 120)
    field = vector_field(embedding_loss)

    @eqx.filter_jit
    def run(z0, A):
        def one(z, a):
            sol = simulate(field, z, a, ts=ts, solver=diffrax.Tsit5())
            return sol.ys.y, sol.result._value

        return jax.vmap(one)(z0, A)

    start = time.perf_counter()
    ys, codes = run(z0, jax.numpy.asarray(As))
    ml = _np_min_l2(np.asarray(ys))
    seconds = time.perf_counter() - start
    t = np.asarray(ts)
    from .metrics import fit_slow_rate

    lam = [_closed_lambda(n, M) for n, M in zip(ns, Ms, strict=True)]
    fits = [_fit_fast(t, ml[i]) for i in range(len(ns))]
    return {
        "classes": K,
        "per_class": ns,
        "shared": Ms,
        "frustration": phi,
        "dim": d,
        "t": t,
        "min_l2": ml,
        "slow_rate_fit": np.array([fit_slow_rate(t, m) for m in ml]),
        "fast_rate_fit": np.array([f for f, _ in fits]),
        "fast_rate_points": [k for _, k in fits],
        "lambda_plus": np.array([a for a, _ in lam]),
        "lambda_minus": np.array([b for _, b in lam]),
        "failed": int(np.sum(np.asarray(codes) != 0)),
        "seconds": seconds,
    }


def _values(a) -> str:
    return ", ".join(fmt_value(v) for v in np.asarray(a))


def _embedding(cfg: ReproduceConfig, out: Path, log, ctx) -> Section:
    from . import (
        embedding_loss,
        embedding_spectrum_report,
        init_embedding_state,
        log_times,
        simulate,
        standard_data,
        vector_field,
    )
    from .integrate import DEFAULT_ATOL, DEFAULT_RTOL, result_name
    from .metrics import fit_slow_rate
    from .plots import save_figure

    S = "embedding"
    K, n, M, d = cfg.classes, cfg.per_class, cfg.shared, cfg.dim
    data = standard_data(K, n, M)
    # M = 0 with the same rows (the shared ones inactive) and the same start: one compiled solve
    data0 = standard_data(K, n, 0, max_shared=M)
    key = jax.random.PRNGKey(cfg.seed)
    z = init_embedding_state(key, data.n_samples, K, d)
    z0 = z
    lp, lm = _closed_lambda(n, M)  # the references, written out
    # log-spaced save times plus an equally spaced grid over the fast phase (40 points in
    # [0.5, 25] / |lambda-|), on which the fast rate is fitted
    fast_grid = np.linspace(0.5 / abs(lm), 25.0 / abs(lm), 40)
    ts = jax.numpy.asarray(np.union1d(np.asarray(log_times(cfg.t_min, cfg.t1, cfg.points)),
                                      fast_grid))  # fmt: skip
    field = vector_field(embedding_loss)
    log("  diffrax Kvaerno5 (implicit), M > 0 and M = 0 ...")
    start = time.perf_counter()
    sol = simulate(field, z, data.matrix(), ts=ts)
    ml_num = _np_min_l2(sol.ys.y)
    sim_seconds = time.perf_counter() - start
    sol0 = simulate(field, z0, data0.matrix(), ts=ts)
    ml0_num = _np_min_l2(sol0.ys.y)
    t = np.asarray(ts)
    ml, acc = (np.asarray(a) for a in _exact_path(z, data, ts))
    ml0, acc0 = (np.asarray(a) for a in _exact_path(z0, data0, ts))
    resolved = ml > 1e-6 * ml[0]
    rel_err = np.abs(ml_num / ml - 1.0)
    max_rel = float(np.max(rel_err[resolved]))
    slow_num = fit_slow_rate(t, ml_num)
    fast_num, fast_points = _fit_fast(t, ml_num, uniform=fast_grid)
    slow0 = fit_slow_rate(t, ml0_num)
    log("  exact sector solution vs scipy.linalg.expm ...")
    ex = _exact_solution_np(z, data, ts)
    xr, yr = _expm_reference(data.matrix(), z.x, z.y, t)
    scale = float(max(np.max(np.abs(np.asarray(z.x))), np.max(np.abs(np.asarray(z.y)))))
    state_err = float(max(np.max(np.abs(ex[0] - xr)), np.max(np.abs(ex[1] - yr)))) / scale
    ml_expm = _np_min_l2(yr)
    expm_ok = ml_expm > 1e-6 * ml_expm[0]
    expm_rel = float(np.max(np.abs(ml[expm_ok] / ml_expm[expm_ok] - 1.0)))
    # accuracy on the exact path (it rises during the fast alignment, then stays 1 until
    # MinL2 reaches the round-off floor, where it stops being defined)
    full = np.flatnonzero(acc == 1.0)
    t_full = float(t[full[0]]) if full.size else float("nan")
    after = acc[full[0] :] if full.size else acc[:0]
    acc_min = float(np.nanmin(after)) if np.any(np.isfinite(after)) else float("nan")
    acc_defined = int(np.sum(np.isfinite(after)))
    log("  Jacobian spectra vs closed forms ...")
    data0s = standard_data(K, n, 0)
    rep = embedding_spectrum_report(field, z, data)
    rep0 = embedding_spectrum_report(
        field, init_embedding_state(key, data0s.n_samples, K, d), data0s
    )
    log(f"  rates against n = {list(cfg.rates_vs_n)} (diffrax Tsit5) ...")
    rn = _rates_vs_n(cfg)
    rn_slow = np.abs(rn["slow_rate_fit"] / rn["lambda_plus"] - 1.0)
    rn_fast = np.abs(rn["fast_rate_fit"] / rn["lambda_minus"] - 1.0)

    lam_basis = (
        "closed form lambda+- = ½[−(n+M+1) ± √((n+M+1)² − 4M)], written out in numpy; the fit "
        "is on the diffrax-integrated path (the full N-sample flow, no sector solution)"
    )
    c_slow_num = _num(
        S,
        "slow rate: fit of log MinL2 (diffrax Kvaerno5 path) vs lambda+",
        slow_num,
        lp,
        2e-5,  # measured 2.1e-6
        basis=lam_basis,
    )
    c_fast = _num(
        S,
        f"fast rate: fit of the early approach (diffrax Kvaerno5 path, differences of the "
        f"residual about the slow line where it is in ({_FAST_LO:g}, {_FAST_HI:g}), "
        f"{fast_points} points) vs lambda-",
        fast_num,
        lm,
        3e-3,  # measured 2.4e-4
        basis=lam_basis,
    )
    checks = [
        _num(
            S,
            "MinL2(t): diffrax Kvaerno5 vs exact sector solution, max relative error "
            "(where MinL2 > 1e-6 of its start)",
            max_rel,
            0.0,
            2e-5,  # measured 2.0e-6
            "abs",
            basis="the exact sector solution (closed-form propagators, no time stepping) "
            "against an adaptive implicit Runge-Kutta integration of the full flow",
        ),
        _num(
            S,
            "exact sector solution vs scipy.linalg.expm(J t) z(0): max abs state error "
            "(relative to max |z(0)|) over the save times",
            state_err,
            0.0,
            1e-11,  # measured 1.3e-13
            "abs",
            basis="J = −(Hessian of ½ Σ A_ic ‖x_i − y_c‖²) assembled in numpy from the alignment "
            "matrix (Kronecker I_d), exponentiated by scipy; shares no code with the sectors",
        ),
        _num(
            S,
            "exact_min_l2 vs MinL2 of the scipy.linalg.expm state, max relative error (where "
            "the expm MinL2 > 1e-6 of its start)",
            expm_rel,
            0.0,
            1e-9,  # measured 6.3e-11
            "abs",
            basis="MinL2 computed in numpy from the label positions of expm(J t) z(0), J "
            "assembled in numpy from A; below 1e-6 of its start the expm difference of O(1) "
            "positions is round-off",
        ),
        c_slow_num,
        c_fast,
        _num(
            S,
            "Jacobian spectrum vs closed forms (all sectors), M > 0",
            rep["max_abs_error"],
            0.0,
            1e-10,
            "abs",
            basis="autodiff Jacobian of the vector field, eigenvalues by numpy in each "
            "symmetry sector, against the sector closed forms",
        ),
        _num(
            S,
            "Jacobian spectrum vs closed forms (all sectors), M = 0",
            rep0["max_abs_error"],
            0.0,
            1e-10,
            "abs",
            basis="autodiff Jacobian of the vector field, eigenvalues by numpy in each "
            "symmetry sector, against the sector closed forms",
        ),
        _num(
            S,
            "sector invariance (leakage |JQ - Q Q^T J Q|), max over M = 0 and M > 0",
            max(rep["sector_leakage"], rep0["sector_leakage"]),
            0.0,
            1e-10,
            "abs",
            basis="autodiff Jacobian against the sector bases built from the permutation "
            "symmetry of the data",
        ),
        _num(
            S,
            "M = 0: slow rate of MinL2, diffrax path (lambda+ = 0, absolute)",
            slow0,
            0.0,
            1e-9,
            "abs",
            basis="lambda+ = 0 at M = 0 (closed form); the fit is on the diffrax-integrated path",
        ),
        _num(
            S,
            "M = 0: MinL2 at t1 / MinL2 at t_min, diffrax path (no collapse: at least 0.1)",
            ml0_num[-1] / ml0_num[0],
            0.1,
            0.0,
            "bound_below",
            basis="claim: without shared samples the classes stay apart; MinL2 from the "
            "diffrax-integrated label positions",
        ),
        _num(
            S,
            "clean-sample accuracy (exact path), once it reaches 1, stays 1 while defined: "
            "minimum after that time",
            acc_min,
            1.0,
            0.0,
            "abs",
            basis="claim: fluctuations decay faster than the bias, so nearest-label accuracy "
            "of clean samples stays 1; computed on the exact path's states",
        ),
        _num(
            S,
            f"rates vs n (φ = {rn['frustration']:g}, n = {rn['per_class']}, diffrax Tsit5): "
            "slow-rate fit vs lambda+, max relative error",
            float(np.max(rn_slow)),
            0.0,
            2e-8,  # measured 2.0e-9
            "abs",
            basis=lam_basis,
        ),
        _num(
            S,
            f"rates vs n (same runs): fast-rate fit vs lambda-, WORST relative error over "
            f"the {len(rn['per_class'])} n",
            float(np.max(rn_fast)),
            0.0,
            2e-3,  # measured 2.0e-4 worst (n = 5); the residual window has 4-7 points
            "abs",
            basis=lam_basis,
        ),
        _num(
            S,
            "rates vs n: failed members (diffrax result codes)",
            rn["failed"],
            0,
            0.0,
            "abs",
            basis="diffrax result code of every integration (0 = successful)",
        ),
    ]
    numbers = {
        "classes": K,
        "per_class": n,
        "shared": M,
        "dim": d,
        "seed": cfg.seed,
        "t": t,
        "min_l2_exact": ml,
        "min_l2_exact_m0": ml0,
        "min_l2_diffrax": ml_num,
        "min_l2_diffrax_m0": ml0_num,
        "min_l2_expm": ml_expm,
        "accuracy_exact": acc,
        "accuracy_exact_m0": acc0,
        "accuracy_one_from": t_full,
        "solver": "kvaerno5",
        "rtol": DEFAULT_RTOL,
        "atol": DEFAULT_ATOL,
        "steps": int(sol.stats["num_steps"]),
        "result": result_name(sol.result),
        "simulate_seconds": sim_seconds,
        "lambda_plus": lp,
        "lambda_minus": lm,
        "slow_rate_fit_diffrax": slow_num,
        "fast_rate_fit_diffrax": fast_num,
        "fast_rate_fit_points": fast_points,
        "slow_rate_fit_m0": slow0,
        "max_rel_error_vs_exact": max_rel,
        "exact_vs_expm_state_error": state_err,
        "exact_vs_expm_min_l2_rel_error": expm_rel,
        "spectrum_max_abs_error": rep["max_abs_error"],
        "spectrum_max_abs_error_m0": rep0["max_abs_error"],
        "sector_leakage": max(rep["sector_leakage"], rep0["sector_leakage"]),
        "spectrum_symmetric": rep["symmetric"] and rep0["symmetric"],
        "final_over_initial_m0": float(ml0_num[-1] / ml0_num[0]),
        "accuracy_min": acc_min,
        "accuracy_points_defined": acc_defined,
        "rates_vs_n": rn,
    }
    fig1 = save_figure(_fig_timescales(numbers), out / "embedding_timescales.png")
    fig2 = save_figure(_fig_spectra(rep, rep0, M), out / "embedding_spectra.png")
    fig3 = save_figure(_fig_rates_vs_n(rn), out / "embedding_rates_vs_n.png")
    body = [
        f"Standard data set `K={K}, n={n}, M={M}, d={d}`, start from seed {cfg.seed} "
        "(`x ~ N(0,1)`, `y ~ 2N(0,1)`); the `M = 0` run has the same rows (the shared ones "
        "inactive) and the same start. "
        f"The flow was integrated with diffrax Kvaerno5 (`rtol={DEFAULT_RTOL:g}, "
        f"atol={DEFAULT_ATOL:g}`, {numbers['steps']} steps, {numbers['result']}); the exact "
        "sector solution (`exact_solution`, `exact_min_l2`, no round-off floor) was checked "
        "against `scipy.linalg.expm(J t) z(0)`, with `J` minus the Hessian of the loss "
        f"assembled in numpy from the alignment matrix: states agree to {fmt_error(state_err)} "
        f"(relative to the largest start coordinate), MinL2 to {fmt_error(expm_rel)} relative.",
        f"- **Two time scales.** On the diffrax path the classes first align at the fast "
        f"rate {fmt_value(fast_num)} against `lambda- = {fmt_value(lm)}` (relative error "
        f"{fmt_error(c_fast.error)}), then collapse at the slow rate {fmt_value(slow_num)} "
        f"against `lambda+ = {fmt_value(lp)}` ({fmt_error(c_slow_num.error)}), both "
        "`lambda_pm` written out from `½[−(n+M+1) ± √((n+M+1)² − 4M)]`.",
        f"- **Integrator vs closed form.** The diffrax MinL2(t) matches the exact path to "
        f"{fmt_error(max_rel)} relative wherever MinL2 is above 1e-6 of its start.",
        f"- **Sector spectra.** The autodiff Jacobian restricted to sectors I-III matches the "
        f"closed forms to {fmt_error(rep['max_abs_error'])} (`M = {M}`) and "
        f"{fmt_error(rep0['max_abs_error'])} (`M = 0`); the Jacobian is symmetric "
        f"({numbers['spectrum_symmetric']}), as for any gradient flow.",
        f"- **M = 0 vs M > 0.** Without shared samples `lambda+ = 0`: the integrated MinL2 "
        f"keeps {fmt_value(ml0_num[-1] / ml0_num[0])} of its value at `t = {t[0]:g}` (fitted "
        f"slope {fmt_error(slow0)}), while with `M = {M}` it falls to {fmt_error(ml[-1])} by "
        f"`t = {t[-1]:g}` (exact path). Nearest-label accuracy of clean samples rises during "
        f"the fast alignment, reaches 1 at `t = {t_full:.3g}` and stays {fmt_value(acc_min)} at "
        f"all {acc_defined} later save times where it is defined (MinL2 above round-off): in "
        "the minimal model fluctuations decay faster than the bias, so collapse does not cost "
        "accuracy.",
        f"- **Rates against n.** At a fixed frustration ratio `φ = {rn['frustration']:g}` "
        f"(`M = round(φKn/(1−φ))` = {rn['shared']} for `n` = {rn['per_class']}, `d = "
        f"{rn['dim']}`, diffrax Tsit5, all `n` in one compiled call, {rn['seconds']:.1f} s) "
        f"the fitted fast rate grows with `n` ({_values(rn['fast_rate_fit'])}; "
        f"worst relative error against `lambda-` {fmt_error(np.max(rn_fast))}) while the slow "
        f"rate stays near `−M/(n+M+1)`, about constant because `M` grows with `n` "
        f"({_values(rn['slow_rate_fit'])}; worst relative error against "
        f"`lambda+` {fmt_error(np.max(rn_slow))}): alignment speeds up with the class size, "
        "collapse is set by the frustration.",
        _img(fig1, "fast and slow time scales of the embedding model"),
        "(a) MinL2(t) against log time: the exact solution for `M > 0` and `M = 0` and the "
        "diffrax points; vertical lines mark the fast and slow times `1/|lambda-|` and "
        "`1/|lambda+|`: a fast drop (alignment) and, only with frustration, a slow collapse. "
        "(b) log MinL2 against linear time on the diffrax path (points), the straight line "
        "fitted to those points (dashed) and a line of the closed-form slope `lambda+` (dotted). "
        "(c) Nearest-label accuracy of the clean samples: it rises during the alignment and "
        "stays 1. (d) Relative error of the integrator against the exact path, and of the "
        "exact path against `scipy.linalg.expm`.",
        _img(fig2, "Jacobian eigenvalues per sector against the closed forms"),
        "Each marker is an eigenvalue of the autodiff Jacobian restricted to one sector; bars "
        "are the closed forms, labelled `×m` with `m` the number of eigenvalues drawn at that "
        "value (the multiplicity in the whole `d`-dimensional spectrum). Right: the error of "
        "every eigenvalue.",
        _img(fig3, "fast and slow rates against the class size at fixed frustration"),
        "Markers: rates fitted to the diffrax-integrated MinL2(t); lines: `lambda-` and "
        "`lambda+` from the closed form, evaluated at every `n` between (with the same "
        "rounding of `M`). Left: `|fast rate|` grows about linearly with `n`; right: `|slow "
        "rate|` stays at the frustration-set value.",
    ]
    return Section(S, body, [fig1, fig2, fig3], checks, numbers)


@eqx.filter_jit
def _exact_solution_jit(z, data, ts):
    from .exact import exact_solution

    return exact_solution(z, data, ts)


def _exact_solution_np(z, data, ts):
    s = _exact_solution_jit(z, data, ts)
    return np.asarray(s.x), np.asarray(s.y)


def _fig_timescales(nb: dict):
    """Figure: MinL2(t) of the embedding model (exact, diffrax, expm), fits and errors."""
    from .plots import new_figure

    t = np.asarray(nb["t"])
    ml, ml0, num = (
        np.asarray(nb[k]) for k in ("min_l2_exact", "min_l2_exact_m0", "min_l2_diffrax")
    )
    lp, lm, M = nb["lambda_plus"], nb["lambda_minus"], nb["shared"]
    resolved = ml > 1e-6 * ml[0]
    fig, axes = new_figure(2, 2, figsize=(13, 9))
    ax = axes[0, 0]
    ax.semilogx(t, ml, "-", color="C0", lw=2, label=f"exact, M={M}")
    ax.semilogx(
        t[resolved][::2],
        num[resolved][::2],
        "o",
        ms=4,
        mfc="none",
        color="C0",
        label="diffrax Kvaerno5",
    )
    ax.semilogx(t, ml0, "-", color="C1", lw=2, label="exact, M=0 (no frustration)")
    top = 1.1 * max(ml.max(), ml0.max())
    for rate, ls, name in (
        (lm, ":", r"$1/|\lambda_-|$ (fast)"),
        (lp, "--", r"$1/|\lambda_+|$ (slow)"),
    ):
        ax.axvline(1 / abs(rate), color="0.3", ls=ls, lw=1)
        ax.text(1.08 / abs(rate), 0.93 * top, name, fontsize=9)
    ax.set_ylim(0, top)
    ax.set_ylabel("MinL2 = min over c≠c′ of ‖y_c − y_c′‖ (embedding units)")
    ax.set_title("(a) two steps: fast alignment, then slow collapse")
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[0, 1]
    # the integrated curve, the line fitted to it, and a line of the closed-form slope
    valid = np.isfinite(num) & (num > 1e-8 * np.nanmax(num))
    ax.semilogy(t[valid], num[valid], "o", ms=3, color="C0", label=f"diffrax Kvaerno5, M={M}")
    ax.semilogy(t, nb["min_l2_diffrax_m0"], "s", ms=2, color="C1", label="diffrax, M=0")
    slope = nb["slow_rate_fit_diffrax"]
    t_last = t[valid].max()
    win = valid & (t >= t_last / 10)
    c_fit = np.polyfit(t[win], np.log(num[win]), 1)[1]
    fit_label = f"fit to the diffrax points (t ≥ {t_last / 10:.3g}): slope {slope:.6f}"
    ax.semilogy(t[win], np.exp(c_fit + slope * t[win]), "--", color="k", lw=1.5, label=fit_label)
    anchor = np.flatnonzero(win)[0]
    ax.semilogy(t, num[anchor] * np.exp(lp * (t - t[anchor])), ":", color="C3", lw=1.5,
                label=rf"closed-form slope $\lambda_+$ = {lp:.6f}")  # fmt: skip
    ax.set_ylim(num[valid].min() / 10, 10 * max(ml.max(), ml0.max()))
    ax.set_ylabel("MinL2 (embedding units, log scale)")
    ax.set_title(r"(b) slow collapse: a straight line of slope $\lambda_+$")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.semilogx(t, nb["accuracy_exact"], "-", color="C0", lw=2, label=f"M={M}")
    ax.semilogx(t, nb["accuracy_exact_m0"], "--", color="C1", lw=2, label="M=0")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("nearest-label accuracy, clean samples (fraction)")
    ax.set_title("(c) accuracy (exact path; gaps: MinL2 at round-off)")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1, 1]
    err = np.abs(num / ml - 1.0)
    ax.loglog(
        t[resolved],
        np.maximum(err[resolved], 1e-17),
        ".-",
        color="C2",
        label="|diffrax / exact − 1|",
    )
    ml_e = np.asarray(nb["min_l2_expm"])
    ok = ml_e > 1e-6 * ml_e[0]
    ax.loglog(t[ok], np.maximum(np.abs(ml[ok] / ml_e[ok] - 1.0), 1e-17), "x", ms=4,
              color="C4", label="|exact / scipy expm − 1|")  # fmt: skip
    ax.set_ylabel("relative error of MinL2 (dimensionless; 1e-17 = exact)")
    ax.set_title(f"(d) integrator error, rtol={nb['rtol']:g}, atol={nb['atol']:g}")
    ax.legend(fontsize=8)
    for ax in axes.ravel():
        ax.set_xlabel(_TIME_LABEL)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"Embedding model, K={nb['classes']}, n={nb['per_class']}, M={M}, d={nb['dim']}, "
        f"seed {nb['seed']}"
    )
    fig.tight_layout()
    return fig


def _fig_spectra(rep: dict, rep0: dict, M: int):
    """Figure: Jacobian eigenvalues per sector against the closed forms."""
    from .plots import new_figure

    fig, axes = new_figure(1, 3, figsize=(16, 5))
    colors = {"I": "C0", "II": "C3", "III": "C2", "inactive": "0.5"}
    for ax, r, title in ((axes[0], rep, f"(a) M = {M}"), (axes[1], rep0, "(b) M = 0")):
        names = list(r["sectors"])
        lowest = 0.0
        for k0, name in enumerate(names):
            k = 1.5 * k0
            num = np.asarray(r["sectors"][name]["numeric"])
            pred = np.asarray(r["sectors"][name]["predicted"])
            vals, mult = np.unique(np.round(pred, 9) + 0.0, return_counts=True)
            lowest = min(lowest, float(vals.min()))
            for v, m in zip(vals, mult, strict=True):
                ax.hlines(v, k - 0.3, k + 0.3, color=colors.get(name, "k"), lw=2)
                ax.text(k + 0.33, v, f"{v:.4g} (×{m})", va="center", fontsize=7)
            jitter = np.linspace(-0.2, 0.2, num.size) if num.size > 1 else np.zeros(1)
            label = "autodiff Jacobian eigenvalues" if k0 == 0 else None
            ax.plot(k + jitter, num, "x", color="k", ms=4, label=label)
        ax.plot([], [], "-", color="0.3", lw=2, label="closed form, ×m = its multiplicity")
        ax.set_xticks(1.5 * np.arange(len(names)), [f"sector {s}" for s in names])
        ax.set_xlim(-0.5, 1.5 * len(names) - 0.2)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_ylim(2.5 * lowest, 1.0)
        ax.set_ylabel("Jacobian eigenvalue (1/time, symlog scale)")
        ax.set_title(f"{title}: max error {r['max_abs_error']:.1e}")
        ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for r, label, color in ((rep, f"M = {M}", "C0"), (rep0, "M = 0", "C1")):
        err = np.abs(np.asarray(r["numeric"]) - np.asarray(r["predicted"]))
        ax.semilogy(np.arange(err.size), np.maximum(err, 1e-17), ".", color=color, label=label)
    ax.set_xlabel("eigenvalue index (ascending)")
    ax.set_ylabel("|numeric − closed form| (1/time; 1e-17 = exact)")
    ax.set_title("(c) error of every eigenvalue (whole spectrum)")
    ax.legend(fontsize=8)
    fig.suptitle(
        "Jacobian spectrum of the embedding model by symmetry sector (×m: multiplicity in the "
        "full spectrum, the d coordinates included)"
    )
    fig.tight_layout()
    return fig


def _fig_rates_vs_n(rn: dict):
    """Figure: fitted fast and slow rates (markers) against `n`, closed forms (lines)."""
    from .plots import new_figure

    fig, axes = new_figure(1, 2, figsize=(12, 4.4))
    ns = np.asarray(rn["per_class"], dtype=np.float64)
    phi, K = rn["frustration"], rn["classes"]
    grid = np.arange(int(ns.min()), int(ns.max()) + 1)
    Ms = np.round(phi * K * grid / (1.0 - phi))
    lam = np.array([_closed_lambda(n, M) for n, M in zip(grid, Ms, strict=True)])
    for ax, key, col, name in (
        (axes[0], "fast_rate_fit", 1, r"$-\lambda_-$"),
        (axes[1], "slow_rate_fit", 0, r"$-\lambda_+$"),
    ):
        ax.plot(grid, -lam[:, col], "-", color="k", lw=1.2, label=f"{name} (closed form)")
        ax.plot(ns, -np.asarray(rn[key]), "o", ms=8, mfc="none", color="C3",
                label="fit to the diffrax-integrated MinL2(t)")  # fmt: skip
        ax.set_xlabel("clean samples per class n")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("fast (alignment) rate −λ₋ (1/time)")
    axes[0].set_title("(a) the fast rate grows with n")
    axes[1].set_ylabel("slow (collapse) rate −λ₊ (1/time)")
    axes[1].set_ylim(0, 1.3 * float(np.max(-lam[:, 0])))
    axes[1].set_title("(b) the slow rate is set by the frustration")
    fig.suptitle(
        f"Rates against n at fixed frustration φ = {phi:g} (M = round(φKn/(1−φ)), K = {K}, "
        f"d = {rn['dim']})"
    )
    fig.tight_layout()
    return fig


# --- 2. projection model ----------------------------------------------------------------------


def _np_projection_field(x, y, W, A, stop_gradient: bool):
    """The projection-model fields written out in numpy (no autodiff), as references.

    With `e_i = sum_c A_ic (W x_i - y_c)`: `dx_i = -W^T e_i`, `dW = -sum_i e_i x_i^T`,
    `dy_c = -sum_i A_ic (y_c - x_i)`; the conservative field adds `-sum_c A_ic (x_i - y_c)`
    to `dx_i` and `sum_i A_ic (W x_i - y_c)` to `dy_c` (the terms stop-gradient holds).
    """
    x, y, W, A = (np.asarray(a, dtype=np.float64) for a in (x, y, W, A))
    a, b = A.sum(axis=1), A.sum(axis=0)
    e = (x @ W.T) * a[:, None] - A @ y
    dx, dW = -e @ W, -(e.T @ x)
    dy = -(b[:, None] * y - A.T @ x)
    if not stop_gradient:
        dx = dx - (a[:, None] * x - A @ y)
        dy = dy + A.T @ (x @ W.T) - b[:, None] * y
    return dx, dy, dW


def _np_label_separation(y) -> float:
    """MinL2 of one label matrix `y` (`K x d`), numpy: the smallest pairwise distance."""
    y = np.asarray(y, dtype=np.float64)
    dist = np.linalg.norm(y[:, None, :] - y[None, :, :], axis=-1)
    return float(np.min(dist[~np.eye(len(y), dtype=bool)]))


def _np_omega(W, n: float, M: float) -> np.ndarray:
    """`Omega(W)` in its projector form `n/(2(n+M)) [I I] Q Q^T [I; I]`, `Q` an orthonormal
    basis (QR) of the columns of `G = [I; W]`: no inverse of `I + W^T W` is formed."""
    W = np.asarray(W, dtype=np.float64)
    eye = np.eye(W.shape[0])
    Q, _ = np.linalg.qr(np.vstack([eye, W]))
    P = np.hstack([eye, eye]) @ Q
    return n / (2.0 * (n + M)) * (P @ P.T)


def _collapsed_tangent(u, W, N: int, K: int) -> np.ndarray:
    """Tangent vectors of the collapsed fixed-point set at `(x_i = y_c = u, W)` with `W u = u`.

    Parametrisation (by hand): `x_i = u`, `y_c = u`, `W = P_u + Z (I - P_u)` with
    `P_u = u u^T / |u|^2` and `Z` free; every such state has `L_P = 0`, hence is a fixed point
    of both fields. Columns: derivatives in `u` (`d`) and in `Z` (`d^2`, of which `d` vanish),
    flattened in the state order `(x, y, W)`; their rank is the set's dimension.
    """
    u, W = np.asarray(u, dtype=np.float64), np.asarray(W, dtype=np.float64)
    d = u.size
    uu = float(u @ u)
    P = np.outer(u, u) / uu
    eye = np.eye(d)
    cols = []
    for k in range(d):
        dP = (np.outer(eye[k], u) + np.outer(u, eye[k])) / uu - 2.0 * u[k] * np.outer(u, u) / uu**2
        dW = dP - W @ dP  # d/du of P + Z (I - P) at Z with Z (I - P) = W (I - P)
        cols.append(np.concatenate([np.tile(eye[k], N), np.tile(eye[k], K), dW.ravel()]))
    for a in range(d):
        for b in range(d):
            E = np.zeros((d, d))
            E[a, b] = 1.0
            cols.append(np.concatenate([np.zeros(N * d + K * d), (E @ (eye - P)).ravel()]))
    return np.stack(cols, axis=1)


def _scipy_projection_path(z, A, ts, stop_gradient: bool, rtol: float = 1e-12):
    """Every sample integrated by scipy's LSODA (Adams / BDF, switching on stiffness) on
    `_np_projection_field`; the state flattened as `(x, y, W)` at ``ts`` (rows), the
    number of field evaluations, the status. (DOP853 agreed as well, but the stiff `W`
    block at the fixed point cost it 5x the evaluations: 8 s against 1 s at K=3, n=10.)"""
    from scipy.integrate import solve_ivp

    x0, y0, W0 = (np.asarray(a, dtype=np.float64) for a in (z.x, z.y, z.W))
    N, K, d = x0.shape[0], y0.shape[0], W0.shape[0]
    A = np.asarray(A, dtype=np.float64)

    def rhs(_t, v):
        x, y = v[: N * d].reshape(N, d), v[N * d : (N + K) * d].reshape(K, d)
        W = v[(N + K) * d :].reshape(d, d)
        return np.concatenate([f.ravel() for f in _np_projection_field(x, y, W, A, stop_gradient)])

    v0 = np.concatenate([x0.ravel(), y0.ravel(), W0.ravel()])
    ts = np.asarray(ts, dtype=np.float64)
    sol = solve_ivp(rhs, (0.0, ts[-1]), v0, method="LSODA", t_eval=ts, rtol=rtol, atol=rtol)
    return sol.y.T, int(sol.nfev), int(sol.status)


@eqx.filter_jit
def _projection_run(data, z, ts, stop_gradient: bool):
    """``simulate_projection`` (reduced path) and the metrics of every saved state, compiled
    as one function."""
    from .metrics import projection_metrics, roundoff_floor
    from .projection import simulate_projection

    run = simulate_projection(data, z, stop_gradient=stop_gradient, ts=ts)
    met = jax.vmap(lambda s: projection_metrics(s, data))(run.states)
    met["roundoff_floor"] = jax.vmap(roundoff_floor)(run.states.y)
    return run._replace(solution=None), met


def _projection(cfg: ReproduceConfig, out: Path, log, ctx) -> Section:
    from . import (
        init_projection_state,
        log_times,
        standard_data,
    )
    from .integrate import result_name
    from .plots import save_figure
    from .spectral import omega_max_eigenvalue
    from .steady import classify_starts, projection_fixed_point

    S = "projection"
    K, n, M, d = cfg.classes, cfg.per_class, cfg.shared, cfg.dim
    bound = n / (n + M)
    # M = 0 keeps the M shared rows, inactive (weight 0: no force on or from them), so both
    # runs start from the same state and share every compiled function
    data, data0 = standard_data(K, n, M), standard_data(K, n, 0, max_shared=M)
    A = np.asarray(data.matrix())
    N = data.n_samples
    key = jax.random.PRNGKey(cfg.projection_seed)
    z = init_projection_state(key, N, K, d)
    z0 = z
    ts = log_times(cfg.t_min, cfg.projection_t1, cfg.points)
    t = np.asarray(ts)
    traj, scipy_ref = {}, {}
    for sg in (False, True):
        name = "stop_gradient" if sg else "conservative"
        log(f"  trajectory on the reduced path, stop_gradient={sg} ...")
        start = time.perf_counter()
        run, met = _projection_run(data, z, ts, sg)
        W = np.asarray(run.states.W)
        traj[sg] = {
            "min_l2": np.asarray(met["min_l2"]),
            "accuracy": np.asarray(met["accuracy"]),
            "w_eigenvalues_abs": np.sort(np.abs(np.linalg.eigvals(W)), axis=-1),
            "omega_max": np.array([omega_max_eigenvalue(w, n, M) for w in W]),
            "steps": int(run.steps),
            "result": result_name(run.result),
            "seconds": time.perf_counter() - start,
            "final_x": np.asarray(run.states.x[-1]),
            "roundoff_floor": float(met["roundoff_floor"][-1]),
        }
        if cfg.projection_reference_t1 > 0:
            # every sample, integrated by scipy on the numpy field: the reduced path's
            # lifted states (x of every sample, y, W) are compared with it at the save times
            log(f"  scipy LSODA integration of every sample, stop_gradient={sg} ...")
            start = time.perf_counter()
            sel = t <= cfg.projection_reference_t1
            ref, nfev, status = _scipy_projection_path(z, A, t[sel], sg)
            red = np.concatenate(
                [np.asarray(a)[sel].reshape(int(sel.sum()), -1) for a in run.states], axis=1
            )
            err = np.max(np.abs(red - ref), axis=1) / np.max(np.abs(ref), axis=1)
            scipy_ref[name] = {
                "max_rel_error": float(err.max()) if status == 0 else float("inf"),
                "t_worst": float(t[sel][int(np.argmax(err))]),
                "t_end": float(t[sel][-1]),
                "save_times": int(sel.sum()),
                "field_evaluations": nfev,
                "status": status,
                "seconds": time.perf_counter() - start,
            }
    fps, states, jacs = {}, {}, {}
    for label, dd, zz, sg in (
        ("conservative", data, z, False),
        ("stop_gradient", data, z, True),
        ("conservative_m0", data0, z0, False),
    ):
        log(f"  fixed point: {label} (integrate, polish, classify) ...")
        start = time.perf_counter()
        fp = projection_fixed_point(dd, zz, stop_gradient=sg)
        st = fp.pop("steady")
        states[label] = tuple(np.asarray(a, dtype=np.float64) for a in st.state)
        jacs[label] = np.asarray(st.jacobian)
        fp["jacobian_real"], fp["jacobian_imag"] = st.eigenvalues.real, st.eigenvalues.imag
        fp["seconds"] = time.perf_counter() - start
        fps[label] = fp
    counts = None
    if cfg.projection_seeds > 1:
        log(f"  P2: classifying {cfg.projection_seeds} starts ...")
        seeds = range(cfg.projection_seed, cfg.projection_seed + cfg.projection_seeds)
        counts = classify_starts(data, d, seeds, stop_gradient=True)
        counts = {
            "counts": counts["counts"],
            "seeds": list(seeds),
            "branches": [r["branch"] for r in counts["runs"]],
        }

    cons, sgfp, cons0 = fps["conservative"], fps["stop_gradient"], fps["conservative_m0"]
    # --- P1, M > 0: what the fixed-point equations force at the collapsed point. x_i = B y_c
    # with all y_c = u gives x_i = B u, and the y-equation averaged over classes gives
    # (I+W)B u = 2u, i.e. W u = u (the top of spec [I I] P_G [I; I] = [0, 2] is reached only
    # on [v; v] = G v). Then B u = u, L_P = 0, and Omega u = n/(n+M) u: the bound IS attained,
    # on the common label u, while no bias direction can reach eigenvalue 1.
    xc, yc, Wc = states["conservative"]
    ubar = yc.mean(axis=0)
    ev_c, V_c = np.linalg.eigh(_np_omega(Wc, n, M))
    uhat = ubar / np.linalg.norm(ubar)
    top_sine = float(np.linalg.norm(V_c[:, -1] - (V_c[:, -1] @ uhat) * uhat))  # no 1 - cos^2
    fix_res = float(np.linalg.norm(Wc @ ubar - ubar) / np.linalg.norm(ubar))
    # --- P1, M = 0: eigenvalue 1 of Omega is reached on the label bias directions
    x0f, y0f, W0f = states["conservative_m0"]
    ev_0, V_0 = np.linalg.eigh(_np_omega(W0f, n, 0.0))
    E1 = V_0[:, ev_0 >= 1.0 - 1e-8]
    Ub, sb, _ = np.linalg.svd((y0f - y0f.mean(axis=0)).T, full_matrices=False)
    bias_rank = int(np.sum(sb > 1e-8 * sb[0]))
    Ub = Ub[:, :bias_rank]
    bias_sine = float(np.linalg.norm(Ub - E1 @ (E1.T @ Ub), 2)) if E1.size else 1.0
    # --- uniqueness (P1): the collapsed fixed points form a set of dimension d^2, counted by
    # hand: u in R^d, and W with W u = u (d^2 - d free entries); the zero modes of the
    # conservative Jacobian there must be its tangent space
    hand_dim = d + (d * d - d)
    T = _collapsed_tangent(ubar, Wc, N, K)
    Ut, st_, _ = np.linalg.svd(T, full_matrices=False)
    tangent_rank = int(np.sum(st_ > 1e-10 * st_[0]))
    Ut = Ut[:, :tangent_rank]
    Jc = jacs["conservative"]
    evJ, VJ = np.linalg.eigh(0.5 * (Jc + Jc.T))
    null = VJ[:, np.abs(evJ) <= 1e-7]
    if null.shape[1] == tangent_rank == hand_dim:
        tangent_sine = float(np.linalg.norm(Ut - null @ (null.T @ Ut), 2))
    else:
        tangent_sine = float("inf")
    rng = np.random.default_rng(cfg.projection_seed)
    manifold = []
    for _ in range(4):  # other points of the set: fixed points with MinL2 = 0
        u, Zm = rng.normal(size=d), rng.normal(size=(d, d))
        Pu = np.outer(u, u) / (u @ u)
        Wm = Pu + Zm @ (np.eye(d) - Pu)
        xm, ym = np.tile(u, (N, 1)), np.tile(u, (K, 1))
        res = max(
            float(np.sqrt(sum(np.sum(f**2) for f in _np_projection_field(xm, ym, Wm, A, sg))))
            for sg in (False, True)
        )
        manifold.append(max(res / (1.0 + np.linalg.norm(Wm)), _np_label_separation(ym)))
    manifold_err = float(max(manifold))
    # --- P2: separation kept (labels measured directly) and the point is a zero of the
    # stop-gradient field written out in numpy; W on the label span from the y's directly
    xs, ys, Ws = states["stop_gradient"]
    sep_ratio = _np_label_separation(ys) / _np_label_separation(np.asarray(z.y))
    sg_res = float(np.sqrt(sum(np.sum(f**2) for f in _np_projection_field(xs, ys, Ws, A, True))))
    Y = ys.T  # d x K; W Y = Y R on an invariant span: R = pinv(Y) W Y (K x K)
    span_ev = np.linalg.eigvals(np.linalg.pinv(Y) @ Ws @ Y)
    span_ev = span_ev[np.argsort(span_ev.real)]
    span_pred = np.sort([1.0] + [bound] * (K - 1))
    span_num = span_ev.real
    span_err = float(max(np.max(np.abs(span_num - span_pred)), np.max(np.abs(span_ev.imag))))
    omega_traj = max(float(traj[False]["omega_max"].max()), float(traj[True]["omega_max"].max()))
    scipy_err = max((r["max_rel_error"] for r in scipy_ref.values()), default=float("nan"))
    sep0_start = _np_label_separation(np.asarray(z.y))
    checks = [
        _outcome(
            S,
            "P1: conservative fixed point (M > 0) is collapsed",
            cons["branch"],
            "collapsed",
            basis="the finder's classification (residual before and after a Newton polish, "
            "Jacobian spectrum, MinL2 <= 1e-8); the MinL2 below is recomputed from y",
        ),
        _num(
            S,
            "P1: MinL2 at the conservative fixed point (M > 0)",
            _np_label_separation(yc),
            0.0,
            1e-8,
            "abs",
            basis="P1 predicts 0; the smallest pairwise label distance is computed in numpy "
            "from the fixed point's y",
        ),
        _num(
            S,
            "P1: max eig Omega(W(t)) along both trajectories vs bound n/(n+M)",
            omega_traj,
            bound,
            1e-12,
            "bound",
            basis="the bound holds for every W ([I I] P_G [I; I] with P_G a projector); "
            "Omega is evaluated on the integrated W(t) of both runs, so this tests the theorem "
            "on the states the flow visits",
        ),
        _num(
            S,
            "P1: at the collapsed fixed point the bound is attained: max eig Omega(W)",
            float(ev_c[-1]),
            bound,
            1e-12,
            "abs",
            basis="fixed-point equations by hand: all x_i = y_c = u with W u = u, so "
            "Omega u = n/(n+M) u; Omega from W in its projector form (QR of [I; W]), numpy",
        ),
        _num(
            S,
            "P1: top eigenvector of Omega at the collapsed fixed point vs the common label u "
            "(sine of the angle)",
            top_sine,
            0.0,
            1e-12,  # measured 2.1e-15, round-off at a polished fixed point
            "abs",
            basis="hand derivation: the bound is reached on v with W v = v, here v = u = mean "
            "of the y_c; eigenvector from numpy eigh of the projector-form Omega",
        ),
        _num(
            S,
            "P1: W u = u at the collapsed fixed point, |W u - u| / |u|",
            fix_res,
            0.0,
            1e-12,  # measured 3.0e-16, round-off at a polished fixed point
            "abs",
            basis="the y-equation averaged over classes forces W u = u (or u = 0); W and "
            f"u = mean y_c read from the fixed point (|u| = {np.linalg.norm(ubar):.3g})",
        ),
        _num(
            S,
            "P1 uniqueness: zero modes of the conservative Jacobian at the collapsed fixed point "
            "vs the dimension of the collapsed set (d + d^2 - d = d^2)",
            cons["zero_modes"],
            hand_dim,
            0.0,
            "abs",
            basis="hand count: the collapsed fixed points are x_i = y_c = u, W u = u "
            "(u: d numbers; W: d^2 - d free); zero modes: host eigenvalues of the autodiff "
            "Jacobian with |lambda| <= 1e-7",
        ),
        _num(
            S,
            "P1 uniqueness: the zero modes span the tangent space of the collapsed set "
            "(largest principal-angle sine)",
            tangent_sine,
            0.0,
            1e-12,  # measured 2.3e-14, round-off at a polished fixed point
            "abs",
            basis="tangent vectors differentiated by hand from the parametrisation x_i = y_c "
            "= u, W = P_u + Z (I - P_u); null space from numpy eigh of the Jacobian",
        ),
        _num(
            S,
            "P1 uniqueness: 4 random points of the collapsed set: numpy field residual and "
            "MinL2, max",
            manifold_err,
            0.0,
            1e-12,
            "abs",
            basis="states built by hand from random (u, Z), not found by the library; both "
            "fields written out in numpy: every point is a fixed point with MinL2 = 0",
        ),
        _num(
            S,
            "P1 (M = 0): conservative fixed point keeps MinL2 >= 1e-3 (no collapse)",
            _np_label_separation(y0f),
            1e-3,
            0.0,
            "bound_below",
            basis="P1: with M = 0 non-collapsed fixed points exist; MinL2 from y in numpy",
        ),
        _num(
            S,
            "P1 (M = 0): max eig Omega(W) reaches the bound n/(n+M) = 1",
            float(ev_0[-1]),
            1.0,
            1e-12,  # measured 2.2e-16, round-off at a polished fixed point
            "abs",
            basis="(I - Omega) dy_c = 0 with dy_c != 0 needs eigenvalue 1; Omega in projector "
            "form from the fixed point's W (numpy QR)",
        ),
        _num(
            S,
            "P1 (M = 0): the label bias directions lie in the eigenvalue-1 eigenspace of "
            "Omega (largest principal-angle sine)",
            bias_sine,
            0.0,
            1e-12,  # measured 8.8e-16, round-off at a polished fixed point
            "abs",
            basis="(I - Omega) dy_c = 0 written as a subspace statement; dy_c = y_c - mean "
            "from the fixed point, eigenspace from numpy eigh",
        ),
        _num(
            S,
            "P2: stop-gradient fixed point keeps its labels apart: MinL2 / MinL2 at the start",
            sep_ratio,
            0.1,
            0.0,
            "bound_below",
            basis=f"MinL2 from the labels y in numpy (start {sep0_start:.4g}); not the "
            "finder's branch label",
        ),
        _num(
            S,
            "P2: stop-gradient field at that point, written out in numpy, |F|_2",
            sg_res,
            0.0,
            1e-12,  # measured 5.7e-15, round-off at a polished fixed point
            "bound",
            basis="x-, y-, W-equations of the stop-gradient field coded in numpy (no autodiff) "
            "evaluated at the reported fixed point",
        ),
        _num(
            S,
            "P2: W on the label span vs {1, n/(n+M) (K-1 times)}, max abs error",
            span_err,
            0.0,
            1e-12,  # measured 4.4e-16, round-off at a polished fixed point
            "abs",
            basis="closed form (n+M) W y_c = n y_c + M ybar; eigenvalues of pinv(Y) W Y with Y "
            "the fixed point's labels, numpy (imaginary parts counted as error)",
        ),
        _num(
            S,
            "P3: max real part of the stop-gradient Jacobian at its fixed point",
            sgfp["jacobian_max_real"],
            0.0,
            1e-12,  # measured 2.2e-15: no eigenvalue with a positive real part beyond round-off
            "bound",
            basis="stability means no eigenvalue with positive real part; eigenvalues of the "
            "autodiff Jacobian (checked against finite differences in the tests)",
        ),
        _num(
            S,
            "P3: zero modes at the stop-gradient fixed point vs d^2 + (N - rank X)(d - r)",
            sgfp["zero_modes"],
            sgfp["zero_modes_predicted"],
            0.0,
            "abs",
            basis="hand count of the fixed-point manifold's dimension, with numpy ranks of W "
            "and of the sample matrix; zero modes from the Jacobian's eigenvalues",
        ),
        _num(
            S,
            "stability: max real part of the conservative Jacobian at its fixed point",
            cons["jacobian_max_real"],
            0.0,
            1e-12,  # measured 3.9e-15
            "bound",
            basis="a minimum of L_P: minus its Hessian has no positive eigenvalue",
        ),
    ]
    if scipy_ref:
        checks.append(
            _num(
                S,
                "reduced path (lifted: every x_i, y, W) vs scipy integration of every sample, "
                f"max relative error over {scipy_ref['conservative']['save_times']} save times "
                f"t <= {scipy_ref['conservative']['t_end']:.4g}, both fields",
                scipy_err,
                0.0,
                2e-9,  # measured 1.4e-10 (stop-gradient, t = 156: the plateau's end)
                "abs",
                basis="scipy solve_ivp LSODA (rtol = atol = 1e-12) on the fields written out "
                "in numpy for all N samples: another method, other equations, no reduction",
            )
        )
    numbers = {
        "classes": K,
        "per_class": n,
        "shared": M,
        "dim": d,
        "seed": cfg.projection_seed,
        "t": t,
        "bias_eigenvalue_predicted": bound,
        "trajectories": {("stop_gradient" if k else "conservative"): v for k, v in traj.items()},
        "fixed_points": fps,
        "label_span_w_eigenvalues_numpy": span_num,
        "label_span_error": span_err,
        "omega_max_along_trajectories": omega_traj,
        "collapsed_omega_eigenvalues": ev_c,
        "collapsed_common_label": ubar,
        "collapsed_set_dimension": hand_dim,
        "collapsed_tangent_sine": tangent_sine,
        "collapsed_set_points_error": manifold_err,
        "m0_omega_eigenvalues": ev_0,
        "m0_bias_rank": bias_rank,
        "m0_eigenvalue_one_multiplicity": int(E1.shape[1]),
        "sg_separation_ratio": sep_ratio,
        "sg_numpy_residual": sg_res,
        "reduced_vs_scipy": scipy_ref,
        "branch_counts": counts,
    }
    ctx["projection_final_x"] = {k: v["final_x"] for k, v in numbers["trajectories"].items()}
    fig1 = save_figure(_fig_projection_dynamics(numbers), out / "projection_dynamics.png")
    fig2 = save_figure(_fig_projection_fixed_points(numbers), out / "projection_fixed_points.png")
    cnt = ""
    if counts is not None:
        nz = {b: c for b, c in counts["counts"].items() if c}
        cnt = (
            f" Over {len(counts['seeds'])} starts (seeds {counts['seeds'][0]}-"
            f"{counts['seeds'][-1]}) the stop-gradient flow reached: {nz}."
        )
    tr = numbers["trajectories"]
    ref_txt = ""
    if scipy_ref:
        ref_txt = (
            " The lifted trajectories agree with a scipy LSODA integration of every sample "
            f"(numpy field) to {fmt_error(scipy_err)} (relative, t ≤ "
            f"{scipy_ref['conservative']['t_end']:.4g})."
        )
    plateau = _plateau(t, np.asarray(tr["stop_gradient"]["w_eigenvalues_abs"]), bound, d - K)
    body = [
        f"Projection model `L_P = ½ Σ A_ic [‖W x_i − y_c‖² + ‖y_c − x_i‖²]`, `K={K}, n={n}, "
        f"M={M}, d={d}`, start from seed {cfg.projection_seed} (`W = I + 0.1 N(0,1)`). "
        "Trajectories come from `simulate_projection` (exact order-parameter reduction, "
        "IMEX KenCarp, lifted back to every sample: "
        f"{tr['conservative']['steps']} and {tr['stop_gradient']['steps']} steps).{ref_txt} "
        "Fixed points come from `projection_fixed_point`, which integrates the same reduced "
        "path (lifted back to every sample after each segment), polishes on the full field "
        "with a pseudo-inverse Newton and accepts a fixed point only after residual and "
        "Jacobian tests.",
        f"- **P1, without stop-gradient: complete collapse.** The conservative flow ends on "
        f"the `{cons['branch']}` branch with MinL2 = {fmt_error(_np_label_separation(yc))} "
        f"(residual {fmt_error(cons['residual_norm'])}, t = {cons['t_reached']:.4g}). The "
        f"bound `spec Ω(W) ⊂ [0, n/(n+M)] = [0, {bound:.6g}]` holds for every `W`; along both "
        f"trajectories its maximum is {fmt_value(omega_traj)}. At the collapsed fixed point "
        "the equations force every `x_i` and `y_c` onto one point `u` with `W u = u`, so the "
        f"bound is attained on `u` itself (max eig Ω = {fmt_value(ev_c[-1])}, angle sine to "
        f"`u` {fmt_error(top_sine)}, `|Wu − u|/|u|` = {fmt_error(fix_res)}); a bias "
        "direction would need eigenvalue 1, which `M > 0` excludes, so `δy = 0`. "
        "With `M = 0` (the same start, its shared rows switched off) the bound is 1 and is "
        f"reached ({fmt_value(ev_0[-1])}, multiplicity {E1.shape[1]}) on the label bias "
        f"directions (rank {bias_rank}, angle sine {fmt_error(bias_sine)}): the conservative "
        f"fixed point keeps MinL2 = {fmt_value(_np_label_separation(y0f))} (branch "
        f"`{cons0['branch']}`).",
        "- **What is unique without stop-gradient.** The collapsed fixed point is unique up to "
        "a set of them: all `x_i = y_c = u` with `W u = u` (`L_P = 0` there), of dimension "
        f"`d + (d² − d) = d² = {hand_dim}`. The conservative Jacobian at the fixed point "
        f"reached has {cons['zero_modes']} zero modes, spanning that set's tangent space "
        f"(principal-angle sine {fmt_error(tangent_sine)}), and random points of the set are "
        f"fixed points with MinL2 = 0 (max residual {fmt_error(manifold_err)}). What is "
        "unique is the geometry: every label and embedding at one point.",
        f"- **P2, with stop-gradient: separation survives.** The stop-gradient flow ends on "
        f"the `{sgfp['branch']}` branch with MinL2 = {fmt_value(_np_label_separation(ys))} "
        f"({sep_ratio:.3g} of its start), a zero of the numpy-coded stop-gradient field to "
        f"{fmt_error(sg_res)}; `|eig W|` = "
        f"{np.array2string(np.asarray(sgfp['w_eigenvalues_abs']), precision=6)}, and `W` on "
        f"the label span has eigenvalues {np.array2string(span_num, precision=8)} against the "
        f"predicted `{{1, 1 − ρ = n/(n+M) = {bound:.6g}}}` (max error "
        f"{fmt_error(span_err)}).{cnt}",
        f"- **P3, stability.** At the stop-gradient fixed point the largest real part of the "
        f"Jacobian eigenvalues is {fmt_error(sgfp['jacobian_max_real'])}, with "
        f"{sgfp['zero_modes']} zero modes (predicted {sgfp['zero_modes_predicted']}: the "
        f"fixed-point manifold, `d² + (N − rank X)(d − rank W)`); the Jacobian is not "
        f"symmetric (‖J − Jᵀ‖_F = {sgfp['asymmetry_norm']:.4g}): `F_sg` is not a gradient.",
        f"- **Accuracy** (`ŷ = W x`, clean samples): with stop-gradient it ends at "
        f"{fmt_value(tr['stop_gradient']['accuracy'][-1])}; without, MinL2 reaches the "
        "round-off floor and accuracy stops being defined (gaps in panel b).",
        _img(fig1, "projection model with and without stop-gradient"),
        "(a) MinL2(t); (b) nearest-label accuracy of clean samples; (c) `|eig W(t)|` on the "
        f"stop-gradient run, ending at `{{0, n/(n+M), 1}}`{plateau}; (d) the largest "
        "eigenvalue of `Ω(W(t))` on both runs, never above `n/(n+M)` (P1).",
        _img(fig2, "fixed points: Jacobian spectra and W spectra"),
        "(a) Real parts of the Jacobian eigenvalues at the stop-gradient and conservative "
        "fixed points (symlog axis; largest imaginary part in the legend): none above the "
        "tolerance, a block of zero modes, the rest negative. (b) `|eig W|` at the three "
        "fixed points against the predicted levels.",
    ]
    return Section(S, body, [fig1, fig2], checks, numbers)


def _plateau(t, w_abs, bound: float, first: int) -> str:
    """Caption text for a bias eigenvalue of `W` that lingers near 0 before it rises to
    `n/(n+M)` (a saddle plateau), measured from the curve; empty if there is none."""
    w = np.asarray(w_abs)[:, first]  # the smallest |eig W| that ends at n/(n+M)
    if abs(w[-1] - bound) > 1e-3:
        return ""
    below = np.nonzero(w < 0.5 * bound)[0]
    if below.size == 0 or below[-1] + 1 >= t.size or t[below[-1]] < 10.0:
        return ""
    k = int(below[-1])
    late = w[(t >= 1.0) & (t <= t[k])]
    return (
        f"; one bias eigenvalue stays near 0 (between {late.min():.2g} and {late.max():.2g} "
        f"for 1 ≤ t ≤ {t[k]:.3g}: a slow transient with that bias direction close to the "
        f"kernel of `W`), then jumps to `n/(n+M)` by t ≈ {t[k + 1]:.3g} while MinL2 rises in "
        "panel (a)"
    )


def _fig_projection_dynamics(nb: dict):
    """Figure of the projection trajectories (MinL2, accuracy, `|eig W|`, `max eig Omega`)
    from the ``projection`` numbers; returns the ``matplotlib`` Figure (not saved)."""
    from .plots import new_figure

    t = np.asarray(nb["t"])
    tr = nb["trajectories"]
    bound = nb["bias_eigenvalue_predicted"]
    fig, axes = new_figure(2, 2, figsize=(13, 9))
    labels = {"conservative": "without stop-gradient", "stop_gradient": "with stop-gradient"}
    styles = {"conservative": ("C3", "--"), "stop_gradient": ("C0", "-")}
    for k, run in tr.items():
        color, ls = styles[k]
        ml = np.asarray(run["min_l2"])
        axes[0, 0].loglog(t, np.where(ml > 0, ml, np.nan), ls, color=color, lw=2, label=labels[k])
        axes[0, 1].semilogx(t, run["accuracy"], ls, color=color, lw=2, label=labels[k])
        axes[1, 1].semilogx(t, run["omega_max"], ls, color=color, lw=2, label=labels[k])
    axes[0, 0].axhline(
        tr["conservative"]["roundoff_floor"], color="0.5", ls=":", label="round-off floor"
    )
    axes[0, 0].set_ylabel("MinL2 = min over c≠c′ of ‖y_c − y_c′‖ (embedding units)")
    axes[0, 0].set_title("(a) label separation")
    axes[0, 1].set_ylabel("nearest-label accuracy, clean samples (fraction)")
    axes[0, 1].set_ylim(-0.05, 1.05)
    axes[0, 1].set_title("(b) accuracy with ŷ = W x (gaps: MinL2 at round-off)")
    w = np.asarray(tr["stop_gradient"]["w_eigenvalues_abs"])
    for j in range(w.shape[1]):
        axes[1, 0].semilogx(t, w[:, j], "-", lw=1.5, label=f"{j + 1}. smallest |eig W|")
    for level, text in ((bound, f"n/(n+M) = {bound:.4g}"), (1.0, "1 (mean direction)")):
        axes[1, 0].axhline(level, color="k", ls=":", lw=1)
        axes[1, 0].text(t[0], level + 0.02, text, fontsize=8)
    axes[1, 0].set_ylabel("|eigenvalue of W(t)| (dimensionless)")
    axes[1, 0].set_title("(c) spectrum of W, stop-gradient run")
    axes[1, 1].axhline(bound, color="k", ls=":", lw=1, label=f"bound n/(n+M) = {bound:.4g}")
    axes[1, 1].set_ylabel("largest eigenvalue of Ω(W(t)) (dimensionless)")
    axes[1, 1].set_title("(d) P1: spec Ω(W) ⊂ [0, n/(n+M)]")
    for ax in axes.ravel():
        ax.set_xlabel(_TIME_LABEL)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Projection model, K={nb['classes']}, n={nb['per_class']}, M={nb['shared']}, "
        f"d={nb['dim']}, seed {nb['seed']} (reduced path)"
    )
    fig.tight_layout()
    return fig


def _fig_projection_fixed_points(nb: dict):
    """Figure of the fixed points (Jacobian spectra, `|eig W|`) from the ``projection``
    numbers; returns the ``matplotlib`` Figure (not saved)."""
    from .plots import new_figure

    fps = nb["fixed_points"]
    bound = nb["bias_eigenvalue_predicted"]
    fig, axes = new_figure(1, 2, figsize=(14, 5))
    ax = axes[0]
    for k, (label, marker, color) in {
        "stop_gradient": ("stop-gradient", "o", "C0"),
        "conservative": ("conservative", "x", "C3"),
    }.items():
        re = np.sort(np.asarray(fps[k]["jacobian_real"]))
        im = float(np.max(np.abs(fps[k]["jacobian_imag"])))
        ax.plot(
            np.arange(1, re.size + 1),
            re,
            marker,
            color=color,
            ms=4,
            mfc="none",
            label=f"{label}: max Re = {fps[k]['jacobian_max_real']:.1e}, "
            f"{fps[k]['zero_modes']} zero modes, max |Im| = {im:.1e}",
        )
    ax.axhline(
        1e-7,
        color="k",
        ls=":",
        lw=1,
        label="growth tolerance 1e-7 (a fixed point has nothing above)",
    )
    ax.set_yscale("symlog", linthresh=1e-8)
    ax.set_xlabel("eigenvalue index (sorted by real part)")
    ax.set_ylabel("Re(eigenvalue) of the Jacobian (1/time, symlog)")
    ax.set_title(f"(a) Jacobian spectra at the fixed points (M = {nb['shared']})")
    ax.legend(fontsize=8, loc="center left")
    ax = axes[1]
    d = len(fps["stop_gradient"]["w_eigenvalues_abs"])
    idx = np.arange(1, d + 1)
    for off, (k, label, marker) in zip(
        (-0.15, 0.0, 0.15),
        (
            (
                "stop_gradient",
                f"stop-gradient, M={nb['shared']} ({fps['stop_gradient']['branch']})",
                "o",
            ),
            (
                "conservative",
                f"conservative, M={nb['shared']} ({fps['conservative']['branch']})",
                "x",
            ),
            ("conservative_m0", f"conservative, M=0 ({fps['conservative_m0']['branch']})", "s"),
        ),
        strict=True,
    ):
        ax.plot(idx + off, fps[k]["w_eigenvalues_abs"], marker, ms=8, mfc="none", label=label)
    ax.axhline(bound, color="k", ls=":", lw=1)
    ax.text(0.6, bound + 0.02, f"n/(n+M) = {bound:.4g}", fontsize=8)
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.set_xticks(idx)
    ax.set_xlabel("eigenvalue of W, sorted by modulus")
    ax.set_ylabel("|eigenvalue of W| at the fixed point (dimensionless)")
    ax.set_title("(b) W spectra at the fixed points")
    ax.set_ylim(-0.05, 1.15)
    ax.legend(fontsize=8, loc="center left")
    fig.suptitle(f"Fixed points of the projection model, seed {nb['seed']}")
    fig.tight_layout()
    return fig


# --- 3. sweeps ----------------------------------------------------------------------------------


def _sweep(cfg: ReproduceConfig, out: Path, log, ctx) -> Section:
    import diffrax

    from . import frustration_data, init_embedding_state, log_times
    from . import sweep as sweep_mod
    from .metrics import fit_slow_rate
    from .plots import save_figure, sweep_figure

    S = "sweep"
    K, n, d = cfg.classes, cfg.per_class, cfg.dim
    phis = np.linspace(*cfg.sweep_frustration[:2], int(cfg.sweep_frustration[2]))
    ts = log_times(cfg.t_min, cfg.t1, cfg.points)
    t = np.asarray(ts)
    log(f"  embedding sweep: {phis.size} ratios x {cfg.sweep_seeds} seeds (exact path) ...")
    res = sweep_mod.embedding_sweep(phis, cfg.sweep_seeds, n_classes=K, per_class=n, dim=d, ts=ts)
    rates = sweep_mod.fitted_rates(res)
    sweep_mod.save_sweep(res, out / "sweep_embedding.npz")
    # (a) the exact-path members against scipy.linalg.expm of the Hessian built from A
    picks = np.unique(np.linspace(0, phis.size - 1, max(1, cfg.sweep_expm_members)).astype(int))
    max_shared = int(res.metadata["max_shared"])
    expm_err = []
    for i in picks:
        data_i = frustration_data(K, n, float(phis[i]), max_shared=max_shared)
        seed = int(res.seed[0])
        z_i = init_embedding_state(jax.random.PRNGKey(seed), data_i.n_samples, K, d)
        _, yr = _expm_reference(data_i.matrix(), z_i.x, z_i.y, t)
        ref = _np_min_l2(yr)
        ok = ref > 1e-6 * ref[0]
        expm_err.append(float(np.max(np.abs(res.min_l2[i, 0][ok] / ref[ok] - 1.0))))
    # (b) a small sweep integrated with diffrax, fitted rates against lambda_pm written out
    integ = None
    if cfg.integrated_sweep > 0:
        phis_i = np.linspace(*cfg.sweep_frustration[:2], int(cfg.integrated_sweep))
        log(f"  embedding sweep with diffrax Tsit5: {phis_i.size} ratios x 2 seeds ...")
        # save times up to t = 300 only: by then MinL2 of every member with M >= 1 is below
        # the slow fit's floor (1e-8 of its maximum), and the explicit steps cost time
        ts_i = ts[ts <= 300.0] if float(ts[-1]) > 300.0 else ts
        t_i = np.asarray(ts_i)
        res_i = sweep_mod.embedding_sweep(phis_i, 2, n_classes=K, per_class=n, dim=d, ts=ts_i,
                                          method="integrate", solver=diffrax.Tsit5())  # fmt: skip
        ml_i = np.asarray(res_i.min_l2)
        lam_i = np.array([_closed_lambda(n, m) for m in res_i.shared])
        slow_i = np.array([[fit_slow_rate(t_i, ml_i[a, b]) for b in range(ml_i.shape[1])]
                           for a in range(ml_i.shape[0])])  # fmt: skip
        fast_i = np.array([[_fit_fast(t_i, ml_i[a, b])[0] for b in range(ml_i.shape[1])]
                           for a in range(ml_i.shape[0])])  # fmt: skip
        fr = res_i.shared > 0
        slow_rel = np.abs(slow_i[fr] / lam_i[fr, 0, None] - 1.0)
        fast_rel = np.abs(fast_i / lam_i[:, 1, None] - 1.0)
        integ = {
            "frustration": phis_i,
            "shared": res_i.shared,
            "slow_rate_fit": slow_i,
            "fast_rate_fit": fast_i,
            "lambda_plus": lam_i[:, 0],
            "lambda_minus": lam_i[:, 1],
            "slow_rate_max_rel_error": float(np.max(slow_rel)),
            "fast_rate_max_rel_error": float(np.max(fast_rel)),
            "fast_rate_members_fitted": int(np.sum(np.isfinite(fast_rel))),
            "m0_abs_slow_rate": float(np.max(np.abs(slow_i[~fr]))) if (~fr).any() else None,
            "failed": int(np.sum(res_i.result != 0)),
            "members": int(res_i.result.size),
        }
    fig = save_figure(sweep_figure(res, rates, integrated=integ), out / "sweep_embedding.png")
    figures = [fig]
    slow = rates["slow_rate_fit"]
    pred = rates["slow_rate_predicted"]
    lam_basis = (
        "closed form lambda+- = ½[−(n+M+1) ± √((n+M+1)² − 4M)], written out in numpy; the fit "
        "is on the diffrax-integrated MinL2(t) (the full flow, no sector solution)"
    )
    checks = [
        _num(
            S,
            f"embedding sweep (exact path) vs scipy.linalg.expm: MinL2(t) max relative error "
            f"over {picks.size} members (M = {[int(res.shared[i]) for i in picks]}, seed "
            f"{int(res.seed[0])}), where MinL2 > 1e-6 of its start",
            float(np.max(expm_err)),
            0.0,
            1e-9,  # measured 3.1e-11 (section 1's configuration)
            "abs",
            basis="expm(J t) z(0) with J = −(Hessian of ½ Σ A_ic ‖x_i − y_c‖²) assembled in "
            "numpy from each member's alignment matrix, exponentiated by scipy; MinL2 in numpy",
        ),
        _num(
            S,
            "embedding sweep: failed members (diffrax result codes)",
            int(np.sum(res.result != 0)),
            0,
            0.0,
            "abs",
            basis="result code of every member (0 = successful)",
        ),
    ]
    if integ is not None:
        checks += [
            _num(
                S,
                f"integrated sweep (diffrax Tsit5, {phis_i.size} ratios x 2 seeds): slow-rate "
                "fit vs lambda+, WORST relative error over the members with M > 0",
                integ["slow_rate_max_rel_error"],
                0.0,
                2e-9,  # measured 2.0e-10
                "abs",
                basis=lam_basis,
            ),
            _num(
                S,
                f"integrated sweep: fast-rate fit vs lambda-, WORST relative error over all "
                f"{integ['members']} members (residual about the slow line in "
                f"({_FAST_LO:g}, {_FAST_HI:g}); log-spaced save times, 3-6 points a fit)",
                integ["fast_rate_max_rel_error"],
                0.0,
                2.5e-2,  # measured 2.4e-3 (worst member; 3-6 points in the window)
                "abs",
                basis=lam_basis,
            ),
            _num(
                S,
                "integrated sweep: failed members (diffrax result codes)",
                integ["failed"],
                0,
                0.0,
                "abs",
                basis="diffrax result code of every member (0 = successful)",
            ),
        ]
        if integ["m0_abs_slow_rate"] is not None:
            checks.append(
                _num(
                    S,
                    "integrated sweep at M = 0: |slow-rate fit| (lambda+ = 0, absolute)",
                    integ["m0_abs_slow_rate"],
                    0.0,
                    2e-14,  # measured 2.1e-15
                    "abs",
                    basis="lambda+ = 0 at M = 0 (closed form); fit on the diffrax-integrated path",
                )
            )
    numbers = {
        "frustration": res.frustration,
        "shared": res.shared,
        "seeds": res.seed,
        "t": res.t,
        "final_min_l2": res.min_l2[..., -1],
        "slow_rate_fit": slow,
        "slow_rate_predicted": pred,
        "fast_rate_fit": rates["fast_rate_fit"],
        "fast_rate_predicted": rates["fast_rate_predicted"],
        "expm_members": picks,
        "expm_max_rel_error": float(np.max(expm_err)),
        "integrated": integ,
        "compile_seconds": res.metadata["compile_seconds"],
        "run_seconds": res.metadata["run_seconds"],
    }
    body = [
        f"`embedding_sweep`: one `jit(vmap)` call over {phis.size} frustration ratios "
        f"`φ = M/(Kn+M)` in [{phis[0]:g}, {phis[-1]:g}] x {len(res.seed)} seeds, `K={K}, "
        f"n={n}, d={d}`, exact sector path (compile {res.metadata['compile_seconds']:.2f} s, "
        f"run {res.metadata['run_seconds']:.3f} s); `M = round(φKn/(1−φ))` shared samples "
        "(rule `round`). Results: `sweep_embedding.npz`.",
        f"- **Exact path against `scipy.linalg.expm`.** For {picks.size} members "
        f"(`M` = {[int(res.shared[i]) for i in picks]}) MinL2(t) of the sweep matches "
        f"`expm(J t) z(0)` (`J` assembled in numpy from the member's alignment matrix) to "
        f"{fmt_error(np.max(expm_err))} relative wherever MinL2 is above 1e-6 of its start.",
    ]
    if integ is not None:
        body.append(
            f"- **Integrated sweep** (diffrax Tsit5, {phis_i.size} ratios x 2 seeds, the full "
            f"flow): fitted slow rates within {fmt_error(integ['slow_rate_max_rel_error'])} "
            f"of `lambda+` (worst member), fast rates within "
            f"{fmt_error(integ['fast_rate_max_rel_error'])} of `lambda-` (worst of "
            f"{integ['fast_rate_members_fitted']} members); at `M = 0` the fitted slope is "
            f"{fmt_error(integ['m0_abs_slow_rate'] or 0.0)}. On the log-spaced save times the "
            "fast phase (`~1/|lambda-|`) spans only a few points, so the fast fit is coarser "
            "than section 1's, which uses an equally spaced grid over that phase."
        )
    body += [
        _img(fig, "phase diagram of the embedding model"),
        "(a) MinL2 at the final time against the frustration ratio: any `φ > 0` collapses the "
        "classes, `φ = 0` keeps them apart; (b) the collapse rate `−λ+` (line: closed form) "
        "against the rates fitted to the diffrax-integrated members (markers); (c) MinL2(t) "
        "for a few ratios.",
    ]
    section_p = _projection_sweep_or_note(cfg, out, log, sweep_mod)
    body += section_p.body
    figures += section_p.figures
    checks += section_p.checks
    numbers["projection"] = section_p.numbers
    return Section(S, body, figures, checks, numbers)


def _projection_sweep_or_note(cfg: ReproduceConfig, out: Path, log, sweep_mod) -> Section:
    """The projection-model sweep where ``sweep_mod`` has ``projection_sweep``, else a note."""
    if not cfg.projection_sweep:
        note = "- **Projection-model sweep**: not run (switched off in this configuration)."
        return Section("sweep", [note], [], [], None)
    if hasattr(sweep_mod, "projection_sweep"):
        return _projection_sweep(cfg, out, log, sweep_mod)
    log("  projection sweep skipped: collapse_jax.sweep has no projection_sweep")
    note = (
        "- **Projection-model sweep: skipped.** This version of `collapse_jax.sweep` has no "
        "`projection_sweep`; the frustration sweep with and without stop-gradient appears "
        "here once it does."
    )
    return Section("sweep", [note], [], [], None)


def _k_of_n(k: int, n: int, fraction: float) -> str:
    """``"k of N (fraction f)"``: how the report states a collapsed count."""
    return f"{k} of {n} (fraction {fmt_value(fraction)})"


def _projection_sweep(cfg: ReproduceConfig, out: Path, log, sweep_mod) -> Section:
    from . import log_times

    S = "sweep"
    K, n, d = cfg.classes, cfg.projection_sweep_per_class, cfg.dim
    f = cfg.projection_sweep_frustration
    phis = np.linspace(f[0], f[1], int(f[2]))
    ts = log_times(cfg.t_min, cfg.projection_sweep_t1, min(cfg.points, 60))
    runs = {}
    for sg in (False, True):
        log(
            f"  projection sweep, stop_gradient={sg}: {phis.size} ratios x "
            f"{cfg.projection_sweep_seeds} seeds ..."
        )
        runs[sg] = sweep_mod.projection_sweep(
            phis,
            cfg.projection_sweep_seeds,
            stop_gradient=sg,
            n_classes=K,
            per_class=n,
            dim=d,
            ts=ts,
        )
        sweep_mod.save_sweep(runs[sg], out / f"sweep_projection_sg{int(sg)}.npz")
    res0 = runs[False]
    frustrated = res0.shared > 0
    rel_final = {sg: r.min_l2[..., -1] / r.min_l2[..., 0] for sg, r in runs.items()}
    collapsed = {sg: rel_final[sg] < 1e-6 for sg in runs}
    frac_cons = float(np.mean(collapsed[False][frustrated])) if frustrated.any() else float("nan")
    frac_sg = float(np.mean(collapsed[True][frustrated])) if frustrated.any() else float("nan")
    n_frustrated = int(collapsed[False][frustrated].size)
    k_cons, k_sg = (int(np.sum(collapsed[sg][frustrated])) for sg in (False, True))
    failed = int(sum(np.sum(r.result != 0) for r in runs.values()))
    checks = [
        _num(
            S,
            "projection sweep without stop-gradient: fraction of members with M > 0 "
            "collapsed (MinL2(t1) < 1e-6 MinL2(t_min)), expected 1",
            frac_cons,
            1.0,
            0.0,
            "abs",
            basis="claim P1 (the conservative flow collapses every frustrated start); MinL2 from "
            "each member's integrated label positions",
        ),
        _num(
            S,
            "projection sweep with stop-gradient: fraction of members with M > 0 "
            "collapsed, expected 0",
            frac_sg,
            0.0,
            0.0,  # measured 0
            "abs",
            basis="claim P2 (stop-gradient keeps the classes apart); MinL2 from each member's "
            "integrated label positions",
        ),
        _num(
            S,
            "projection sweeps: failed members (diffrax result codes)",
            failed,
            0,
            0.0,
            "abs",
            basis="diffrax result code of every member (0 = successful)",
        ),
    ]
    numbers = {
        "frustration": phis,
        "shared": res0.shared,
        "per_class": n,
        "t1": cfg.projection_sweep_t1,
        "final_min_l2_conservative": runs[False].min_l2[..., -1],
        "final_min_l2_stop_gradient": runs[True].min_l2[..., -1],
        "final_accuracy_stop_gradient": runs[True].accuracy[..., -1],
        "collapsed_fraction_conservative": frac_cons,
        "collapsed_fraction_stop_gradient": frac_sg,
        "collapsed_count_conservative": k_cons,
        "collapsed_count_stop_gradient": k_sg,
        "frustrated_members": n_frustrated,
        "seconds": {
            str(sg): r.metadata.get("compile_seconds", 0) + r.metadata.get("run_seconds", 0)
            for sg, r in runs.items()
        },
    }
    from .plots import save_figure

    fig = save_figure(_fig_projection_sweep(runs, ts), out / "sweep_projection.png")
    body = [
        f"- **Projection-model sweep** (`projection_sweep`, reduced path, `K={K}, n={n}, "
        f"d={d}`, {phis.size} ratios in [{phis[0]:g}, {phis[-1]:g}] x "
        f"{cfg.projection_sweep_seeds} seeds, `t1 = {cfg.projection_sweep_t1:g}`): without "
        f"stop-gradient {_k_of_n(k_cons, n_frustrated, frac_cons)} frustrated members "
        f"collapse; with stop-gradient {_k_of_n(k_sg, n_frustrated, frac_sg)}.",
        _img(fig, "phase diagram of the projection model with and without stop-gradient"),
        "(a) MinL2 at the final time against `φ` (each seed; line: median): without "
        "stop-gradient every frustrated member collapses (P1), with stop-gradient the "
        "separation survives (P2); (b) final nearest-label accuracy of clean samples "
        "(`ŷ = W x`), each seed; a cross on the row marked 'undefined' is a member whose "
        "MinL2 reached round-off, where the nearest label is not defined (all frustrated "
        "members without stop-gradient); (c) accuracy against time at the largest `φ`, seed "
        "0: without stop-gradient it is defined until the collapse reaches round-off, then "
        "the curve stops; with stop-gradient it stays defined to the end.",
    ]
    return Section(S, body, [fig], checks, numbers)


def _fig_projection_sweep(runs: dict, ts):
    """Figure: projection-model sweep with and without stop-gradient."""
    from .plots import new_figure

    fig, axes = new_figure(1, 3, figsize=(18, 4.8))
    floor = 1e-30
    t = np.asarray(ts)
    styles = {
        False: ("C3", "without stop-gradient", "s", -0.006),
        True: ("C0", "with stop-gradient", "o", 0.006),
    }
    for sg, (color, label, marker, dx) in styles.items():
        r = runs[sg]
        phi = np.asarray(r.frustration)
        final = np.clip(r.min_l2[..., -1], floor, None)
        for j in range(final.shape[1]):
            axes[0].semilogy(phi + dx, final[:, j], marker, color=color, mfc="none", alpha=0.8,
                             label=f"{label} (each seed)" if j == 0 else None)  # fmt: skip
        axes[0].semilogy(phi + dx, np.median(final, axis=1), "-", color=color, lw=1.5)
        acc = np.asarray(r.accuracy[..., -1], dtype=np.float64)
        for j in range(acc.shape[1]):
            ok = np.isfinite(acc[:, j])
            axes[1].plot(phi[ok] + dx, acc[ok, j], marker, color=color, ms=7, mfc="none",
                         label=f"{label}: defined" if j == 0 else None)  # fmt: skip
            axes[1].plot(phi[~ok] + dx, np.full(int((~ok).sum()), -0.1), "x", color=color,
                         ms=8, label=f"{label}: undefined (MinL2 at round-off)"
                         if j == 0 and (~ok).any() else None)  # fmt: skip
        i = int(np.argmax(phi))
        axes[2].semilogx(t, np.asarray(r.accuracy[i, 0], dtype=np.float64), marker + "-",
                         ms=3, color=color, label=f"{label}, φ = {phi[i]:.3g}, seed 0")  # fmt: skip
    axes[0].axhspan(floor / 10, 1e-12, color="0.9", zorder=0,
                    label="below 1e-12: zero to float64 round-off")  # fmt: skip
    axes[0].axhline(floor, color="0.5", ls=":", lw=1, label=f"values below {floor:g} drawn here")
    axes[0].set_ylabel(f"MinL2 at t = {float(t[-1]):g} (embedding units)")
    axes[0].set_title("(a) final class separation")
    axes[1].axhline(-0.1, color="0.7", lw=0.8)
    ticks = [-0.1, 0, 0.25, 0.5, 0.75, 1.0]
    axes[1].set_yticks(ticks, ["undefined", "0", "0.25", "0.5", "0.75", "1"])
    axes[1].set_ylabel("final nearest-label accuracy, clean samples (fraction)")
    axes[1].set_ylim(-0.17, 1.05)
    axes[1].set_title("(b) final accuracy (ŷ = W x), each seed")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_xlabel(_TIME_LABEL)
    axes[2].set_ylabel("nearest-label accuracy, clean samples (fraction)")
    axes[2].set_title("(c) accuracy against time (gap: undefined after collapse)")
    for ax in axes[:2]:
        ax.set_xlabel(r"frustration ratio $\varphi = M/(Kn+M)$ (markers offset ±0.006)")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    meta = runs[True].metadata
    fig.suptitle(
        f"Projection model sweep, K={meta.get('n_classes')}, n={meta.get('per_class')}, "
        f"d={meta.get('dim')}, {len(runs[True].seed)} seeds"
    )
    fig.tight_layout()
    return fig


# --- 4. teacher-student -----------------------------------------------------------------------

#: The stop-gradient outcome (finite MinL2, accuracy within a few points of `1 - f`) is stated
#: for `f = 0, 0.1, 0.2`; runs at larger `f` are reported, not held to it.
TS_CLAIM_MAX_F = 0.2

#: The two-stage pattern (accuracy rises, then falls while the loss keeps falling) is seen in
#: the projection model without stop-gradient from `f = 0.2` (seed 0: 0.79 -> 0.5775); at
#: `f = 0.1` the fall is 0.0075, at `f = 0` 0.005. Checked for `TS_TWO_STAGE_F <= f <=
#: TS_CLAIM_MAX_F`.
TS_TWO_STAGE_F = 0.2


def _ts_loss_rates(r, config, seed) -> dict:
    """Closed-form fast and slow rates of the plain loss, and the rates measured on the run.

    The plain loss is the quadratic form `1/2 sum_a v_a^T H v_a` (`v_a` = row `a` of `U` with
    the `a`-th components of `y_+`, `y_-`), so along the flow `v_a(t) = exp(-H t) v_a(0)` it is
    `L(t) = 1/2 sum_k lambda_k c_k^2 exp(-2 lambda_k t)` (eigenpairs of `H`, `c_k^2` the squared
    coefficients of the start). Its log-slope `-d ln L / dt` starts at the weighted mean
    `2 sum lambda^2 c^2 / sum lambda c^2` (fast) and ends at `2 lambda_min` (slow).
    """
    from .exact import teacher_student_hessian
    from .metrics import fit_slow_rate
    from .teacher_student import teacher_student_problem

    data, state0 = teacher_student_problem(jax.random.PRNGKey(seed), r["frustration"], config)
    lam, Q = np.linalg.eigh(teacher_student_hessian(data.moments()))
    V0 = np.concatenate([np.asarray(state0.U, np.float64).T, np.asarray(state0.y, np.float64)])
    c2 = ((Q.T @ V0) ** 2).sum(axis=1)
    t, loss = np.asarray(r["t"]), np.asarray(r["loss"])
    t_mid = 0.5 * (t[0] + t[1])
    w = lam * c2 * np.exp(-2 * lam * t_mid)
    return {
        "loss_fast_rate": float(-(np.log(loss[1]) - np.log(loss[0])) / (t[1] - t[0])),
        "loss_fast_rate_exact": float(2 * (lam * w).sum() / w.sum()),
        "loss_fast_rate_t0_exact": float(2 * (lam**2 * c2).sum() / (lam * c2).sum()),
        "loss_slow_rate": float(-fit_slow_rate(t, loss, floor=1e-250 * loss.max())),
        "loss_slow_rate_exact": float(2 * lam[0]),
    }


def _ts_split_time(plain_run, sg_run, threshold=0.1) -> float:
    """First time at which the MinL2 curves of two runs differ by more than ``threshold`` in
    `|ln(ratio)|` (the stop-gradient run, on its own grid, interpolated in `ln t`)."""
    t = np.asarray(plain_run["t"])
    a = np.log(np.asarray(plain_run["min_l2"]))
    b = np.interp(np.log(t), np.log(np.asarray(sg_run["t"])), np.log(sg_run["min_l2"]))
    apart = np.flatnonzero(np.abs(a - b) > threshold)
    return float(t[apart[0]]) if apart.size else float("nan")


def _teacher_student(cfg: ReproduceConfig, out: Path, log, ctx) -> Section:
    from .plots import save_figure, teacher_student_figure
    from .teacher_student import TS_RTOL, TeacherStudentConfig, run_teacher_student

    S = "teacher_student"
    configs = {
        "plain": TeacherStudentConfig(),
        "projection": TeacherStudentConfig(variant="projection"),
        "projection_sg": TeacherStudentConfig(variant="projection", stop_gradient=True),
    }
    horizon = {"plain": cfg.ts_t1, "projection": cfg.ts_t1, "projection_sg": cfg.ts_sg_t1}
    runs = {k: [] for k in configs}
    for name, c in configs.items():
        log(f"  teacher-student {name}: f in {list(cfg.ts_frustration)}, {cfg.ts_seeds} seed(s)")
        for seed in range(cfg.ts_seeds):
            for f in cfg.ts_frustration:
                r = run_teacher_student(f, seed, c, t1=horizon[name])
                r.update(input_dim=c.dim, samples=c.n_samples, student_dim=c.student_dim)
                runs[name].append(r)
    checks = []
    rows = []
    hess = "smallest eigenvalue of the loss Hessian built in numpy from the data moments"
    for r in runs["plain"]:
        exact = np.asarray(r["min_l2_exact"])
        ok = exact > 1e-250 * exact.max()
        err = float(np.max(np.abs(np.asarray(r["min_l2"])[ok] / exact[ok] - 1)))
        r["max_rel_error_vs_exact"] = err
        r.update(_ts_loss_rates(r, configs["plain"], r["seed"]))
        tag = f"f={r['frustration']:g}, seed {r['seed']}"
        checks += [
            _num(
                S,
                f"plain ({tag}): fitted slow rate phi_eff vs smallest Hessian eigenvalue",
                r["slow_rate_fit"],
                r["slow_rate_hessian"],
                5e-3,  # measured 5.3e-4 at f = 0.2 (next mode), 3e-9 at f = 0
                basis=f"{hess} with a separation component (numpy eigh); the fit is the late "
                "slope of MinL2 on the diffrax-integrated path",
            ),
            _num(
                S,
                f"plain ({tag}): integrated MinL2(t) vs closed form, max relative error",
                err,
                0.0,
                5e-9,  # measured 4.3e-10 (f = 0.2)
                "abs",
                basis="closed-form linear solution V(t) = Q exp(-Lambda t) Q^T V(0) (numpy "
                "eigh of the Hessian); the measured path is the Tsit5 integration, rtol "
                f"{TS_RTOL:g}",
            ),
            _num(
                S,
                f"plain ({tag}): loss slow rate (late slope of -ln L) vs 2 lambda_min",
                r["loss_slow_rate"],
                r["loss_slow_rate_exact"],
                5e-3,  # measured 4.1e-4 (f = 0.2), 3.6e-9 (f = 0)
                basis=f"L(t) = 1/2 sum_k lambda_k c_k^2 exp(-2 lambda_k t): late rate twice the "
                f"{hess}; the fit is on the integrated loss",
            ),
            _num(
                S,
                f"plain ({tag}): loss fast rate -d ln L/dt over the first two saves vs closed form",
                r["loss_fast_rate"],
                r["loss_fast_rate_exact"],
                1e-5,  # measured 1.0e-6 (finite difference of the saved loss)
                basis="closed form 2 sum lambda^2 c^2 e^(-2 lambda t) / sum lambda c^2 "
                "e^(-2 lambda t) at the midpoint (eigenpairs of the numpy Hessian, start "
                "coefficients); measured: finite difference of the integrated loss",
            ),
        ]
    two_stage = []
    for r in runs["projection"]:
        tag = f"f={r['frustration']:g}, seed {r['seed']}"
        ratio = r["final_min_l2"] / r["min_l2"][0]
        checks += [
            _num(
                S,
                f"projection without stop-gradient ({tag}): MinL2(t1)/MinL2(t_min) (collapse)",
                ratio,
                0.0,
                1e-6,  # measured 7e-63 .. 3e-23: the claim is collapse, not a precision
                "abs",
                basis="the claim MinL2 -> 0 (reference 0); measured on the integrated path",
            ),
            _num(
                S,
                f"projection without stop-gradient ({tag}): largest relative rise of the loss "
                "between saves (gradient flow: never rises)",
                r["loss_max_increase"],
                0.0,
                0.0,  # measured -7.0e-3 .. -9.4e-3 (the loss falls at every save)
                "bound",
                basis="without stop-gradient the field is -grad L, so dL/dt = -|grad L|^2 <= 0 "
                "(a property of the flow, not of the integrator); loss from the integrated path",
            ),
            _num(
                S,
                f"projection without stop-gradient ({tag}): late decay rate of |y| vs of |U| "
                "(uniform shrinking)",
                r["scale_rate_y"],
                r["scale_rate_U"],
                0.05,  # measured 5.9e-3 (f = 0.2), 7e-6 (f = 0)
                basis="a collapse by rescaling shrinks U and y at one rate: the two late slopes "
                "are fitted separately on the integrated |U| and |y|",
            ),
            _num(
                S,
                f"projection without stop-gradient ({tag}): |W| relative change t1/2 -> t1 "
                "(W converges, does not shrink)",
                r["norm_W_change"],
                0.0,
                1e-10,  # measured 0 (equal to the last digit); |W(t1)| = 1.84 .. 1.90
                "abs",
                basis="reference 0 (a converged predictor); |W| from the integrated path",
            ),
        ]
        if TS_TWO_STAGE_F <= r["frustration"] <= TS_CLAIM_MAX_F:
            two_stage.append(r)
            drop = r["peak_accuracy"] - r["final_accuracy"]
            checks += [
                _num(
                    S,
                    f"projection without stop-gradient ({tag}): two-stage pattern, peak accuracy "
                    "minus final accuracy",
                    drop,
                    0.05,
                    0.0,  # measured at f = 0.2: 0.2125 (seed 0), 0.100 (seed 1), 0.1425 (seed 2)
                    "bound_below",
                    basis="the paper's opening observation (accuracy rises then falls); "
                    "threshold 0.05, half the smallest drop measured at f = 0.2 over seeds 0-2; "
                    "accuracy is computed scale-free on the integrated states",
                ),
                _num(
                    S,
                    f"projection without stop-gradient ({tag}): two-stage pattern, loss at t1 / "
                    "loss at the accuracy peak",
                    r["final_loss"] / r["loss_at_peak"],
                    1e-6,
                    0.0,  # measured 6.9e-122 at f = 0.2
                    "bound",
                    basis="the loss keeps falling while the accuracy falls (paper's opening "
                    "observation); both values from the integrated path",
                ),
            ]
    beyond = []  # stop-gradient runs outside the range the claim is made for
    for r in runs["projection_sg"]:
        tag = f"f={r['frustration']:g}, seed {r['seed']}"
        if r["frustration"] > TS_CLAIM_MAX_F:
            beyond.append(r)
            continue
        checks += [
            _num(
                S,
                f"projection + stop-gradient ({tag}): final MinL2 stays >= 0.1",
                r["final_min_l2"],
                0.1,
                0.0,  # measured 0.530 (f = 0.2) .. 2.88 (f = 0)
                "bound_below",
                basis="the claim that stop-gradient keeps a finite separation; MinL2 at t1 "
                "from the integrated path",
            ),
            _num(
                S,
                f"projection + stop-gradient ({tag}): |F(t1)| / |F(t_min)| (the run ends on a "
                "fixed point)",
                r["residual_final"] / r["residual_initial"],
                0.0,
                # measured 4.4e-12 .. 7.4e-12 (quick: seed 0, t1 = 2000); full preset (seeds
                # 0-2, t1 = 1e4): 3.7e-14 .. 1.6e-9, the worst seed 2 at f = 0, which is still
                # at 2.7e-6 at t = 2000: it approaches its fixed point slowly
                2e-8,
                "abs",
                basis="a fixed point has F = 0: the field is evaluated directly at the "
                "integrated end state, independently of the integrator's error control",
            ),
            _num(
                S,
                f"projection + stop-gradient ({tag}): accuracy at the fixed point vs 1 - f",
                r["final_accuracy"],
                r["accuracy_reference"],
                0.05,  # measured 0.0475 at f = 0.2 seed 0 (0.7525); seeds 1-4: <= 0.035
                "abs",
                basis="1 - f is the population ceiling of any classifier (frustrated samples "
                "sit at the opposite peak); 0.05 is the claim's 'within a few points'"
                + (
                    ". At f = 0.2, seed 0 the fixed point (|F| = 3e-11, MinL2 0.52997 from "
                    "t = 400 to 5000, rtol 1e-6..1e-12 alike) sits 0.0475 below it"
                    if r["frustration"] == 0.2 and r["seed"] == 0
                    else ""
                ),
            ),
        ]
    for k in ("plain", "projection", "projection_sg"):
        for r in runs[k]:
            rows.append(
                f"| {k} | {r['frustration']:g} | {r['seed']} | {_cell(r['slow_rate_fit'])} "
                f"| {_cell(r.get('slow_rate_hessian', float('nan')))} | "
                f"{fmt_error(r['final_min_l2'])} | {fmt_value(r['final_accuracy'])} | "
                f"{fmt_value(r['peak_accuracy'])} | {fmt_value(r['accuracy_reference'])} | "
                f"{fmt_error(r['final_loss'])} | {_cell(r['loss_max_increase'])} |"
            )
    # phi_eff(f) against f (seed 0): "amplified" = the ratio to the noise-only rate phi_eff(0)
    plain0 = sorted((r for r in runs["plain"] if r["seed"] == 0), key=lambda r: r["frustration"])
    base = next((r["slow_rate_hessian"] for r in plain0 if r["frustration"] == 0), float("nan"))
    amp_rows = []
    for r in plain0:
        f, lam = r["frustration"], r["slow_rate_hessian"]
        r["phi_eff_ratio"] = lam / base
        r["phi_eff_increment_per_f"] = (lam - base) / f if f > 0 else float("nan")
        amp_rows.append(
            f"| {f:g} | {_cell(r['slow_rate_fit'])} | {_cell(lam)} | {_cell(lam / base)} | "
            f"{_cell(r['phi_eff_increment_per_f'])} | {_cell(r['loss_fast_rate_t0_exact'])} | "
            f"{_cell(r['loss_slow_rate_exact'])} | "
            f"{_cell(r['loss_fast_rate_t0_exact'] / r['loss_slow_rate_exact'])} |"
        )
    # with vs without stop-gradient: where the MinL2 curves part (seed 0)
    sg0 = {r["frustration"]: r for r in runs["projection_sg"] if r["seed"] == 0}
    split_rows = []
    for r in runs["projection"]:
        if r["seed"] != 0 or r["frustration"] not in sg0:
            continue
        s = sg0[r["frustration"]]
        r["split_time"] = _ts_split_time(r, s)
        i = int(np.argmin(np.abs(np.asarray(r["t"]) - r["split_time"])))
        split_rows.append(
            f"| {r['frustration']:g} | {_cell(r['split_time'])} | "
            f"{_cell(r['min_l2'][i] / r['min_l2'][0])} | {_cell(r['direction_drift_U'])} | "
            f"{_cell(r['direction_drift_y'])} | {_cell(r['norm_W'][-1])} | "
            f"{_cell(s['residual_final'])} | {_cell(s['loss_max_increase'])} |"
        )
    first_seed = [r for r in runs["plain"] if r["seed"] == 0]
    fig1 = save_figure(
        teacher_student_figure(
            first_seed,
            title="Teacher-student, plain linear student, D=100, P=400, p=5, seed 0",
        ),
        out / "teacher_student_plain.png",
    )
    proj = [r for k in ("projection", "projection_sg") for r in runs[k] if r["seed"] == 0]
    proj = [r for r in proj if r["frustration"] > 0] or proj
    fig2 = save_figure(
        teacher_student_figure(
            proj,
            title="Teacher-student with a predictor W, with and without stop-gradient, seed 0",
        ),
        out / "teacher_student_projection.png",
    )
    keep = (
        "t",
        "min_l2",
        "accuracy",
        "loss",
        "slow_rate_fit",
        "slow_rate_hessian",
        "final_min_l2",
        "final_accuracy",
        "final_loss",
        "peak_accuracy",
        "peak_time",
        "loss_at_peak",
        "loss_max_increase",
        "accuracy_reference",
        "frustration",
        "frustration_realised",
        "seed",
        "variant",
        "stop_gradient",
        "steps",
        "result",
        "max_rel_error_vs_exact",
        "loss_fast_rate",
        "loss_fast_rate_exact",
        "loss_fast_rate_t0_exact",
        "loss_slow_rate",
        "loss_slow_rate_exact",
        "phi_eff_ratio",
        "phi_eff_increment_per_f",
        "residual_initial",
        "residual_final",
        "norm_U",
        "norm_y",
        "norm_W",
        "scale_rate_U",
        "scale_rate_y",
        "direction_drift_U",
        "direction_drift_y",
        "norm_W_change",
        "split_time",
    )
    numbers = {k: [{kk: r[kk] for kk in keep if kk in r} for r in v] for k, v in runs.items()}
    plain_err = max(c.error for c in checks if "phi_eff" in c.what)
    stage = "; ".join(
        f"f={r['frustration']:g}: accuracy {fmt_value(r['peak_accuracy'])} at t = "
        f"{r['peak_time']:.3g} -> {fmt_value(r['final_accuracy'])} at t = {r['t'][-1]:g} while "
        f"the loss falls {fmt_error(r['loss_at_peak'])} -> {fmt_error(r['final_loss'])}"
        for r in two_stage
    )
    body = [
        "Linear teacher `w*` in `D = 100`, `P = 400` samples, margin `m = 2`, noise `σ = 1`, "
        "linear student `U` (`p = 5`) with label embeddings `y±`; a fraction `f` of each "
        "class sits at the opposite peak (no classifier beats `1 − f` on the population; on "
        "the 400 training samples in `D = 100` a little more is possible). Gradient flow with "
        f"Tsit5 (pure relative error control) to `t = {cfg.ts_t1:g}` (stop-gradient runs to "
        f"`t = {cfg.ts_sg_t1:g}`, long enough to reach their fixed point).",
        f"- **Plain student**: MinL2 decays at the rate `φ_eff(f)`, fitted from the late "
        f"slope and equal to the smallest relevant Hessian eigenvalue (closed form) to "
        f"{fmt_error(plain_err)} relative at worst; the integrated MinL2(t) matches the exact "
        "linear solution. The loss shows the two phases: its log-slope starts at the "
        "Hessian-weighted fast rate and ends at `2 λ_min`, both checked against the closed form "
        "(table below: fast/slow ratio 7 to 32).",
        "- **Amplification** is defined here as `φ_eff(f) / φ_eff(0)`: the collapse rate with "
        "frustration relative to the noise-only rate (the within-class noise alone already "
        "makes the plain student collapse). The increment per unit frustration "
        "`(φ_eff(f) − φ_eff(0)) / f` is below 1 (the rate grows less than `f` itself).",
        _table(
            "f | φ_eff fit | Hessian eigenvalue λ_H | λ_H(f)/λ_H(0) | (λ_H(f) − λ_H(0))/f "
            "| loss fast rate (t = 0) | loss slow rate 2λ_min | fast/slow",
            amp_rows,
        ),
        "- **Projection without stop-gradient**: MinL2 → 0 while the loss falls at every save "
        "(a gradient flow). The collapse rescales `U` and `y` together (one late rate, checked) "
        "while the predictor `W` converges to a fixed, finite matrix; the shapes `U/|U|`, "
        "`y/|y|` still drift slowly between `t1/2` and `t1` (table below), so the late accuracy "
        "moves by less than a point. **Two-stage pattern** (the paper's opening observation): "
        + (stage or "not in the frustrations run here")
        + ".",
        "- **With vs without stop-gradient**: the MinL2 curves agree early and part at the time "
        "below (first `t` with `|ln(ratio)| > 0.1`), during the fast phase; by `t1` they differ "
        "by tens of orders of magnitude.",
        _table(
            "f | split time | MinL2/MinL2(t_min) there (no stop-grad) | shape drift U/‖U‖ "
            "(t1/2 → t1) | shape drift y/‖y‖ | ‖W(t1)‖ | stop-grad ‖F(t1)‖ | stop-grad max "
            "loss rise",
            split_rows,
        ),
        "- **With stop-gradient** the run ends on a fixed point (`|F|` checked at `t1`), "
        "MinL2 stays finite and the accuracy there stays within 0.05 of `1 − f` (checked for "
        f"`f ≤ {TS_CLAIM_MAX_F:g}`). It is not a gradient flow: its loss can rise (last column "
        "above). At `f = 0.2`, seed 0, the accuracy peaks at 0.805 and settles at 0.7525 on the "
        "fixed point (MinL2 0.530): the same values at rtol 1e-6, 1e-10, 1e-12 and at "
        "`t1` = 400, 2000, 5000 (`|F(t1)|` 1e-5, 3e-11, 1e-11), so this is the approach to a "
        "fixed point, not a late collapse nor an integration artefact; seeds 1–4 settle at "
        "0.805, 0.835, 0.7975, 0.825 (MinL2 0.93, 0.66, 0.71, 1.17) (measured separately at "
        "`t1 = 2000`, not rerun here). It is below the plain student's plateau (0.7675) for "
        "seed 0." + _beyond_text(beyond),
        _table(
            "variant | f | seed | φ_eff fit | Hessian eigenvalue | final MinL2 | final accuracy "
            "| peak accuracy | 1 − f | final loss | max loss rise",
            rows,
        ),
        _img(fig1, "teacher-student, plain student"),
        "(a) MinL2(t) for each `f`; (b) `ln MinL2` against `t λ_H`, time in units of the "
        "closed-form Hessian rate (not fitted): late-time lines parallel to the dotted slope −1 "
        "show that `λ_H` is the collapse rate; (c) nearest-label training accuracy (scale-free) "
        "with `1 − f` dashed and the peak dotted; (d) the loss, dotted at the accuracy peak.",
        _img(fig2, "teacher-student with a predictor, with and without stop-gradient"),
        "Same panels for the projection variant, except (b): with no closed-form rate it shows "
        "the norms `|U|` (solid), `|y|` (dashed), `|W|` (dotted). Without stop-gradient MinL2, "
        "`|U|`, `|y|` and the loss collapse while `|W|` levels off, and at `f = 0.2` the "
        "accuracy falls after its peak; with stop-gradient everything settles on a fixed point.",
    ]
    return Section(S, body, [fig1, fig2], checks, numbers)


# --- 5. diagnostics --------------------------------------------------------------------------


@eqx.filter_jit
def _integrated_diagnostics(z, data, ts):
    """``trajectory_diagnostics`` of the clean samples (the shared ones have no class) along
    the diffrax-integrated path (explicit ``Tsit5``, `rtol = 1e-12`), and the integrated sample
    embeddings; one compiled function (eagerly the vmapped ops compile one by one)."""
    import diffrax

    from . import embedding_loss, simulate, vector_field
    from .diagnostics import trajectory_diagnostics

    sol = simulate(vector_field(embedding_loss), z, data.matrix(), ts=ts, solver=diffrax.Tsit5())
    out = trajectory_diagnostics(sol.ys, data, include_shared=False)
    return out, sol.ys.x, sol.result._value


def _beyond_text(runs: list[dict]) -> str:
    if not runs:
        return ""
    parts = [
        f"f={r['frustration']:g} seed {r['seed']}: MinL2 {fmt_value(r['final_min_l2'])}, "
        f"accuracy {fmt_value(r['final_accuracy'])} (1 − f = {fmt_value(r['accuracy_reference'])})"
        for r in runs
    ]
    return (
        " Beyond that range this run also measured, with stop-gradient at `t = "
        f"{runs[0]['t'][-1]:g}`: " + "; ".join(parts) + " (see the table; not a verification)."
    )


def _diagnostics(cfg: ReproduceConfig, out: Path, log, ctx) -> Section:
    from . import (
        diagnose,
        init_embedding_state,
        log_times,
        standard_data,
    )
    from .metrics import fit_slow_rate

    S = "diagnostics"
    K, n, M, d = cfg.classes, cfg.per_class, cfg.shared, cfg.diagnostics_dim
    ts = log_times(cfg.t_min, cfg.diagnostics_t1, cfg.diagnostics_points)
    t = np.asarray(ts)
    key = jax.random.PRNGKey(cfg.seed)
    traj, means_err, failed = {}, 0.0, 0
    for m in (M, 0):
        log(f"  diagnostics along the diffrax-integrated embedding path, M={m}, d={d} ...")
        # M = 0 with the same rows (shared ones inactive) and start: one compiled function
        data = standard_data(K, n, m, max_shared=M)
        z = init_embedding_state(key, data.n_samples, K, d)
        out_m, xs, code = _integrated_diagnostics(z, data, ts)
        traj[m] = {k: np.asarray(v) for k, v in out_m.items()}
        failed += int(np.asarray(code) != 0)
        # independent numpy reference: class means of the clean samples, their MinL2
        xc = np.asarray(xs)[:, : K * n].reshape(t.size, K, n, d).mean(axis=2)
        ref = _np_min_l2(xc)
        means_err = max(means_err, float(np.max(np.abs(traj[m]["min_l2_class_means"] / ref - 1))))
    lp = _closed_lambda(n, M)[0]
    ml_means = traj[M]["min_l2_class_means"]
    rate = fit_slow_rate(t, ml_means)
    what = (
        f"MinL2 of the class means (diagnostics, diffrax Tsit5 path) decays at lambda+ "
        f"(M = {M}): fitted slope"
    )
    c_rate = _num(
        S,
        what,
        rate,
        lp,
        5e-10,  # measured 4.9e-11
        basis="closed form lambda+ = ½[−(n+M+1) + √((n+M+1)² − 4M)], written out; the "
        "trajectory is integrated by diffrax (no sector solution)",
    )
    verdict_basis = (
        "claim: frustration collapses the classes, M = 0 does not; verdict rule applied to "
        "the diffrax-integrated sample embeddings"
    )
    checks = [
        _outcome(
            S,
            f"verdict at t = {t[-1]:g}, M = {M}: collapsed",
            bool(traj[M]["collapsed"][-1]),
            True,
            basis=verdict_basis,
        ),
        _outcome(
            S,
            f"verdict at t = {t[-1]:g}, M = 0: not collapsed",
            bool(traj[0]["collapsed"][-1]),
            False,
            basis=verdict_basis,
        ),
        _outcome(
            S,
            f"verdict at t = {t[0]:g} (start), M = {M}: not collapsed",
            bool(traj[M]["collapsed"][0]),
            False,
            basis=verdict_basis,
        ),
        _num(
            S,
            "MinL2 of the class means: diagnostics vs numpy (class means of the same integrated "
            "states), max relative error over both runs and all times",
            means_err,
            0.0,
            1e-9,  # measured 4.2e-11 (round-off of means ~1e-7 apart at t1)
            "abs",
            basis="class means and their smallest pairwise distance recomputed in numpy from "
            "the integrated sample embeddings and the labels",
        ),
        c_rate,
        _num(
            S,
            "M = 0: MinL2 of the class means at t1 / at t_min stays >= 0.1",
            traj[0]["min_l2_class_means"][-1] / traj[0]["min_l2_class_means"][0],
            0.1,
            0.0,
            "bound_below",
            basis="claim: without shared samples the classes stay apart (diffrax path)",
        ),
        _num(
            S,
            "diagnostics paths: failed integrations (diffrax result codes)",
            failed,
            0,
            0.0,
            "abs",
            basis="diffrax result code of every integration (0 = successful)",
        ),
    ]
    proj = {}
    if "projection_final_x" in ctx:
        for k, x in ctx["projection_final_x"].items():
            r = diagnose(x[: cfg.classes * cfg.per_class], np.repeat(np.arange(K), cfg.per_class))
            proj[k] = {kk: np.asarray(v) for kk, v in r.items()}
        checks.append(
            _outcome(
                S,
                "projection model, final x without stop-gradient: collapsed",
                bool(proj["conservative"]["collapsed"]),
                True,
                basis="claim P1; verdict rule applied to the projection run's final sample "
                "embeddings",
            )
        )
    keys = (
        "rankme",
        "participation_ratio",
        "n_components_95",
        "std_l2_normalized",
        "min_l2_class_means",
        "nc1",
        "nc2",
        "ncm_accuracy",
        "collapsed",
        "alpha_req",
    )
    numbers = {
        "dim": d,
        "t": t,
        "trajectories": {f"M={m}": {k: traj[m][k] for k in keys} for m in traj},
        "final_singular_values": {f"M={m}": traj[m]["singular_values"][-1] for m in traj},
        "min_l2_class_means_rate_fit": rate,
        "min_l2_class_means_numpy_rel_error": means_err,
        "lambda_plus": lp,
        "projection_final": {k: {kk: v[kk] for kk in keys if kk in v} for k, v in proj.items()},
    }
    from .plots import save_figure

    fig = save_figure(_fig_diagnostics(numbers, M), out / "diagnostics.png")

    def row(label, r, i=-1):
        g = (lambda k: r[k][i]) if i is not None else (lambda k: r[k])
        return (
            f"| {label} | {fmt_value(g('rankme'))} | {fmt_value(g('participation_ratio'))} | "
            f"{fmt_value(g('n_components_95'))} | {fmt_value(g('std_l2_normalized'))} | "
            f"{fmt_error(g('min_l2_class_means'))} | {fmt_value(g('nc1'))} | "
            f"{fmt_value(g('ncm_accuracy'))} | {fmt_value(bool(g('collapsed')))} |"
        )

    rows = [
        row(f"embedding, M={M}, t={t[0]:g}", traj[M], 0),
        row(f"embedding, M={M}, t={t[-1]:g}", traj[M]),
        row(f"embedding, M=0, t={t[0]:g}", traj[0], 0),
        row(f"embedding, M=0, t={t[-1]:g}", traj[0]),
    ]
    for k, r in proj.items():
        rows.append(row(f"projection ({k.replace('_', '-')}), final x", r, None))
    body = [
        f"`trajectory_diagnostics` of the clean-sample embeddings `x_i(t)` of the "
        f"embedding model (`K={K}, n={n}, d={d}`, seed {cfg.seed}, integrated by diffrax "
        f"Tsit5 at `rtol = 1e-12`), with and "
        f"without frustration; `diagnose` of the final sample embeddings of the projection "
        f"runs of section 2 where they exist. Verdict rule: "
        f"`{_collapse_rule()}`.",
        f"- With `M = {M}` the class means merge: their MinL2 decays at the fitted rate "
        f"{fmt_value(rate)} against `lambda+ = {fmt_value(lp)}` (relative error "
        f"{fmt_error(c_rate.error)}), the verdict turns to collapsed; with `M = 0` the "
        "classes stay apart.",
        _table(
            "embeddings | RankMe | participation ratio | components for 95% | std of "
            "L2-normalised | MinL2 of class means | NC1 | nearest-class-mean accuracy | collapsed",
            rows,
        ),
        _img(fig, "collapse diagnostics along the embedding-model trajectories"),
        "(a) MinL2 between class means, with the `exp(λ+ t)` prediction dashed; (b) RankMe "
        "(effective dimension of the sample embeddings): it falls to about `K − 1 = 2` in both "
        "runs, because RankMe is scale-free and sees the class geometry (the fluctuations "
        "decay), not its size; (c) the std of the L2-normalised embeddings, the measure that "
        "separates the runs: with frustration the directions themselves merge; (d) "
        "singular-value spectra of the centred embeddings at the final time.",
    ]
    return Section(S, body, [fig], checks, numbers)


def _collapse_rule() -> str:
    from .diagnostics import COLLAPSE_RULE

    return COLLAPSE_RULE


def _fig_diagnostics(nb: dict, M: int):
    """Figure: collapse diagnostics along the two embedding-model trajectories."""
    from .plots import new_figure

    t = np.asarray(nb["t"])
    tr = nb["trajectories"]
    fig, axes = new_figure(2, 2, figsize=(13, 9))
    colors = {f"M={M}": "C0", "M=0": "C1"}
    for k, r in tr.items():
        c = colors[k]
        axes[0, 0].loglog(t, r["min_l2_class_means"], "-", color=c, lw=2, label=k)
        axes[0, 1].semilogx(t, r["rankme"], "-", color=c, lw=2, label=k)
        std = np.asarray(r["std_l2_normalized"], dtype=np.float64)
        axes[1, 0].loglog(t, np.where(std > 0, std, np.nan), "-", color=c, lw=2, label=k)
        sv = np.asarray(nb["final_singular_values"][k])
        axes[1, 1].semilogy(
            np.arange(1, sv.size + 1),
            np.where(sv > 0, sv, np.nan),
            "o-",
            color=c,
            label=f"{k}, t = {t[-1]:g}",
        )
    r = tr[f"M={M}"]
    m0 = np.asarray(r["min_l2_class_means"])
    late = t >= t[-1] / 10
    c = np.log(m0[late][0]) - nb["lambda_plus"] * t[late][0]
    axes[0, 0].loglog(
        t[late],
        np.exp(c + nb["lambda_plus"] * t[late]),
        "k--",
        lw=1,
        label=rf"$\propto e^{{\lambda_+ t}}$, $\lambda_+$={nb['lambda_plus']:.4f}",
    )
    axes[0, 0].set_ylabel("MinL2 between class means (embedding units)")
    axes[0, 0].set_title("(a) class separation")
    axes[0, 1].set_ylabel("RankMe (effective dimension, 0 … d)")
    axes[0, 1].set_title("(b) RankMe of the sample embeddings")
    thr = 0.01 / math.sqrt(nb["dim"])
    axes[1, 0].axhline(
        thr, color="k", ls=":", lw=1, label=f"collapse threshold 0.01/√d = {thr:.3g}"
    )
    axes[1, 0].set_ylabel("std of L2-normalised embeddings, mean over dims")
    axes[1, 0].set_title("(c) spread of the embedding directions")
    axes[1, 1].set_xlabel("rank k")
    axes[1, 1].xaxis.get_major_locator().set_params(integer=True)
    axes[1, 1].set_ylabel("singular value σ_k of centred embeddings (embedding units)")
    axes[1, 1].set_title("(d) final singular-value spectrum (zeros not drawn)")
    for ax in (axes[0, 0], axes[0, 1], axes[1, 0]):
        ax.set_xlabel(_TIME_LABEL)
    for ax in axes.ravel():
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Collapse diagnostics of the sample embeddings, embedding model, d={nb['dim']}")
    fig.tight_layout()
    return fig


# --- driver ---------------------------------------------------------------------------------

_RUNNERS: dict[str, Callable] = {
    "embedding": _embedding,
    "projection": _projection,
    "sweep": _sweep,
    "teacher_student": _teacher_student,
    "diagnostics": _diagnostics,
}


def reproduce(
    out_dir="results",
    *,
    quick: bool = False,
    config: ReproduceConfig | None = None,
    sections: Sequence[str] = SECTIONS,
    progress: bool = False,
    command: str | None = None,
) -> dict:
    """Run the sections, write the figures, ``report.md`` and ``numbers.json`` to ``out_dir``.

    Args:
        out_dir: output folder (created if needed).
        quick: use [`QUICK`][collapse_jax.reproduce.QUICK] (a few minutes on a 2-core CPU) instead
            of [`FULL`][collapse_jax.reproduce.FULL].
        config: explicit sizes (overrides ``quick``).
        sections: which of [`SECTIONS`][collapse_jax.reproduce.SECTIONS] to run (report order is
            kept).
        progress: progress lines on stderr.
        command: the command line recorded in the report.

    Returns:
        ``{"report", "figures", "seconds", "numbers", "checks", "passed", "failed",
        "errors"}``: paths of the report and of every figure, wall seconds, the numbers file,
        every verification (dicts), counts of passed and failed verifications, and the
        sections that raised (name -> one-line message).
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"sections must be a non-empty subset of {SECTIONS}, got {sections!r}")
    if not jax.config.jax_enable_x64:
        raise ValueError("reproduce needs float64: jax.config.update('jax_enable_x64', True)")
    cfg = config if config is not None else (QUICK if quick else FULL)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        if progress:
            print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    ctx: dict = {}
    done, errors, seconds = [], {}, {}
    order = [s for s in SECTIONS if s in sections]
    for k, name in enumerate(order, 1):
        log(f"[{k}/{len(order)}] {_TITLES[name]}")
        t0 = time.perf_counter()
        try:
            done.append(_RUNNERS[name](cfg, out, log, ctx))
        except Exception as err:  # a failed section is reported, the others still run
            msg = f"{type(err).__name__}: {err}".splitlines()[0]
            errors[name] = msg
            log(f"  section {name} FAILED: {msg}")
            done.append(
                Section(
                    name,
                    [
                        f"**This section failed:** `{msg}`",
                        "```",
                        traceback.format_exc().rstrip(),
                        "```",
                    ],
                    [],
                    [],
                    {},
                )
            )
        seconds[name] = time.perf_counter() - t0
        log(f"  {seconds[name]:.1f} s")
    total = time.perf_counter() - start
    checks = [c for s in done for c in s.checks]
    figures = [f for s in done for f in s.figures]
    env = _environment()
    numbers = {
        "mode": "quick" if (config is None and quick) else ("full" if config is None else "custom"),
        "config": cfg._asdict(),
        "sections": {s.name: s.numbers for s in done},
        "checks": [c.as_dict() for c in checks],
        "seconds": total,
        "section_seconds": seconds,
        "errors": errors,
        "environment": env,
        "figures": [Path(f).name for f in figures],
    }
    numbers_path = out / "numbers.json"
    numbers_path.write_text(json.dumps(_plain(numbers), indent=1, allow_nan=False) + "\n")
    report_path = out / "report.md"
    report_path.write_text(
        _report(done, checks, numbers, command or _default_command(quick, config))
    )
    log(f"report: {report_path}")
    return {
        "report": str(report_path),
        "figures": figures,
        "seconds": total,
        "numbers": str(numbers_path),
        "checks": [c.as_dict() for c in checks],
        "passed": sum(c.passed for c in checks),
        "failed": sum(not c.passed for c in checks),
        "errors": errors,
    }


def _default_command(quick, config) -> str:
    if config is not None:
        return "collapse_jax.reproduce.reproduce(config=...)"
    return "collapse-jax reproduce" + (" --quick" if quick else "")


def _environment() -> dict:
    from .sweep import environment

    env = environment()
    env["backend"] = jax.default_backend()
    env["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS")
    return env


def _check_row(k: int, c: Check) -> str:
    status = "pass" if c.passed else "**FAIL**"
    what = c.what.replace("|", "\\|")  # a pipe would end the table cell
    basis = (c.basis or "—").replace("|", "\\|")
    if c.kind == "outcome":
        return f"| {k} | {what} | {c.measured} | {c.reference} | {basis} | — | — | {status} |"
    ref = {"bound": "≤ ", "bound_below": "≥ "}.get(c.kind, "") + fmt_value(c.reference)
    kind = {"rel": "relative", "abs": "absolute", "bound": "excess", "bound_below": "shortfall"}
    return (
        f"| {k} | {what} | {fmt_value(c.measured)} | {ref} | {basis} | {fmt_error(c.error)} "
        f"({kind[c.kind]}) | {fmt_error(c.tolerance)} | {status} |"
    )


def _report(sections: list[Section], checks: list[Check], numbers: dict, command: str) -> str:
    env = numbers["environment"]
    passed = sum(c.passed for c in checks)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Representation collapse in the minimal model: reproduction report",
        "",
        "Generated by `collapse_jax` for the paper *A Minimal Model of Representation Collapse: "
        "Frustration, Stop-Gradient, and Dynamics* (Yao, Li, Liu, arXiv 2604.09979), following "
        "the formalisation in `docs/theory.md`. Every number below was computed in this run "
        "by the library functions the test suite checks; `numbers.json` holds them all.",
        "",
        f"- command: `{command}` ({numbers['mode']} mode), {when}",
        f"- wall time: {numbers['seconds']:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in numbers["section_seconds"].items())
        + ")",
        f"- device: {env['backend']} — {', '.join(env['devices'])}; {env['cpu_count']} CPU "
        f"cores, {env['processor']}; float64 = {env['x64']}",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f", python {env['python']}",
        "",
        "## Verifications",
        "",
        f"**{passed} of {len(checks)} passed.**"
        + (f" Sections that failed to run: {numbers['errors']}." if numbers["errors"] else ""),
        "",
        _table(
            "# | verification | measured | reference | reference basis (why independent) "
            "| error | tolerance | status",
            [_check_row(k, c) for k, c in enumerate(checks, 1)],
        ),
        "",
    ]
    figure = 0
    for k, s in enumerate(sections, 1):
        lines += [f"## {k}. {_TITLES[s.name]}", ""]
        for para in s.body:
            if _FIG in para:
                figure += 1
                para = para.replace(_FIG, f"Figure {figure}")
            lines += [para, ""]
    lines += [
        "## Files",
        "",
        "- `numbers.json`: configuration, every number and verification of this report, "
        "environment.",
        *[f"- `{f}`" for f in numbers["figures"]],
        "",
    ]
    return "\n".join(lines)
