"""Section 4, ``teacher_student``: the linear teacher-student model."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from ._checks import Section, _cell, _check_rows, _img, _table, fmt_error, fmt_value
from ._config import ReproduceConfig

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
    from .._metrics import fit_slow_rate
    from .._models.teacher_student import teacher_student_hessian, teacher_student_problem

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
    from .._models.teacher_student import TS_RTOL, TeacherStudentConfig, run_teacher_student
    from .._plots import save_figure, teacher_student_figure

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
    verify = []
    rows = []
    hess = "smallest eigenvalue of the loss Hessian built in numpy from the data moments"
    for r in runs["plain"]:
        exact = np.asarray(r["min_l2_exact"])
        ok = exact > 1e-250 * exact.max()
        err = float(np.max(np.abs(np.asarray(r["min_l2"])[ok] / exact[ok] - 1)))
        r["max_rel_error_vs_exact"] = err
        r.update(_ts_loss_rates(r, configs["plain"], r["seed"]))
        tag = f"f={r['frustration']:g}, seed {r['seed']}"
        verify += [
            (
                f"plain ({tag}): fitted slow rate phi_eff vs smallest Hessian eigenvalue",
                r["slow_rate_fit"],
                r["slow_rate_hessian"],
                5e-3,  # measured 5.3e-4 at f = 0.2 (next mode), 3e-9 at f = 0
                "rel",
                f"{hess} with a separation component (numpy eigh); the fit is the late "
                "slope of MinL2 on the diffrax-integrated path",
            ),
            (
                f"plain ({tag}): integrated MinL2(t) vs closed form, max relative error",
                err,
                0.0,
                5e-9,  # measured 4.3e-10 (f = 0.2)
                "abs",
                "closed-form linear solution V(t) = Q exp(-Lambda t) Q^T V(0) (numpy "
                "eigh of the Hessian); the measured path is the Tsit5 integration, rtol "
                f"{TS_RTOL:g}",
            ),
            (
                f"plain ({tag}): loss slow rate (late slope of -ln L) vs 2 lambda_min",
                r["loss_slow_rate"],
                r["loss_slow_rate_exact"],
                5e-3,  # measured 4.1e-4 (f = 0.2), 3.6e-9 (f = 0)
                "rel",
                f"L(t) = 1/2 sum_k lambda_k c_k^2 exp(-2 lambda_k t): late rate twice the "
                f"{hess}; the fit is on the integrated loss",
            ),
            (
                f"plain ({tag}): loss fast rate -d ln L/dt over the first two saves vs closed form",
                r["loss_fast_rate"],
                r["loss_fast_rate_exact"],
                1e-5,  # measured 1.0e-6 (finite difference of the saved loss)
                "rel",
                "closed form 2 sum lambda^2 c^2 e^(-2 lambda t) / sum lambda c^2 "
                "e^(-2 lambda t) at the midpoint (eigenpairs of the numpy Hessian, start "
                "coefficients); measured: finite difference of the integrated loss",
            ),
        ]
    two_stage = []
    for r in runs["projection"]:
        tag = f"f={r['frustration']:g}, seed {r['seed']}"
        ratio = r["final_min_l2"] / r["min_l2"][0]
        verify += [
            (
                f"projection without stop-gradient ({tag}): MinL2(t1)/MinL2(t_min) (collapse)",
                ratio,
                0.0,
                1e-6,  # measured 7e-63 .. 3e-23: the claim is collapse, not a precision
                "abs",
                "the claim MinL2 -> 0 (reference 0); measured on the integrated path",
            ),
            (
                f"projection without stop-gradient ({tag}): largest relative rise of the loss "
                "between saves (gradient flow: never rises)",
                r["loss_max_increase"],
                0.0,
                0.0,  # measured -7.0e-3 .. -9.4e-3 (the loss falls at every save)
                "bound",
                "without stop-gradient the field is -grad L, so dL/dt = -|grad L|^2 <= 0 "
                "(a property of the flow, not of the integrator); loss from the integrated path",
            ),
            (
                f"projection without stop-gradient ({tag}): late decay rate of |y| vs of |U| "
                "(uniform shrinking)",
                r["scale_rate_y"],
                r["scale_rate_U"],
                0.05,  # measured 5.9e-3 (f = 0.2), 7e-6 (f = 0)
                "rel",
                "a collapse by rescaling shrinks U and y at one rate: the two late slopes "
                "are fitted separately on the integrated |U| and |y|",
            ),
            (
                f"projection without stop-gradient ({tag}): |W| relative change t1/2 -> t1 "
                "(W converges, does not shrink)",
                r["norm_W_change"],
                0.0,
                1e-10,  # measured 0 (equal to the last digit); |W(t1)| = 1.84 .. 1.90
                "abs",
                "reference 0 (a converged predictor); |W| from the integrated path",
            ),
        ]
        if TS_TWO_STAGE_F <= r["frustration"] <= TS_CLAIM_MAX_F:
            two_stage.append(r)
            drop = r["peak_accuracy"] - r["final_accuracy"]
            verify += [
                (
                    f"projection without stop-gradient ({tag}): two-stage pattern, peak accuracy "
                    "minus final accuracy",
                    drop,
                    0.05,
                    0.0,  # measured at f = 0.2: 0.2125 (seed 0), 0.100 (seed 1), 0.1425 (seed 2)
                    "bound_below",
                    "the paper's opening observation (accuracy rises then falls); "
                    "threshold 0.05, half the smallest drop measured at f = 0.2 over seeds 0-2; "
                    "accuracy is computed scale-free on the integrated states",
                ),
                (
                    f"projection without stop-gradient ({tag}): two-stage pattern, loss at t1 / "
                    "loss at the accuracy peak",
                    r["final_loss"] / r["loss_at_peak"],
                    1e-6,
                    0.0,  # measured 6.9e-122 at f = 0.2
                    "bound",
                    "the loss keeps falling while the accuracy falls (paper's opening "
                    "observation); both values from the integrated path",
                ),
            ]
    beyond = []  # stop-gradient runs outside the range the claim is made for
    for r in runs["projection_sg"]:
        tag = f"f={r['frustration']:g}, seed {r['seed']}"
        if r["frustration"] > TS_CLAIM_MAX_F:
            beyond.append(r)
            continue
        verify += [
            (
                f"projection + stop-gradient ({tag}): final MinL2 stays >= 0.1",
                r["final_min_l2"],
                0.1,
                0.0,  # measured 0.530 (f = 0.2) .. 2.88 (f = 0)
                "bound_below",
                "the claim that stop-gradient keeps a finite separation; MinL2 at t1 "
                "from the integrated path",
            ),
            (
                f"projection + stop-gradient ({tag}): |F(t1)| / |F(t_min)| (the run ends on a "
                "fixed point)",
                r["residual_final"] / r["residual_initial"],
                0.0,
                # measured 4.4e-12 .. 7.4e-12 (quick: seed 0, t1 = 2000); full preset (seeds
                # 0-2, t1 = 1e4): 3.7e-14 .. 1.6e-9, the worst seed 2 at f = 0, which is still
                # at 2.7e-6 at t = 2000: it approaches its fixed point slowly
                2e-8,
                "abs",
                "a fixed point has F = 0: the field is evaluated directly at the "
                "integrated end state, independently of the integrator's error control",
            ),
            (
                f"projection + stop-gradient ({tag}): accuracy at the fixed point vs 1 - f",
                r["final_accuracy"],
                r["accuracy_reference"],
                0.05,  # measured 0.0475 at f = 0.2 seed 0 (0.7525); seeds 1-4: <= 0.035
                "abs",
                "1 - f is the population ceiling of any classifier (frustrated samples "
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
    checks = _check_rows(S, verify)
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
