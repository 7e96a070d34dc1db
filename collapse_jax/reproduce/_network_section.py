"""Section 6, ``network``: the paper's opening observation in a trained network, and the
network's late decay beside the minimal model's slow rate for the same counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._checks import Section, _cell, _check_rows, _img, _table, fmt_value
from ._config import ReproduceConfig

#: The ratio of the two-stage claims and of the stop-gradient comparison.
NETWORK_PHI = 0.02
#: Ratios over which the collapse step must come sooner as the ratio grows.
NETWORK_COLLAPSE_PHI = (0.02, 0.04, 0.08)

#: Curves kept in ``numbers.json`` (seed 0 of every ratio, and of the stop-gradient run).
_CURVES = ("loss", "min_l2", "spread", "accuracy", "accuracy_test")


def _index(values, value, what) -> int:
    hit = np.flatnonzero(np.isclose(np.asarray(values, dtype=np.float64), value, atol=1e-12))
    if not hit.size:
        raise ValueError(f"network_frustration must include {value:g} (the {what}), got "
                         f"{[float(v) for v in values]}")  # fmt: skip
    return int(hit[0])


def _member(sweep, i: int, s: int) -> dict:
    """One training of a sweep (learning rate 0) as a run dict: its curves, summary, the loss at
    the accuracy peak and at the end."""
    step = np.asarray(sweep.step)
    rec = {k: np.asarray(v)[i, s, 0] for k, v in sweep.records.items()}
    summ = {k: np.asarray(v)[i, s, 0] for k, v in sweep.summary.items()}
    summ = {k: (str(v) if k == "better_fit" else float(v)) for k, v in summ.items()}
    peak = int(np.flatnonzero(step == summ["peak_step"])[0])
    return {
        "step": step,
        **rec,
        **summ,
        "frustration": float(sweep.frustration[i]),
        "shared": int(sweep.shared[i]),
        "seed": int(sweep.seed[s]),
        "loss_at_peak": float(rec["loss"][peak]),
        "final_loss": float(rec["loss"][-1]),
        "accuracy_test_at_peak": float(rec["accuracy_test"][peak]),
        "final_accuracy_test": float(rec["accuracy_test"][-1]),
    }


def _late_fit_numpy(step, values, start=0.5) -> dict:
    """The late-decay fit written out here: window `step >= start * last` (positive steps,
    finite positive values), then the least-squares slope `sum dx dy / sum dx^2` of `log v`
    against the step and against `log step`, and the residual sums of squares."""
    s = np.asarray(step, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = (s >= start * s[-1]) & (s > 0) & np.isfinite(v) & (v > 0)
    s, y = s[keep], np.log(v[keep])
    out = {"points": int(keep.sum())}
    for name, x in (("exponential", s), ("power_law", np.log(s))):
        dx, dy = x - x.mean(), y - y.mean()
        slope = float(np.sum(dx * dy) / np.sum(dx * dx))
        out[name] = slope
        out[f"rss_{name}"] = float(np.sum((dy - slope * dx) ** 2))
    out["better_fit"] = (
        "exponential" if out["rss_exponential"] <= out["rss_power_law"] else "power law"
    )
    return out


def _lambda_plus_references(n, M) -> tuple[np.ndarray, np.ndarray]:
    """`lambda_+` two ways, in numpy: `M / lambda_-` with `lambda_- = -[(n+M+1) +
    sqrt((n+M+1)^2 - 4M)] / 2`, and the larger eigenvalue of the sector-II matrix
    `[[-1, 1], [n, -(n+M)]]` (``np.linalg.eigvals``)."""
    n, M = np.asarray(n, dtype=np.float64), np.asarray(M, dtype=np.float64)
    b = n + M + 1.0
    closed = M / (-0.5 * (b + np.sqrt(b * b - 4.0 * M)))
    eig = np.array(
        [
            np.max(np.linalg.eigvals(np.array([[-1.0, 1.0], [a, -(a + m)]])).real)
            for a, m in zip(n, M, strict=True)
        ]
    )
    return closed, eig


def _pm(values) -> str:
    """``mean ± std`` over the finite seeds (a dash where none is finite)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return "—"
    return fmt_value(a.mean()) + (f" ± {a.std():.2g}" if a.size > 1 else "")


def _network(cfg: ReproduceConfig, out: Path, log, ctx) -> Section:
    from .._network import DEFAULT_LR, NetworkConfig, network_sweep
    from .._network_data import digits_data
    from .._network_study import minimal_model_comparison
    from .._plots import save_figure
    from .._plots._network_study import _fig_network_opening, plot_network_phi

    S = "network"
    lr = DEFAULT_LR
    phis = tuple(float(p) for p in cfg.network_frustration)
    i0 = _index(phis, 0.0, "unfrustrated reference")
    i2 = _index(phis, NETWORK_PHI, "two-stage ratio")
    ic = [_index(phis, p, "collapse-step ratios") for p in NETWORK_COLLAPSE_PHI]
    data = digits_data()
    config = NetworkConfig(steps=int(cfg.network_steps))
    log(f"  plain network: phi in {list(phis)}, {cfg.network_seeds} seed(s), "
        f"{config.steps} steps, one jit(vmap)")  # fmt: skip
    plain = network_sweep(data, phis, cfg.network_seeds, lr=lr, config=config)
    log(f"  stop-gradient network: phi = {NETWORK_PHI:g}, {cfg.network_sg_seeds} seed(s)")
    sg = network_sweep(
        data, [NETWORK_PHI], cfg.network_sg_seeds, lr=lr,
        config=config._replace(variant="stop-gradient"),
    )  # fmt: skip
    S_plain, S_sg = plain.seed.size, sg.seed.size
    runs = [[_member(plain, i, s) for s in range(S_plain)] for i in range(len(phis))]
    sg_runs = [_member(sg, 0, s) for s in range(S_sg)]

    verify = []
    for s in range(S_plain):
        r, r0 = runs[i2][s], runs[i0][s]
        tag = f"φ = {NETWORK_PHI:g}, seed {r['seed']}"
        verify += [
            (
                f"plain network ({tag}): peak minus final training accuracy (two-stage "
                "pattern: the accuracy falls)",
                r["accuracy_drop"],
                0.2,
                0.0,  # measured 0.391 (seed 0), 0.343 (seed 1)
                "bound_below",
                "the paper's opening observation, threshold 0.2; nearest-label accuracy of "
                "the clean training samples recorded along the SGD training",
            ),
            (
                f"plain network ({tag}): training loss at the end / at the accuracy peak "
                "(the loss keeps falling)",
                r["final_loss"] / r["loss_at_peak"],
                1.0,
                0.0,  # measured 0.0038 = 0.000309 / 0.082 (seed 0); 0.0003 / 0.04 (seed 1)
                "bound",
                "the accuracy falls while the training loss is still lower than at the peak; "
                "both losses recorded on the full training set",
            ),
            (
                f"plain network ({tag}): label MinL2 at the end / at the accuracy peak "
                "(the labels collapse)",
                r["final_min_l2"] / r["min_l2_at_peak"],
                0.2,
                0.0,  # measured 0.021 (seed 0), 0.043 (seed 1)
                "bound",
                "collapse criterion: MinL2 of the label embeddings falls below 0.2 of its "
                "value at the accuracy peak",
            ),
            (
                f"plain network (φ = 0, seed {r0['seed']}): final training accuracy vs its "
                "peak (no frustration, no fall)",
                r0["final_accuracy"],
                r0["peak_accuracy"],
                0.05,  # measured 1.000 vs 1.000 (seeds 0, 1)
                "abs",
                "the unfrustrated control of the same start: accuracy holds within 0.05",
            ),
        ]
        steps = np.array([runs[i][s]["collapse_step"] for i in ic])
        verify.append(
            (
                f"plain network (seed {r['seed']}): largest ratio of consecutive collapse "
                "steps over φ = "
                + ", ".join(f"{p:g}" for p in NETWORK_COLLAPSE_PHI)
                + " (below 1: the collapse comes sooner at larger φ)",
                float(np.max(steps[1:] / steps[:-1])),
                1.0,
                0.0,  # measured 0.392: steps 2868, 962, 377 at phi = 0.02, 0.04, 0.08 (seed 0)
                "bound",
                "collapse step: first recorded step after the peak with the training "
                "accuracy 0.1 below it; a training without one (NaN) fails the row. Equal "
                "steps (ratio 1) would need two ratios to collapse at the same record step",
            )
        )
    for s in range(S_sg):
        r = sg_runs[s]
        tag = f"φ = {NETWORK_PHI:g}, seed {r['seed']}"
        verify += [
            (
                f"stop-gradient network ({tag}): final training accuracy vs its peak",
                r["final_accuracy"],
                r["peak_accuracy"],
                0.1,  # measured 0.994 vs 0.994 (seed 0), 0.989 vs 0.996 (seed 1)
                "abs",
                "stop-gradient keeps the accuracy: within 0.1 of its peak",
            ),
            (
                f"stop-gradient network ({tag}): label MinL2 at the end / at the accuracy "
                "peak (bounded away from zero)",
                r["final_min_l2"] / r["min_l2_at_peak"],
                0.2,
                0.0,  # measured 1.0 (seed 0: 0.143 flat), 0.29 (seed 1: 0.514 -> 0.149)
                "bound_below",
                "the complement of the plain network's collapse criterion (below 0.2)",
            ),
        ]
        if s < S_plain:
            verify.append(
                (
                    f"stop-gradient vs plain network ({tag}): label MinL2 at step 0 (the "
                    "same start)",
                    r["min_l2"][0],
                    runs[i2][s]["min_l2"][0],
                    0.0,  # measured 7.0296 both (equal to the last digit)
                    "abs",
                    "both trainings draw the encoder, the labels and the shared samples from "
                    "the same key; only the variant differs",
                )
            )

    # independent references: the late fit recomputed here, lambda_+ two ways in numpy
    ref = runs[i2][0]
    mine = _late_fit_numpy(ref["step"], ref["min_l2"])
    tag = f"φ = {NETWORK_PHI:g}, seed {ref['seed']}"
    basis_fit = (
        "least-squares slope sum(dx dy)/sum(dx^2) of log MinL2 over the steps >= last/2, "
        "written out in numpy on the recorded arrays (the library fits with np.polyfit)"
    )
    # the minimal model with the network's counts, and the comparison reported below
    cmp = minimal_model_comparison(plain, data.n_samples, data.n_classes)
    mm = cmp["minimal"]
    pos = np.asarray(phis) > 0
    closed, eig = _lambda_plus_references(mm["per_class"][pos], mm["shared"][pos])
    lp = np.asarray(mm["lambda_plus"], dtype=np.float64)[pos]
    verify += [
        (
            f"plain network ({tag}): late exponential rate of MinL2 per step vs numpy",
            ref["slow_rate_fit"],
            mine["exponential"],
            3e-14,  # measured 2.9e-15
            "rel",
            basis_fit,
        ),
        (
            f"plain network ({tag}): late power-law exponent of MinL2 vs numpy",
            ref["power_law_exponent"],
            mine["power_law"],
            6e-14,  # measured 5.6e-15
            "rel",
            basis_fit + ", against log step",
        ),
        (
            f"plain network ({tag}): the better late-decay form vs numpy residuals",
            ref["better_fit"],
            mine["better_fit"],
            0.0,
            "outcome",
            "the form with the smaller residual sum of squares of log MinL2, both computed here",
        ),
        (
            "minimal model for the network's counts: λ+(n, M) vs M/λ− written out in numpy "
            "(worst over φ > 0)",
            float(np.max(np.abs(lp / closed - 1))),
            0.0,
            1e-15,  # measured 0: the library evaluates the same expression
            "abs",
            "λ+ λ− = M: the closed form with λ− = −[(n+M+1) + √((n+M+1)² − 4M)]/2, "
            "n = (N − M)/K, M = round(φN)",
        ),
        (
            "minimal model for the network's counts: λ+(n, M) vs the larger eigenvalue of "
            "[[−1, 1], [n, −(n+M)]] (worst over φ > 0)",
            float(np.max(np.abs(lp / eig - 1))),
            0.0,
            5e-13,  # measured 5.2e-14 (round-off of the 2 x 2 eigenvalue problem)
            "abs",
            "sector-II matrix of the minimal model, eigenvalues by numpy (LAPACK geev)",
        ),
    ]
    checks = _check_rows(S, verify)

    # the comparison with the minimal model (reported, not checked)
    summ = {k: np.asarray(v)[:, :, 0] for k, v in plain.summary.items()}
    rate, collapse = summ["slow_rate_fit"], summ["collapse_step"]
    rate_mean = cmp["slow_rate_fit"]
    pred = np.asarray(mm["rate_per_step"], dtype=np.float64)
    slow_time, rate_map, collapse_map = cmp["slow_time"], cmp["rate_map"], cmp["collapse_map"]
    better = summ["better_fit"].astype(str)
    n_pow = int(np.sum(better[pos] == "power law"))
    n_exp = int(np.sum(better[pos] == "exponential"))
    ratio_rows = []
    for i, phi in enumerate(phis):
        ratio_rows.append(
            f"| {phi:g} | {int(mm['shared'][i])} | {_cell(float(mm['per_class'][i]))} | "
            f"{_cell(float(mm['lambda_plus'][i]) + 0.0)} | {_cell(float(pred[i]) + 0.0)} | "
            f"{_pm(rate[i])} | {_cell(rate_mean[i] / pred[i] if pred[i] else np.nan)} | "
            f"{_pm(summ['power_law_exponent'][i])} | "
            f"{int(np.sum(better[i] == 'power law'))} / {int(np.sum(better[i] == 'exponential'))}"
            f" | {_pm(collapse[i])} | {_cell(float(slow_time[i]) if pred[i] else np.nan)} |"
        )
    member_rows = [
        f"| plain | {r['frustration']:g} | {r['seed']} | {fmt_value(r['peak_accuracy'])} at "
        f"{r['peak_step']:g} | {fmt_value(r['final_accuracy'])} | "
        f"{fmt_value(r['accuracy_test_at_peak'])} → {fmt_value(r['final_accuracy_test'])} | "
        f"{r['loss_at_peak']:.3g} → {r['final_loss']:.3g} | "
        f"{r['min_l2_at_peak']:.3g} → {r['final_min_l2']:.3g} | {_cell(r['collapse_step'])} |"
        for row in runs
        for r in row
    ] + [
        f"| stop-gradient | {r['frustration']:g} | {r['seed']} | {fmt_value(r['peak_accuracy'])}"
        f" at {r['peak_step']:g} | {fmt_value(r['final_accuracy'])} | "
        f"{fmt_value(r['accuracy_test_at_peak'])} → {fmt_value(r['final_accuracy_test'])} | "
        f"{r['loss_at_peak']:.3g} → {r['final_loss']:.3g} | "
        f"{r['min_l2_at_peak']:.3g} → {r['final_min_l2']:.3g} | {_cell(r['collapse_step'])} |"
        for r in sg_runs
    ]

    r2, r0 = runs[i2][0], runs[i0][0]
    fig1 = save_figure(_fig_network_opening(r2, sg_runs[0], r0), out / "network_opening.png")
    fig2 = save_figure(plot_network_phi(plain), out / "network_phi.png")
    pred_growth = pred[ic[-1]] / pred[ic[0]]
    net_growth = rate_mean[ic[-1]] / rate_mean[ic[0]]
    m0 = r0["min_l2"]
    body = [
        f"The default network of the package: an MLP {data.n_inputs} → {config.width} → "
        f"{config.dim} ({config.activation}) on scikit-learn's bundled digits "
        f"({data.n_samples} training and {data.labels_test.shape[0]} test images, "
        f"{data.n_classes} classes), trained by full-batch SGD at lr = {lr:g} for "
        f"{config.steps} steps with the plain loss `L_E` (the sample embeddings are the "
        "encoder's outputs `x_i = f(ξ_i)`; labels start at `2N(0, 1)`; float64). A fraction "
        "`φ` of the training samples is shared (aligned with every class). All plain trainings "
        f"are one `jit(vmap)` over φ ∈ {{{', '.join(f'{p:g}' for p in phis)}}} × "
        f"{S_plain} seed(s) (compile {plain.metadata['compile_seconds']:.1f} s, run "
        f"{plain.metadata['run_seconds']:.1f} s); the stop-gradient trainings (`L_P^sg`, "
        f"{S_sg} seed(s)) start from the same encoder, labels and shared samples.",
        f"- **The opening observation** (φ = {NETWORK_PHI:g}, seed {r2['seed']}): the training "
        f"accuracy peaks at {fmt_value(r2['peak_accuracy'])} (step {r2['peak_step']:g}) and "
        f"falls to {fmt_value(r2['final_accuracy'])} while the loss falls "
        f"{r2['loss_at_peak']:.3g} → {r2['final_loss']:.3g} and the label MinL2 "
        f"{r2['min_l2_at_peak']:.3g} → {r2['final_min_l2']:.3g}. With stop-gradient from the "
        f"same start the accuracy goes {fmt_value(sg_runs[0]['peak_accuracy'])} → "
        f"{fmt_value(sg_runs[0]['final_accuracy'])} and MinL2 "
        f"{sg_runs[0]['min_l2_at_peak']:.3g} → {sg_runs[0]['final_min_l2']:.3g}. At φ = 0 the "
        f"accuracy holds ({fmt_value(r0['peak_accuracy'])} → "
        f"{fmt_value(r0['final_accuracy'])}), yet the label MinL2 still decays after the peak, "
        f"{r0['min_l2_at_peak']:.3g} → {r0['final_min_l2']:.3g} (from {m0[0]:.3g} at the "
        f"start; late power-law exponent {r0['power_law_exponent']:.3g}): a late decay "
        "without frustration, which the minimal model does not have (`λ+ = 0` at `M = 0`).",
        _table(
            "variant | φ | seed | peak training accuracy at step | final | test accuracy "
            "(peak → end) | loss (peak → end) | MinL2 (peak → end) | collapse step",
            member_rows,
        ),
        _img(fig1, "plain and stop-gradient network from the same start"),
        "(a) nearest-label accuracy of the clean training samples (solid) and of the test "
        "images (dashed) against the step; (b) the training loss; (c) the label MinL2, log-log; "
        "dots at the peak of the training accuracy.",
        "- **Against the minimal model** (reported, not verified). The minimal model with the "
        "network's counts (`M = round(φN)` shared, `n = (N − M)/K` per class: the digits' "
        "classes are nearly balanced) collapses at `λ+(n, M)` per unit time of the summed "
        f"loss, i.e. `lr λ+/N` per SGD step. Over φ = {NETWORK_COLLAPSE_PHI[0]:g} → "
        f"{NETWORK_COLLAPSE_PHI[-1]:g} that rate grows {pred_growth:.3g}×; the network's late "
        f"exponential rate (seed mean) changes {net_growth:.3g}×. The single constant `c` "
        f"mapping the minimal model's rate onto the network's is {rate_map['c']:.3g} with "
        f"ratios spread {rate_map['spread']:.3g}× (rms log deviation "
        f"{rate_map['log_rms']:.3g}); for the collapse step against the slow time "
        f"`1/|lr λ+/N|` it is {collapse_map['c']:.3g}, spread {collapse_map['spread']:.3g}×. "
        f"The late MinL2 decay (steps ≥ {config.steps // 2}) is better fitted by a power law "
        f"in {n_pow} and by an exponential in {n_exp} of the {n_pow + n_exp} frustrated "
        "trainings (the residuals of `log MinL2`, two parameters each).",
        _table(
            "φ | M | n | λ+(n, M) | lr λ+/N per step | network late rate per step | rate / "
            "(lr λ+/N) | power-law exponent | prefers power law / exponential | collapse step "
            "| slow time 1/abs(lr λ+/N)",
            ratio_rows,
        ),
        _img(fig2, "the network's late decay and collapse step against φ"),
        "(a) magnitude of the late exponential rate per step, each seed and the mean ± "
        "standard deviation, beside the minimal model's `|lr λ+/N|` and the same times the "
        "fitted constant; (b) the late power-law exponent; (c) the collapse step beside the "
        "minimal model's slow time, raw and times its fitted constant.",
    ]
    curves = {
        "plain": {f"{phis[i]:g}": {k: runs[i][0][k] for k in _CURVES} for i in range(len(phis))},
        "stop_gradient": {f"{NETWORK_PHI:g}": {k: sg_runs[0][k] for k in _CURVES}},
    }
    drop = set(_CURVES) | {"step"} | {"rankme", "std", "nc1", "min_l2_means"}
    numbers = {
        "data": {
            "name": data.name,
            "n_samples": data.n_samples,
            "n_test": int(data.labels_test.shape[0]),
            "n_classes": data.n_classes,
            "class_counts": data.class_counts,
        },
        "config": config._asdict(),
        "lr": lr,
        "frustration": list(phis),
        "step": plain.step,
        "plain": [{k: v for k, v in r.items() if k not in drop} for row in runs for r in row],
        "stop_gradient": [{k: v for k, v in r.items() if k not in drop} for r in sg_runs],
        "curves": curves,
        "minimal_model": {k: np.asarray(v) for k, v in mm.items()},
        "lambda_plus_closed_form": closed,
        "lambda_plus_eigvals": eig,
        "late_fit_numpy": mine,
        "rate_map": rate_map,
        "collapse_map": collapse_map,
        "preferred_form": {"power law": n_pow, "exponential": n_exp},
        "sweep_seconds": {
            "plain_compile": plain.metadata["compile_seconds"],
            "plain_run": plain.metadata["run_seconds"],
            "stop_gradient_compile": sg.metadata["compile_seconds"],
            "stop_gradient_run": sg.metadata["run_seconds"],
        },
    }
    return Section(S, body, [fig1, fig2], checks, numbers)
