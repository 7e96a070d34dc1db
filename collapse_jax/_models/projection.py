"""The projection-head model (docs/theory.md §3): its metrics and its analysis.

Registry rows ``predictor`` and ``simsiam`` of [`MODELS`][collapse_jax.MODELS]
(the same loss without and with stop-gradient). The state is
[`ProjectionState`][collapse_jax.ProjectionState], the start
[`init_projection_state`][collapse_jax.init_projection_state], the loss
[`projection_loss`][collapse_jax.projection_loss], the `N`-independent path
[`simulate_projection`][collapse_jax.simulate_projection].

Here: its metrics, the `Omega` bound (P1), the bias sectors and the label-span spectrum (P2),
the predicted zero modes (P3), the spectral reports and the fixed-point classification (the
model-free steady-state finder is [`find_steady_state`][collapse_jax.find_steady_state]).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._data import ShareRule, StandardData, init_projection_state
from .._integrate import log_times, result_name
from .._metrics import min_l2, nearest_label_accuracy
from .._projection import Path, simulate_projection
from .._projection import stop_gradient_zero_modes as stop_gradient_zero_modes
from .._spectral import (
    asymmetry_norm,
    eigenvalues,
    finite_difference_jacobian,
    is_symmetric,
    jacobian,
)
from .._steady import find_steady_state
from .._sweep import SweepResult, frustration_sweep
from .._types import Array, Float

__all__ = [
    "projection_metrics",
    "omega",
    "omega_max_eigenvalue",
    "label_span_spectrum",
    "bias_sectors",
    "stop_gradient_zero_modes",
    "projection_spectrum_report",
    "steady_state_spectrum_report",
    "BRANCHES",
    "projection_fixed_point",
    "classify_starts",
    "PROJECTION_SWEEP_RTOL",
    "PROJECTION_SWEEP_ATOL",
    "projection_member",
    "projection_sweep",
]


def projection_metrics(state, data) -> dict[str, Float[Array, ""]]:
    """MinL2, loss and accuracies of one projection-model state (docs/theory.md §1, §3).

    Accuracy uses the prediction `yhat(x) = W x`. The loss is `L_P` (equal in value to
    `L_P^sg`). `vmap` over a leading time axis of ``state`` for a trajectory.
    """
    from .._losses import projection_loss

    n_clean = data.n_classes * data.per_class
    predictions = state.x[:n_clean] @ state.W.T
    acc, acc_all = nearest_label_accuracy(predictions, state.y, data.per_class, data.shared_count)
    return {
        "min_l2": min_l2(state.y),
        "loss": projection_loss(state, state, data.matrix()),
        "accuracy": acc,
        "accuracy_all": acc_all,
    }


def omega(W, per_class: float, shared: float) -> np.ndarray:
    """`Omega(W) = n / (2(n+M)) (I+W)(I+W^T W)^{-1}(I+W)^T` (docs/theory.md §3, P1), host float64.

    At a conservative fixed point the label bias obeys `(I - Omega) delta y_c = 0`; since
    `(I+W)(I+W^T W)^{-1}(I+W)^T = [I I] P_G [I; I]` with `P_G` a projector,
    `spec(Omega) ⊂ [0, n/(n+M)]`.
    """
    W = np.asarray(W, dtype=np.float64)
    eye = np.eye(W.shape[0])
    core = (eye + W) @ np.linalg.solve(eye + W.T @ W, (eye + W).T)
    return per_class / (2.0 * (per_class + shared)) * core


def omega_max_eigenvalue(W, per_class: float, shared: float) -> float:
    """Largest eigenvalue of [`omega`][collapse_jax.omega] (symmetric;
    bound `n/(n+M)`)."""
    om = omega(W, per_class, shared)
    return float(np.linalg.eigvalsh(0.5 * (om + om.T))[-1])


def label_span_spectrum(W, y) -> dict:
    """`W` restricted to the label span `span{y_c}` (docs/theory.md §3, P2).

    With `Q` an orthonormal basis of `span{y_c}` (rank-revealing SVD of `y`), returns
    ``eigenvalues`` of `Q^T W Q` (sorted by real part), ``rank`` and ``leakage``
    `|W Q - Q Q^T W Q|_F` (zero when the label span is `W`-invariant, as at a fixed point).
    """
    W = np.asarray(W, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _, s, vt = np.linalg.svd(y, full_matrices=False)
    rank = int(np.sum(s > 1e-10 * max(s[0], 1e-300)))
    Q = vt[:rank].T
    Wr = Q.T @ W @ Q
    ev = np.linalg.eigvals(Wr)
    return {
        "eigenvalues": ev[np.argsort(ev.real)],
        "rank": rank,
        "leakage": float(np.linalg.norm(W @ Q - Q @ Wr)),
    }


def bias_sectors(W, y, per_class: float, shared: float, *, tol: float = 1e-6) -> list[dict]:
    """For each class-bias direction, the `W`-sector it sits in (docs/theory.md §3, P2).

    The bias directions are the right singular vectors `v_k` of the centred labels
    `y_c - ybar` (`K - 1` of them, spreads `sigma_k`). For each: the Rayleigh quotient
    `w_k = v_k^T W v_k`, the eigen-residual `|W v_k - w_k v_k|`, and the sector:
    ``"separated"`` if `|w_k - n/(n+M)| <= tol` and `sigma_k` is finite, ``"lost"`` if
    `|w_k| <= tol` or `sigma_k <= tol` (the direction's separation is gone or going),
    ``"other"`` otherwise (not at a fixed point of the separated type).
    """
    W = np.asarray(W, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    yc = y - y.mean(axis=0)
    _, s, vt = np.linalg.svd(yc, full_matrices=True)
    target = per_class / (per_class + shared)
    out = []
    for k in range(y.shape[0] - 1):
        sigma = float(s[k]) if k < s.size else 0.0
        v = vt[k] if k < vt.shape[0] else np.zeros(W.shape[0])
        w = float(v @ W @ v)
        resid = float(np.linalg.norm(W @ v - w * v))
        if sigma <= tol or abs(w) <= tol:
            sector = "lost"
        elif abs(w - target) <= tol and resid <= tol:
            sector = "separated"
        else:
            sector = "other"
        out.append({"spread": sigma, "w_rayleigh": w, "eigen_residual": resid, "sector": sector})
    return out


def projection_spectrum_report(state, data, *, zero_tol: float = 1e-7, sector_tol=1e-6) -> dict:
    """Spectral analysis of the projection model at one state (docs/theory.md §3).

    For both fields (``"conservative"``, ``"stop_gradient"``): Jacobian eigenvalues (real and
    imaginary parts, sorted by real part), their largest real part, the number of zero modes
    (`|lambda| <= zero_tol`), `|J - J^T|_F` and whether `J` is symmetric. For `W`: `|eig W|`
    sorted, `max eig Omega(W)` with its bound `n/(n+M)`, `W` on the label span and the sector
    of every bias direction ([`bias_sectors`][collapse_jax.bias_sectors]).
    """
    from .._fields import vector_field
    from .._losses import projection_loss

    A = data.matrix()
    n, M = data.per_class, float(data.shared_total)
    out = {}
    for name, sg in (("conservative", False), ("stop_gradient", True)):
        J = jacobian(vector_field(projection_loss, stop_gradient=sg), state, A)
        ev = eigenvalues(J)
        out[name] = {
            "real": ev.real,
            "imag": ev.imag,
            "max_real": float(ev.real.max()),
            "zero_modes": int(np.sum(np.abs(ev) <= zero_tol)),
            "asymmetry_norm": asymmetry_norm(J),
            "symmetric": is_symmetric(J),
        }
    W, y = np.asarray(state.W), np.asarray(state.y)
    span = label_span_spectrum(W, y)
    out.update(
        w_eigenvalues_abs=np.sort(np.abs(np.linalg.eigvals(W))),
        omega_max_eigenvalue=omega_max_eigenvalue(W, n, M),
        omega_bound=n / (n + M),
        label_span_w_eigenvalues=span["eigenvalues"],
        label_span_leakage=span["leakage"],
        bias_sectors=bias_sectors(W, y, n, M, tol=sector_tol),
    )
    return out


# the steady-state keys a projection spectrum reports besides the eigenvalues
_STEADY_KEYS = (
    "status",
    "branch",
    "residual_norm",
    "jacobian_max_real",
    "zero_modes",
    "n_variables",
    "min_l2",
    "w_eigenvalues_abs",
    "t_reached",
)


def steady_state_spectrum_report(
    field, analysis: dict, data: StandardData, *, stop_gradient: bool
) -> dict:
    """Jacobian spectrum of the projection model at a steady state (docs/theory.md §3).

    No closed form exists for the whole spectrum, so ``predicted`` is ``None`` and
    ``max_abs_error`` is the largest entry of `|J_autodiff - J_finite_differences|` (central
    differences, [`finite_difference_jacobian`][collapse_jax.finite_difference_jacobian]):
    the check that the reported Jacobian is right. ``sectors`` holds `W` on the label span of a
    separated stop-gradient fixed point, predicted `{1, n/(n+M) (K-1 times)}` (P2); it is empty
    otherwise.

    Args:
        field: the projection model's vector field (the one ``analysis`` was computed with).
        analysis: the output of
            [`projection_fixed_point`][collapse_jax.projection_fixed_point],
            with its ``steady`` entry.
        data: the data set.
        stop_gradient: which field.

    Returns:
        The keys of ``collapse-jax spectrum --model projection --json`` (docs/cli.md) except the
        run's settings: ``numeric``, ``numeric_imag``, ``predicted``, ``max_abs_error``,
        ``max_abs_error_reference``, ``sectors``, ``symmetric``, ``asymmetry_norm`` and the
        steady state's ``status``, ``branch``, ``residual_norm``, ``jacobian_max_real``,
        ``zero_modes``, ``n_variables``, ``min_l2``, ``w_eigenvalues_abs``, ``t_reached``.
    """
    st = analysis["steady"]
    J_fd = finite_difference_jacobian(field, st.state, data.matrix())
    sectors = {}
    if stop_gradient and analysis["branch"] == "separated":
        n, M, K = data.per_class, float(data.shared_total), data.n_classes
        sectors["W_on_label_span"] = {
            "numeric": np.sort(analysis["label_span_w_eigenvalues"]),
            "predicted": np.sort([1.0] + [n / (n + M)] * (K - 1)),
        }
    ev = st.eigenvalues
    report = {
        "numeric": ev.real,
        "numeric_imag": ev.imag,
        "predicted": None,
        "max_abs_error": float(np.max(np.abs(st.jacobian - J_fd))),
        "max_abs_error_reference": "central finite differences of the field",
        "sectors": sectors,
        "symmetric": is_symmetric(st.jacobian),
        "asymmetry_norm": analysis["asymmetry_norm"],
    }
    report.update({key: analysis[key] for key in _STEADY_KEYS})
    return report


#: Branch names of :func:`projection_fixed_point` (P1/P2 of docs/theory.md §3).
BRANCHES = ("separated", "bias-in-kernel", "collapsed", "other", "saddle", "slow-transient")


def projection_fixed_point(
    data,
    state0,
    *,
    stop_gradient: bool,
    sector_tol: float = 1e-6,
    collapse_tol: float = 1e-8,
    path: str = "reduced",
    **kwargs,
) -> dict:
    """Run the projection model to a steady state and analyse it (docs/theory.md §3, P1–P3).

    Args:
        data: a [`StandardData`][collapse_jax.StandardData].
        state0: a [`ProjectionState`][collapse_jax.ProjectionState].
        stop_gradient: which field.
        path: ``"reduced"`` (default): the integration segments run on the reduced path of
            [`simulate_projection`][collapse_jax.simulate_projection] (cost independent
            of `n`), lifted back to every sample after each segment; the polish and the Jacobian
            spectrum are those of the full field. ``"full"``: integrate every sample.
        sector_tol: tolerance of [`bias_sectors`][collapse_jax.bias_sectors].
        collapse_tol: ``MinL2`` below this is collapsed.
        **kwargs: passed to [`find_steady_state`][collapse_jax.find_steady_state].

    Returns:
        A dict with the keys of ``collapse-jax fixed-point --json`` (docs/cli.md): ``min_l2``,
        ``residual_norm`` (after polish), ``residual_before_polish``, ``w_eigenvalues_abs``
        (sorted), ``predicted_bias_eigenvalue`` `n/(n+M)`, ``omega_max_eigenvalue``,
        ``omega_bound``, ``jacobian_max_real``, ``zero_modes``, ``status``, ``branch`` (one
        of [`BRANCHES`][collapse_jax.BRANCHES]), ``bias_sectors``,
        ``label_span_w_eigenvalues`` (and ``label_span_leakage``), ``asymmetry_norm``,
        ``t_reached``, ``steps``, plus ``steady`` (the
        [`SteadyState`][collapse_jax.SteadyState], not JSON).

    Zero modes: the fixed points of both fields form manifolds. For stop-gradient they are
    `{W x_i = y_c (clean), W x_s = ybar, (n+M) y_c = n xbar_c + M xbar_S}`; linearised, the
    sample constraints `dW x_i + W dx_i = dt_i` lose rank where `W` is singular (only the
    range of `W` is reachable through `dx_i`, the rest only through the `d - r` rows of `dW`
    outside it), so the manifold has dimension `d^2 + (N - rank X)(d - r)` with `r = rank W`
    and `X` the sample matrix: ``zero_modes_predicted``. (For K=3, n=12, M=2, d=5, r=3: 91,
    the count docs/theory.md §3 P3 reports.) The rotations `x -> R x, y -> R y, W -> R W R^T`, a
    symmetry of both losses, are `d(d-1)/2` of these directions.

    Branches: a non-fixed point is ``"saddle"`` or ``"slow-transient"``. A fixed point is
    ``"collapsed"`` when ``MinL2 <= collapse_tol``, ``"separated"`` when every bias direction
    is separated (eigenvalue `n/(n+M)` of `W`), ``"bias-in-kernel"`` when one is lost, and
    ``"other"`` otherwise.
    """
    from .._fields import vector_field
    from .._losses import projection_loss
    from .._metrics import min_l2

    A = data.matrix()
    n, M = data.per_class, float(data.shared_total)
    field = vector_field(projection_loss, stop_gradient=stop_gradient)
    if path == "reduced":
        kwargs["advance"] = _reduced_advance(data, stop_gradient, kwargs)
    elif path != "full":
        raise ValueError(f"path must be 'reduced' or 'full', got {path!r}")
    st = find_steady_state(field, state0, A, **kwargs)
    z = st.state
    W, y = np.asarray(z.W), np.asarray(z.y)
    ml2 = float(min_l2(z.y))
    sectors = bias_sectors(W, y, n, M, tol=sector_tol)
    if st.status != "fixed-point":
        branch = st.status
    elif ml2 <= collapse_tol:
        branch = "collapsed"
    elif all(s["sector"] == "separated" for s in sectors):
        branch = "separated"
    elif any(s["sector"] == "lost" for s in sectors):
        branch = "bias-in-kernel"
    else:
        branch = "other"
    span = label_span_spectrum(W, y)
    zero = stop_gradient_zero_modes(z.x, W)  # every row of x counts (as reported before)
    return {
        "min_l2": ml2,
        "residual_norm": st.residual_after if st.status == "fixed-point" else st.residual_before,
        "residual_before_polish": st.residual_before,
        "residual_after_polish": st.residual_after,
        "polish_move": st.polish_move,
        "w_eigenvalues_abs": np.sort(np.abs(np.linalg.eigvals(W))),
        "predicted_bias_eigenvalue": n / (n + M),
        "omega_max_eigenvalue": omega_max_eigenvalue(W, n, M),
        "omega_bound": n / (n + M),
        "jacobian_max_real": st.max_real,
        "zero_modes": st.zero_modes,
        "zero_modes_predicted": zero["count"],
        "w_rank": zero["rank_w"],
        "n_variables": int(st.jacobian.shape[0]),
        "status": st.status,
        "branch": branch,
        "bias_sectors": sectors,
        "label_span_w_eigenvalues": span["eigenvalues"].real,
        "label_span_w_eigenvalues_imag": span["eigenvalues"].imag,
        "label_span_leakage": span["leakage"],
        "asymmetry_norm": asymmetry_norm(st.jacobian),
        "t_reached": st.t,
        "steps": st.steps,
        "segments": st.segments,
        "escapes": st.escapes,
        "result": st.result,
        "stop_gradient": bool(stop_gradient),
        "steady": st,
    }


def _reduced_advance(data, stop_gradient, kwargs):
    """An ``advance`` for [`find_steady_state`][collapse_jax.find_steady_state] on the
    projection model's reduced path."""
    from .._projection import simulate_projection

    kw = {k: kwargs[k] for k in ("rtol", "atol", "max_steps", "progress_meter") if k in kwargs}
    # Tighter than the full path's defaults: the explicit (slow) half of the IMEX step sits at
    # its stability limit near a fixed point, so the residual settles at the tolerance level
    # instead of decaying (rms ~1e-9 at rtol 1e-8, atol 1e-10, K=3, n=6, M=2, d=4) and the
    # acceptance test (|F|_2 <= accept_tol before the polish) needs it well below 1e-8.
    kw.setdefault("rtol", 1e-10)
    kw.setdefault("atol", 1e-13)

    def advance(z, t0, t1, event):
        run = simulate_projection(
            data,
            z,
            stop_gradient=stop_gradient,
            t0=t0,
            t1=t1,
            ts=jnp.asarray([t1]),
            saveat=diffrax.SaveAt(t1=True),
            event=event,
            **kw,
        )
        last = jax.tree_util.tree_map(lambda a: a[-1], run.states)
        return last, float(run.ts[-1]), int(run.steps), result_name(run.result)

    return advance


def classify_starts(data, dim: int, seeds, *, stop_gradient: bool = True, **kwargs) -> dict:
    """P2 of docs/theory.md §3: run many starts and count the branch each one reaches.

    Every start is [`init_projection_state`][collapse_jax.init_projection_state] from
    ``PRNGKey(seed)``; each is analysed by
    [`projection_fixed_point`][collapse_jax.projection_fixed_point] (``**kwargs``
    passed on). Returns ``{"counts": branch -> count, "fractions": branch -> fraction,
    "runs": [per-seed dict without the SteadyState]}``.
    """
    from .._data import init_projection_state

    runs = []
    for seed in seeds:
        z0 = init_projection_state(
            jax.random.PRNGKey(int(seed)), data.n_samples, data.n_classes, dim
        )
        out = projection_fixed_point(data, z0, stop_gradient=stop_gradient, **kwargs)
        out.pop("steady")
        out["seed"] = int(seed)
        runs.append(out)
    counts = {b: sum(r["branch"] == b for r in runs) for b in BRANCHES}
    total = max(len(runs), 1)
    return {
        "counts": counts,
        "fractions": {b: c / total for b, c in counts.items()},
        "runs": runs,
    }


#: Default tolerances of projection sweeps: MinL2(t) to about 1e-7 relative while it is
#: above ~1e-6 of its start (errors are controlled against the O(1) labels).
PROJECTION_SWEEP_RTOL = 1e-8


PROJECTION_SWEEP_ATOL = 1e-11


def projection_member(
    data,
    key,
    *,
    dim: int,
    ts,
    stop_gradient: bool,
    path: Path = "reduced",
    rtol: float = PROJECTION_SWEEP_RTOL,
    atol: float = PROJECTION_SWEEP_ATOL,
    max_steps: int = 200_000,
    solver=None,
    progress_meter=None,
):
    """One sweep member of the projection model (docs/theory.md §3): metrics at ``ts``.

    Integrates [`simulate_projection`][collapse_jax.simulate_projection] (the reduced
    path by default, lifted to every sample, so accuracy and loss are those of the full state) from
    the default start [`init_projection_state`][collapse_jax.init_projection_state] with
    ``throw=False``.
    """
    z0 = init_projection_state(key, data.n_samples, data.n_classes, dim)
    run = simulate_projection(
        data,
        z0,
        stop_gradient=stop_gradient,
        path=path,
        ts=ts,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        solver=solver,
        progress_meter=progress_meter,
    )
    m = jax.vmap(lambda s: projection_metrics(s, data))(run.states)
    return {
        "min_l2": jax.vmap(min_l2)(run.states.y),
        "accuracy": m["accuracy"],
        "accuracy_all": m["accuracy_all"],
        "loss": m["loss"],
        "result": run.result._value.astype(jnp.int32),
        "steps": jnp.asarray(run.steps, jnp.int32),
    }


def projection_sweep(
    frustration,
    seeds,
    *,
    stop_gradient: bool,
    n_classes: int = 3,
    per_class: int = 10,
    dim: int = 4,
    ts=None,
    rule: ShareRule = "round",
    max_shared: int | None = None,
    devices=None,
    path: Path = "reduced",
    rtol: float = PROJECTION_SWEEP_RTOL,
    atol: float = PROJECTION_SWEEP_ATOL,
    max_steps: int = 200_000,
    solver=None,
    progress_meter=None,
) -> SweepResult:
    """Sweep the projection model (with or without stop-gradient) in one ``jit(vmap)`` call.

    Same grid, sharding, result type and file format as
    [`embedding_sweep`][collapse_jax.embedding_sweep]; each member is
    [`projection_member`][collapse_jax.projection_member] (reduced path by
    default: its cost does not grow with ``per_class``). Run it twice
    (``stop_gradient=False/True``) for the phase diagram of
    [`phase_diagram_figure`][collapse_jax.phase_diagram_figure]. ``progress_meter`` (e.g.
    ``diffrax.TqdmProgressMeter()``) shows the progress of the slowest member (diffrax reduces
    over the ``vmap``).
    """
    ts = log_times(1e-2, 1e3, 100) if ts is None else jnp.asarray(ts)

    def member(d, k):
        return projection_member(
            d,
            k,
            dim=dim,
            ts=ts,
            stop_gradient=stop_gradient,
            path=path,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
            solver=solver,
            progress_meter=progress_meter,
        )

    metadata = {
        "model": "projection",
        "stop_gradient": bool(stop_gradient),
        "method": f"{path}-path",
        "dim": dim,
        "rtol": rtol,
        "atol": atol,
        "solver": "default" if solver is None else type(solver).__name__,
    }
    return frustration_sweep(
        member,
        frustration,
        seeds,
        ts,
        n_classes=n_classes,
        per_class=per_class,
        rule=rule,
        max_shared=max_shared,
        devices=devices,
        metadata=metadata,
    )
