"""The figures of ``collapse-jax reproduce``, one builder a figure, each drawn from its
section's numbers (the dicts the report writes to ``numbers.json``) and returned, not saved."""

from __future__ import annotations

import math

import numpy as np

from .._data import shared_from_frustration
from ._base import TIME_LABEL, new_figure


def _fig_timescales(nb: dict):
    """Figure: MinL2(t) of the embedding model (exact, diffrax, expm), fits and errors."""
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
        ax.set_xlabel(TIME_LABEL)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"Embedding model, K={nb['classes']}, n={nb['per_class']}, M={M}, d={nb['dim']}, "
        f"seed {nb['seed']}"
    )
    fig.tight_layout()
    return fig


def _fig_spectra(rep: dict, rep0: dict, M: int):
    """Figure: Jacobian eigenvalues per sector against the closed forms."""
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
    from .._exact import lambda_pm

    fig, axes = new_figure(1, 2, figsize=(12, 4.4))
    ns = np.asarray(rn["per_class"], dtype=np.float64)
    phi, K = rn["frustration"], rn["classes"]
    grid = np.arange(int(ns.min()), int(ns.max()) + 1)
    Ms = np.round(shared_from_frustration(K, grid, phi))
    lam = np.stack(lambda_pm(grid, Ms), axis=-1)  # (lambda+, lambda-) at every n
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


def _fig_projection_dynamics(nb: dict):
    """Figure of the projection trajectories (MinL2, accuracy, `|eig W|`, `max eig Omega`)
    from the ``projection`` numbers; returns the ``matplotlib`` Figure (not saved)."""
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
        ax.set_xlabel(TIME_LABEL)
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


def _fig_projection_sweep(runs: dict, ts):
    """Figure: projection-model sweep with and without stop-gradient."""
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
    axes[2].set_xlabel(TIME_LABEL)
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


def _fig_diagnostics(nb: dict, M: int):
    """Figure: collapse diagnostics along the two embedding-model trajectories."""
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
        ax.set_xlabel(TIME_LABEL)
    for ax in axes.ravel():
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Collapse diagnostics of the sample embeddings, embedding model, d={nb['dim']}")
    fig.tight_layout()
    return fig
