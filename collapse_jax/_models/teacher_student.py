"""The linear teacher–student model (docs/theory.md §4): metrics, closed forms and runs.

Data ([`teacher_student_data`][collapse_jax.teacher_student_data]) -> loss
(`teacher_student_loss`) -> field
([`vector_field`][collapse_jax.vector_field]) -> diffrax
([`simulate`][collapse_jax.simulate]) -> metrics
([`teacher_student_metrics`][collapse_jax.teacher_student_metrics])
and, on the host, the
fitted slow rate `phi_eff(f)` and the plain model's closed forms: its Hessian
([`teacher_student_hessian`][collapse_jax.teacher_student_hessian]), the slow rate (smallest
relevant Hessian eigenvalue) and the exact MinL2 path.

[`teacher_student_member`][collapse_jax.teacher_student_member] is the single,
traceable case (frustration may be traced, so `jit(vmap(...))` over `f` or over keys works);
[`run_teacher_student`][collapse_jax.run_teacher_student] adds the host summary the
CLI reports.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._data import init_teacher_student_state, teacher_student_data
from .._fields import vector_field
from .._integrate import log_times, simulate
from .._losses import teacher_student_loss, teacher_student_projection_loss
from .._metrics import ROUNDOFF_FACTOR, fit_slow_rate
from .._types import Array, Float
from . import Model, register

__all__ = [
    "binary_accuracy_scale_free",
    "teacher_student_metrics",
    "teacher_student_hessian",
    "teacher_student_slow_rate",
    "teacher_student_exact_min_l2",
    "TeacherStudentConfig",
    "teacher_student_problem",
    "teacher_student_member",
    "run_teacher_student",
    "accuracy_summary",
    "scale_summary",
    "TS_RTOL",
    "TS_ATOL",
    "TS_FIT_FLOOR",
]


# --- Metrics ---------------------------------------------------------------------------------


def binary_accuracy_scale_free(state, data) -> Float[Array, ""]:
    """Nearest-label training accuracy of the teacher-student model, scale-free (docs/theory.md §4).

    Sample `i` (label `c_i = ±1`) is correct when its prediction `yhat_i = U xi_i` (plain) or
    `W U xi_i` (projection) is strictly nearer to `y_{c_i}` than to the other label. That is
    `c_i (yhat_i - ybar) . (y_+ - y_-) > 0` (ties count as wrong), a test invariant under
    `(U, y) -> a (U, y)`; it is evaluated after dividing `U` and `y` by their largest entry, so
    no product underflows while the state itself is representable (a float64 run that squared
    unnormalised distances fell to a tie, accuracy 0.5, docs/theory.md §4). NaN when the state is
    zero or not finite, or when the relative separation `MinL2 / scale` is at the round-off floor
    ([`ROUNDOFF_FACTOR`][collapse_jax.ROUNDOFF_FACTOR] `* eps`), where the sign is an
    artefact.
    """
    U, y = state.U, state.y
    scale = jnp.maximum(jnp.max(jnp.abs(U)), jnp.max(jnp.abs(y)))
    ok = jnp.isfinite(scale) & (scale > 0)
    safe = jnp.where(ok, scale, 1.0)
    U, y = U / safe, y / safe
    A = U if state.W is None else state.W @ U
    pred = data.xi @ A.T  # (P, p)
    ybar = 0.5 * (y[0] + y[1])
    delta = y[0] - y[1]
    margin = data.labels * ((pred - ybar) @ delta)
    acc = jnp.mean((margin > 0).astype(pred.dtype))
    eps = jnp.finfo(pred.dtype).eps
    rel = jnp.linalg.norm(delta) / jnp.maximum(1.0, jnp.max(jnp.abs(y)))
    ok = ok & (rel > ROUNDOFF_FACTOR * eps)
    return jnp.where(ok, acc, jnp.nan)


def teacher_student_metrics(state, data, loss) -> dict[str, Float[Array, ""]]:
    """MinL2 `= |y_+ - y_-|`, scale-free accuracy and loss of one teacher-student state.

    Args:
        state: [`TeacherStudentState`][collapse_jax.TeacherStudentState].
        data: [`TeacherStudentData`][collapse_jax.TeacherStudentData].
        loss: the model's ``loss(state, held, moments)``; evaluated at ``held = state``.

    `vmap` over a leading time axis of ``state`` for a trajectory (docs/theory.md §4).
    """
    return {
        "min_l2": jnp.linalg.norm(state.y[0] - state.y[1]),
        "accuracy": binary_accuracy_scale_free(state, data),
        "loss": loss(state, state, data.moments()),
    }


# --- Closed forms of the plain variant -------------------------------------------------------


def teacher_student_hessian(moments) -> np.ndarray:
    """Row Hessian of the plain teacher-student loss, host float64 `(D + 2, D + 2)`.

    The plain loss `(1/P) sum_i 1/2 |U xi_i - y_{c_i}|^2` couples only the `a`-th row of `U`
    with the `a`-th components of `y_±`, the same way for every `a`, so its full Hessian is
    `H_row (x) I_p` with, in the order `(U_a, y_+a, y_-a)`,
    `H_row = [[S, -mu_+, -mu_-], [-mu_+^T, pi_+, 0], [-mu_-^T, 0, pi_-]]`
    (moments of [`TeacherStudentMoments`][collapse_jax.TeacherStudentMoments]).
    """
    S, mu, pi = (np.asarray(a, dtype=np.float64) for a in moments)
    D = S.shape[0]
    H = np.zeros((D + 2, D + 2))
    H[:D, :D] = S
    H[:D, D:] = -mu.T
    H[D:, :D] = -mu
    H[D:, D:] = np.diag(pi)
    return H


def teacher_student_slow_rate(moments, tol: float = 1e-8) -> float:
    """Closed-form slow rate of `MinL2(t)` in the plain model (docs/theory.md §4).

    The field is `-H z`, so every mode decays as `exp(-lambda_k t)`, and `MinL2 = |y_+ - y_-|`
    decays at late times at the smallest eigenvalue `lambda_k` of `H_row` whose eigenvector has
    a separation component `|v_{y+} - v_{y-}| > tol` (from a generic start).
    """
    lam, Q = np.linalg.eigh(teacher_student_hessian(moments))
    sep = np.abs(Q[-2] - Q[-1])
    return float(lam[np.argmax(sep > tol)])


def teacher_student_exact_min_l2(state, moments, ts) -> np.ndarray:
    """Exact `MinL2(t)` of the plain model: `V(t) = Q exp(-Lambda t) Q^T V(0)`, host float64.

    `V` stacks, per student row `a`, `(U_a, y_+a, y_-a)` as a column (`(D + 2, p)`).
    """
    lam, Q = np.linalg.eigh(teacher_student_hessian(moments))
    V0 = np.concatenate([np.asarray(state.U, np.float64).T, np.asarray(state.y, np.float64)], 0)
    coef = Q.T @ V0  # (D + 2, p)
    sep = Q[-2] - Q[-1]  # separation component of each mode
    ts = np.asarray(ts, dtype=np.float64)
    out = np.exp(-np.outer(ts, lam)) @ (sep[:, None] * coef)  # (T, p) = y_+ - y_-
    return np.linalg.norm(out, axis=-1)


# --- Runs ------------------------------------------------------------------------------------


Variant = Literal["plain", "projection"]

#: Default tolerances of the teacher-student runs. Pure relative error control (``atol = 0``):
#: the plain state decays as a whole, so an absolute tolerance would stop controlling the
#: error once the state falls below it, and the late accuracy would be noise (seen with
#: ``atol = 1e-14``: accuracy 0.115 instead of 0.885 at f = 0.1, t = 400). With these values
#: MinL2 matches the closed form to 4e-10 relative down to 1e-38 of its start (seed 0, t1 = 400).
TS_RTOL = 1e-10
TS_ATOL = 0.0

#: Points of MinL2 below this fraction of its maximum are left out of the slow-rate fit. The
#: integration is accurate relative to the state, so the whole late window can be used; a
#: window that stops at 1e-8 (the embedding default) is still contaminated by the next Hessian
#: mode at f = 0.2 (fit 1.4% above the eigenvalue, against 0.12% with this floor, t1 = 400).
TS_FIT_FLOOR = 1e-250


class TeacherStudentConfig(NamedTuple):
    """Static configuration (docs/theory.md §4 defaults)."""

    variant: Variant = "plain"
    stop_gradient: bool = False
    dim: int = 100
    n_samples: int = 400
    student_dim: int = 5
    margin: float = 2.0
    noise: float = 1.0

    def loss(self):
        return teacher_student_loss if self.variant == "plain" else teacher_student_projection_loss

    def check(self) -> TeacherStudentConfig:
        if self.variant not in ("plain", "projection"):
            raise ValueError(f"variant must be 'plain' or 'projection', got {self.variant!r}")
        if self.stop_gradient and self.variant == "plain":
            raise ValueError(
                "stop_gradient needs variant='projection' (the plain loss has no held copy)"
            )
        return self


#: The docs/theory.md §4 defaults, plain variant.
DEFAULT_CONFIG = TeacherStudentConfig()


def teacher_student_problem(key, frustration, config: TeacherStudentConfig = DEFAULT_CONFIG):
    """Data and initial state from one key: ``(data, state0)``.

    The key is split into a data key and an initial-state key, so the same seed gives the same
    inputs and start for every `f` and variant.
    """
    config.check()
    kd, ks = jax.random.split(key)
    data = teacher_student_data(
        kd,
        frustration,
        dim=config.dim,
        n_samples=config.n_samples,
        margin=config.margin,
        noise=config.noise,
    )
    state0 = init_teacher_student_state(
        ks, config.dim, config.student_dim, projection=config.variant == "projection"
    )
    return data, state0


def teacher_student_member(
    frustration,
    key,
    ts,
    config: TeacherStudentConfig = DEFAULT_CONFIG,
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = TS_RTOL,
    atol: float = TS_ATOL,
    max_steps: int = 100_000,
    progress_meter: diffrax.AbstractProgressMeter | None = None,
) -> dict:
    """Integrate one teacher-student run and return its metrics at ``ts`` (traceable).

    Returns a dict of arrays: ``min_l2``, ``accuracy``, ``loss`` (one per save time),
    ``states`` (the saved states), ``result`` (diffrax code), ``steps``,
    ``frustration_realised``, ``final_state``, and ``residual_initial`` / ``residual_final``:
    the norm of the vector field `|F|` at the start and at the last save time (a fixed point
    has `|F| = 0`).
    The default solver is ``Tsit5`` (explicit): the spectrum spans about two decades here
    (plain Hessian 0.06 ... 5.5 at the defaults), so the problem is not stiff enough for an
    implicit solver to pay for its Newton solves (measured in the tests/README).
    """
    data, state0 = teacher_student_problem(key, frustration, config)
    loss = config.loss()
    field = vector_field(loss, stop_gradient=config.stop_gradient)
    sol = simulate(
        field,
        state0,
        data.moments(),
        ts=ts,
        solver=diffrax.Tsit5() if solver is None else solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        progress_meter=progress_meter,
    )
    metrics = jax.vmap(lambda s: teacher_student_metrics(s, data, loss))(sol.ys)
    final = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)

    def field_norm(state):
        leaves = jax.tree_util.tree_leaves(field(0.0, state, data.moments()))
        return jnp.sqrt(sum(jnp.sum(a * a) for a in leaves))

    return {
        **metrics,
        "states": sol.ys,
        "residual_initial": field_norm(state0),
        "residual_final": field_norm(final),
        "result": sol.result._value,
        "steps": sol.stats["num_steps"],
        "frustration_realised": data.frustration_realised,
        "final_state": final,
    }


def accuracy_summary(ts, accuracy, drop: float = 0.02) -> dict:
    """Peak accuracy, when it is reached, and when accuracy first falls `drop` below it.

    NaN entries (round-off floor) are skipped; ``accuracy_fall_time`` is NaN if it never falls.
    """
    ts = np.asarray(ts, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    if not np.any(np.isfinite(acc)):
        return {
            "peak_accuracy": float("nan"),
            "peak_time": float("nan"),
            "accuracy_fall_time": float("nan"),
        }
    i = int(np.nanargmax(acc))
    later = np.flatnonzero((ts > ts[i]) & np.isfinite(acc) & (acc < acc[i] - drop))
    return {
        "peak_accuracy": float(acc[i]),
        "peak_time": float(ts[i]),
        "accuracy_fall_time": float(ts[later[0]]) if later.size else float("nan"),
    }


def _max_relative_rise(values) -> float:
    """Largest `(v[k+1] - v[k]) / |v[k]|` over the points with `v[k] != 0` (NaN if none)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v[:-1]) & np.isfinite(v[1:]) & (v[:-1] != 0)
    return float(np.max(np.diff(v)[ok] / np.abs(v[:-1][ok]))) if ok.any() else float("nan")


def scale_summary(ts, states) -> dict:
    """Scale and shape of a saved trajectory (host float64).

    ``norm_U``, ``norm_y``, ``norm_W`` (Frobenius norms per save time; ``norm_W`` NaN without a
    predictor); ``scale_rate_U`` / ``scale_rate_y``: late exponential decay rates of
    ``norm_U`` / ``norm_y`` ([`fit_slow_rate`][collapse_jax.fit_slow_rate], NaN unless the
    norm falls below 1e-2 of its maximum); ``direction_drift_U`` / ``direction_drift_y``: how far
    the shapes `U/|U|` and `y/|y|` move between the save time nearest `t1/2` and `t1` (0: the state
    only rescales); ``norm_W_change``: relative change of ``norm_W`` over the same interval.
    """
    ts = np.asarray(ts, dtype=np.float64)
    U, y = np.asarray(states.U, np.float64), np.asarray(states.y, np.float64)
    nU, ny = np.linalg.norm(U, axis=(-2, -1)), np.linalg.norm(y, axis=(-2, -1))
    if states.W is None:
        nW = np.full_like(nU, np.nan)
    else:
        nW = np.linalg.norm(np.asarray(states.W, np.float64), axis=(-2, -1))
    half = int(np.argmin(np.abs(ts - ts[-1] / 2)))

    def rate(n):
        if not (n[-1] < 1e-2 * n.max()):
            return float("nan")
        return -fit_slow_rate(ts, n, floor=TS_FIT_FLOOR * n.max())

    def drift(a, n):
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.linalg.norm(a[-1] / n[-1] - a[half] / n[half]))

    return {
        "norm_U": nU,
        "norm_y": ny,
        "norm_W": nW,
        "scale_rate_U": rate(nU),
        "scale_rate_y": rate(ny),
        "direction_drift_U": drift(U, nU),
        "direction_drift_y": drift(y, ny),
        "norm_W_change": float(abs(nW[-1] / nW[half] - 1)),
    }


@functools.lru_cache(maxsize=16)
def _jitted_member(config, solver, progress, solve_items):
    """One compiled [`teacher_student_member`][collapse_jax.teacher_student_member]
    per configuration (reused across calls)."""
    meter = diffrax.TqdmProgressMeter() if progress else None

    def member(f, key, ts):
        return teacher_student_member(
            f, key, ts, config, solver=solver, progress_meter=meter, **dict(solve_items)
        )

    return jax.jit(member)


def run_teacher_student(
    frustration: float = 0.0,
    seed: int = 0,
    config: TeacherStudentConfig = DEFAULT_CONFIG,
    *,
    t1: float = 400.0,
    t_min: float = 1e-2,
    points: int = 100,
    progress: bool = False,
    **solve_kwargs,
) -> dict:
    """One run with the host summary that ``collapse-jax teacher-student`` reports.

    Keys: ``t``, ``min_l2``, ``accuracy``, ``loss``, ``final_accuracy``,
    ``accuracy_reference`` (`1 - f` with the realised `f`), ``slow_rate_fit`` (`phi_eff`, the
    late slope of `-log MinL2`, [`fit_slow_rate`][collapse_jax.fit_slow_rate]; NaN when
    MinL2 does not decay), ``effective_time`` (`t phi_eff`), peak accuracy keys
    ([`accuracy_summary`][collapse_jax.accuracy_summary]), ``loss_at_peak`` (the
    loss at the peak-accuracy time), ``loss_max_increase`` (largest relative rise of the loss
    between save times; <= 0 for a gradient flow), ``residual_initial`` / ``residual_final`` (`|F|`
    at the start and at `t1`), the scale and shape keys of
    [`scale_summary`][collapse_jax.scale_summary], ``result``, ``steps``; for the
    plain variant also ``slow_rate_hessian`` and ``min_l2_exact`` (closed form,
    [`exact_solution`][collapse_jax.exact_solution]).
    """
    config.check()
    f = float(frustration)
    if not (np.isfinite(f) and 0.0 <= f < 0.5):
        raise ValueError(f"frustration must lie in [0, 0.5), got {f}")
    ts = log_times(t_min, t1, points)
    key = jax.random.PRNGKey(seed)
    solver = solve_kwargs.pop("solver", None)
    member = _jitted_member(config, solver, bool(progress), tuple(sorted(solve_kwargs.items())))
    out = member(jnp.asarray(f), key, ts)
    ts = np.asarray(ts)
    min_l2 = np.asarray(out["min_l2"])
    acc = np.asarray(out["accuracy"])
    rate = -fit_slow_rate(ts, min_l2, floor=TS_FIT_FLOOR * np.nanmax(min_l2))
    decays = min_l2[-1] < 1e-2 * min_l2.max()
    rate = rate if decays else float("nan")
    f_real = float(out["frustration_realised"])
    finite = acc[np.isfinite(acc)]
    loss = np.asarray(out["loss"])
    summary = accuracy_summary(ts, acc)
    peak = int(np.argmin(np.abs(ts - summary["peak_time"]))) if finite.size else -1
    result = {
        "t": ts,
        "min_l2": min_l2,
        "accuracy": acc,
        "loss": loss,
        "final_loss": float(loss[-1]),
        "loss_at_peak": float(loss[peak]),
        "loss_max_increase": _max_relative_rise(loss),
        "residual_initial": float(out["residual_initial"]),
        "residual_final": float(out["residual_final"]),
        **scale_summary(ts, out["states"]),
        "final_accuracy": float(finite[-1]) if finite.size else float("nan"),
        "accuracy_reference": 1.0 - f_real,
        "slow_rate_fit": rate,
        "effective_time": ts * rate,
        "final_min_l2": float(min_l2[-1]),
        "frustration": f,
        "frustration_realised": f_real,
        "variant": config.variant,
        "stop_gradient": config.stop_gradient,
        "seed": seed,
        "result": int(out["result"]),
        "steps": int(out["steps"]),
        **summary,
    }
    if config.variant == "plain":
        data, state0 = teacher_student_problem(key, f, config)
        moments = data.moments()
        result["slow_rate_hessian"] = teacher_student_slow_rate(moments)
        result["min_l2_exact"] = teacher_student_exact_min_l2(state0, moments, ts)
    return result


# --- Registry rows ---------------------------------------------------------------------------


def _no_standard_init(key, n_samples, n_classes, dim):
    raise TypeError(
        "the teacher-student model starts from its own data: use Model.start(key, data, dim)"
    )


def _init_on(projection: bool):
    def init(key, data, dim):
        """`U ~ N(0, 1/D)`, `y_± ~ N(0, I_p)` (and `W = I + 0.1 N(0, 1)`), `p = dim`."""
        return init_teacher_student_state(key, data.xi.shape[1], dim, projection=projection)

    return init


def _moments(data, params):
    del params  # no hyper-parameters
    return data.moments()


def _row_metrics(model, state, data, args):
    del args
    return teacher_student_metrics(state, data, model.loss)


for _name, _loss, _sg, _projection, _what in (
    ("teacher_student", teacher_student_loss, False, False, "plain student U and labels y"),
    ("teacher_student_projection", teacher_student_projection_loss, False, True,
     "student with a predictor W, no stop-gradient"),
    ("teacher_student_sg", teacher_student_projection_loss, True, True,
     "student with a predictor W and stop-gradient"),
):  # fmt: skip
    register(
        Model(
            _name,
            _loss,
            _no_standard_init,
            _sg,
            False,
            None,
            {},
            (None,),
            f"linear teacher-student model (docs/theory.md §4): {_what}",
            metrics=_row_metrics,
            init_data=_init_on(_projection),
            args_data=_moments,
        )
    )
del _name, _loss, _sg, _projection, _what
