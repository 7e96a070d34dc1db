"""The figures of the models, sweeps and mechanisms (what the CLI draws)."""

from __future__ import annotations

import numpy as np

from ._base import PHI_LABEL, TIME_LABEL, _finite_rows, _label_panels, new_figure, save_figure


def sweep_figure(result, rates: dict, path=None, *, integrated: dict | None = None):
    """Phase diagram of a frustration sweep: final MinL2, collapse rate, MinL2(t).

    Panels: (a) final MinL2 vs frustration ratio (each seed, and the geometric mean);
    (b) the collapse rate: `−lambda_plus` (closed form, line) against the rates fitted to
    MinL2(t) (markers; where ``integrated`` is given, the rates fitted to a diffrax-integrated
    sweep, a dict with ``frustration`` and ``slow_rate_fit`` of shape ``(ratios, seeds)``, else
    those of ``rates``); (c) MinL2(t) of the first seed for a few ratios. Values below 1e-30 are
    drawn at 1e-30 (they reach float64 underflow at long times).

    Returns the ``matplotlib.figure.Figure``; with ``path`` it is also written there
    ([`save_figure`][collapse_jax.save_figure]).
    """
    phi = result.frustration
    floor = 1e-30
    final = np.clip(result.min_l2[..., -1], floor, None)
    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for j in range(final.shape[1]):
        ax.semilogy(phi, final[:, j], ".", color="0.6", label="seeds" if j == 0 else None)
    ax.semilogy(
        phi,
        np.exp(np.mean(np.log(final), axis=1)),
        "-o",
        color="C0",
        label="geometric mean over seeds",
    )
    ax.set_xlabel(PHI_LABEL)
    ax.axhline(floor, color="C3", lw=0.8, ls=":", label=f"values below {floor:g} drawn here")
    ax.set_ylabel(rf"MinL2 at $t = {result.t[-1]:.3g}$")
    ax.set_title("(a) final class separation")
    ax.legend()
    ax = axes[1]
    closed = r"$-\lambda_+$, closed form $\frac{1}{2}[(n+M+1)-\sqrt{(n+M+1)^2-4M}]$"
    ax.plot(phi, -rates["slow_rate_predicted"], "-", color="k", label=closed)
    if integrated is not None:
        fit = np.asarray(integrated["slow_rate_fit"], dtype=np.float64)
        phi_i = np.asarray(integrated["frustration"], dtype=np.float64)
        for j in range(fit.shape[1]):
            ax.plot(phi_i, -fit[:, j], "o", ms=8 - 3 * j, mfc="none", color=f"C{1 + j}",
                    label=f"fit to diffrax-integrated MinL2(t), seed {j}")  # fmt: skip
    else:
        ax.plot(phi, -np.nanmean(rates["slow_rate_fit"], axis=1), "o", mfc="none",
                label="fit (mean over seeds)")  # fmt: skip
    ax.set_xlabel(r"frustration ratio $\varphi$")
    ax.set_ylabel(r"collapse rate $-\mathrm{d}\log \mathrm{MinL2}/\mathrm{d}t$ (1/time)")
    ax.set_title("(b) slow collapse rate")
    ax.legend(fontsize=8)
    ax = axes[2]
    picks = np.unique(np.linspace(0, len(phi) - 1, min(5, len(phi))).astype(int))
    for i in picks:
        ax.loglog(
            result.t,
            np.clip(result.min_l2[i, 0], 1e-300, None),
            label=rf"$\varphi={phi[i]:.3f}$, $M={result.shared[i]:.3g}$",
        )
    top = np.nanmax(result.min_l2[picks, 0])
    ax.set_ylim(max(floor, np.nanmin(result.min_l2[picks, 0])), 3 * top)
    ax.set_xlabel("time t")
    ax.set_ylabel("MinL2(t)")
    ax.set_title("(c) MinL2 trajectories (seed 0)")
    ax.legend(fontsize=8)
    meta = result.metadata
    fig.suptitle(
        f"{meta['model']} model, K={meta['n_classes']}, n={meta['per_class']}, "
        f"d={meta['dim']}, {len(result.seed)} seeds, method={meta['method']}"
    )
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=120)
    return fig


def phase_diagram_figure(results: dict, *, floor: float = 1e-12):
    """Phase diagram of projection-model sweeps, one curve per variant (P1 / P2).

    ``results`` maps a label (e.g. ``"with stop-gradient"``) to a
    [`SweepResult`][collapse_jax.SweepResult] over the same ratios. Panels: (a) final MinL2
    vs frustration ratio (seeds as dots, geometric mean as a line); values below ``floor``
    (round-off: a collapsed state has MinL2 ~ 1e-16) are drawn at ``floor``; (b) final
    accuracy on clean samples (undefined, so not drawn, once MinL2 is at round-off); (c)
    collapse time: first save time with MinL2 below 1e-2 of its start.

    Returns the ``matplotlib.figure.Figure`` (write it with
    [`save_figure`][collapse_jax.save_figure]). The mean curve of each variant carries its
    label on every panel, so its data can be read back.
    """
    from .._sweep import collapse_time

    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    first = next(iter(results.values()))
    for k, (label, res) in enumerate(results.items()):
        color, style = f"C{k}", ("-o", "--s", ":^", "-.v")[k % 4]  # overlapping curves stay visible
        phi = res.frustration
        final = np.clip(res.min_l2[..., -1], floor, None)
        for j in range(final.shape[1]):
            axes[0].semilogy(phi, final[:, j], ".", color=color, alpha=0.4)
        axes[0].semilogy(
            phi, np.exp(np.mean(np.log(final), axis=1)), style, color=color, label=label
        )
        acc_mean = _finite_rows(res.accuracy[..., -1], np.mean)
        axes[1].plot(phi, acc_mean, style, color=color, label=label, mfc="none")
        ct_median = _finite_rows(collapse_time(res.t, res.min_l2), np.median)
        axes[2].semilogy(phi, ct_median, style, color=color, label=label)
    axes[0].axhline(floor, color="0.3", lw=0.8, ls=":", label=f"values below {floor:g} drawn here")
    axes[1].set_ylim(-0.05, 1.05)
    panels = [
        (rf"MinL2 at $t = {first.t[-1]:.3g}$", "(a) final class separation"),
        (
            "final accuracy (clean samples, nearest label)",
            "(b) final accuracy (not drawn once collapsed)",
        ),
        ("collapse time t (MinL2 < 1e-2 of start)", "(c) collapse time (not drawn if none)"),
    ]
    _label_panels(axes, panels, xlabel=PHI_LABEL)
    meta = first.metadata
    fig.suptitle(
        f"projection model phase diagram, K={meta['n_classes']}, n={meta['per_class']}, "
        f"d={meta['dim']}, {len(first.seed)} seeds, t1={first.t[-1]:.3g}"
    )
    fig.tight_layout()
    return fig


def _ts_label(run) -> str:
    sg = " + stop-grad" if run.get("stop_gradient") else ""
    return f"{run['variant']}{sg}, f={run['frustration']:g}, seed {run['seed']}"


def teacher_student_figure(runs, title: str | None = None):
    """Teacher-student runs (linear teacher-student model): a ``Figure`` with four panels.

    ``runs`` are dicts as returned by
    [`run_teacher_student`][collapse_jax.run_teacher_student].
    Panels: (a) `MinL2(t)` (log-log); (b) `log(MinL2 / MinL2(t_min))` against `t lambda_H`, time in
    units of the closed-form rate `lambda_H` (the smallest Hessian eigenvalue with a separation
    component, ``slow_rate_hessian``; plain runs only), with the line of slope -1: the late-time
    curves are parallel to it only if the closed form is the collapse rate (it is not fitted here);
    where no run has a closed-form rate (projection variants), the norms `|U|`, `|y|`, `|W|` against
    `t` instead (collapse by rescaling); (c) nearest-label accuracy (scale-free) with the bound
    `1 - f` dashed and the peak marked; (d) the loss, with the loss at the peak-accuracy time marked
    (accuracy falling while the loss keeps falling is the two-stage pattern). Save with
    [`save_figure`][collapse_jax.save_figure].
    """
    fig, axes = new_figure(1, 4, figsize=(21, 4.6))
    hessian_x = []
    for k, run in enumerate(runs):
        color = f"C{k % 10}"
        t = np.asarray(run["t"], dtype=np.float64)
        m = np.clip(np.asarray(run["min_l2"], dtype=np.float64), 1e-300, None)
        label = _ts_label(run)
        axes[0].loglog(t, m, color=color, label=label)
        lam = run.get("slow_rate_hessian", float("nan"))
        if lam is not None and np.isfinite(lam):
            axes[1].plot(
                t * lam, np.log(m / m[0]), color=color, label=rf"{label}, $\lambda_H$={lam:.3f}"
            )
            hessian_x.append(float(t[-1] * lam))
        acc = np.asarray(run["accuracy"], dtype=np.float64)
        axes[2].semilogx(t, acc, color=color, label=label)
        axes[2].axhline(run["accuracy_reference"], color=color, ls="--", lw=0.8)
        loss = np.asarray(run["loss"], dtype=np.float64)
        axes[3].loglog(t, np.clip(loss, 1e-300, None), color=color, label=label)
        peak_t = run.get("peak_time", float("nan"))
        if np.isfinite(peak_t):
            i = int(np.argmin(np.abs(t - peak_t)))
            axes[2].plot([t[i]], [acc[i]], "o", color=color, ms=4)
            axes[3].plot([t[i]], [max(loss[i], 1e-300)], "o", color=color, ms=4)
    if hessian_x:
        x = np.array([0.0, max(hessian_x)])
        axes[1].plot(x, -x, "k:", lw=1.2, label="slope -1 (closed-form rate)")
        axes[1].set_xlabel(r"$t\,\lambda_H$ (smallest Hessian eigenvalue, closed form)")
        axes[1].set_ylabel(r"$\ln(\mathrm{MinL2}/\mathrm{MinL2}(t_{min}))$")
        axes[1].set_title("(b) time in units of the Hessian rate")
    else:  # no closed-form rate (projection variants): the scale of the state instead
        for k, run in enumerate(runs):
            t = np.asarray(run["t"], dtype=np.float64)
            for key, ls in (("norm_U", "-"), ("norm_y", "--"), ("norm_W", ":")):
                v = np.asarray(run.get(key, np.full_like(t, np.nan)), dtype=np.float64)
                if np.any(np.isfinite(v)):
                    axes[1].loglog(
                        t,
                        np.clip(v, 1e-300, None),
                        ls=ls,
                        color=f"C{k % 10}",
                        label=f"{_ts_label(run)}: |{key[5:]}|",
                    )
        axes[1].set_xlabel("time t")
        axes[1].set_ylabel("Frobenius norm")
        axes[1].set_title("(b) scale: |U| solid, |y| dashed, |W| dotted")
    axes[0].set_xlabel("time t")
    axes[0].set_ylabel(r"MinL2 $= |y_+ - y_-|$")
    axes[0].set_title("(a) class separation")
    axes[2].set_xlabel("time t")
    axes[2].set_ylabel("nearest-label training accuracy")
    axes[2].set_title(r"(c) accuracy (dashed: $1-f$, dot: peak)")
    axes[2].set_ylim(0.4, 1.02)
    axes[3].set_xlabel("time t")
    axes[3].set_ylabel("training loss")
    axes[3].set_title("(d) loss (dot: at peak accuracy)")
    for ax in axes:
        if ax.has_data():
            ax.legend(fontsize=7)
    run0 = runs[0]
    fig.suptitle(
        title
        or f"linear teacher-student model, D={run0.get('input_dim', 100)}, "
        f"P={run0.get('samples', 400)}, p={run0.get('student_dim', 5)}"
    )
    fig.tight_layout()
    return fig


def plot_projection_comparison(ts, runs: dict[str, dict], *, title: str | None = None, bound=None):
    """MinL2(t) and clean-sample accuracy with and without stop-gradient.

    Args:
        ts: save times, shape `(T,)`.
        runs: label -> ``{"min_l2": (T,), "accuracy": (T,)}`` (accuracy NaN where MinL2 is at
            the round-off floor, where the nearest label is not defined).
        title: figure title.
        bound: optional floor drawn as a dotted line on the MinL2 panel (e.g. round-off).

    Returns:
        The ``matplotlib.figure.Figure`` (write it with
        [`save_figure`][collapse_jax.save_figure]); one labelled line per run on each panel.
    """
    ts = np.asarray(ts, dtype=np.float64)
    fig, (ax1, ax2) = new_figure(1, 2, figsize=(11, 4.2))
    styles = ["-", "--", "-.", ":"]
    for k, (label, run) in enumerate(runs.items()):
        ml = np.asarray(run["min_l2"], dtype=np.float64)
        acc = np.asarray(run["accuracy"], dtype=np.float64)
        ax1.loglog(ts, np.where(ml > 0, ml, np.nan), styles[k % 4], lw=2, label=label)
        ax2.semilogx(ts, acc, styles[k % 4], lw=2, label=label)
    if bound is not None:
        ax1.axhline(bound, color="gray", ls=":", lw=1, label="round-off floor")
    ax1.set_xlabel(TIME_LABEL)
    ax1.set_ylabel("MinL2 = min over c ≠ c′ of ‖y_c − y_c′‖ (embedding units)")
    ax1.set_title("label separation")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend()
    ax2.set_xlabel(TIME_LABEL)
    ax2.set_ylabel("nearest-label accuracy, clean samples (fraction)")
    ax2.set_title("accuracy with ŷ(x) = W x (gaps: MinL2 at round-off)")
    ax2.set_ylim(-0.05, 1.05)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _value_label(res, v) -> str:
    return "(no hyper-parameter)" if res["hyper"] is None else f"{res['hyper']} = {v:g}"


def mechanism_phase_figure(res: dict, *, floor: float = 1e-12):
    """Phase diagram of one mechanism: one curve per hyper-parameter value.

    ``res`` is a [`mechanism_sweep`][collapse_jax.mechanism_sweep] dict. Panels: (a)
    final MinL2 / initial MinL2 vs frustration ratio (seed median; below ``floor`` drawn at it); (b)
    late log-slope of MinL2 (0: a finite separation, < 0: collapsing, > 0: growing); (c) final
    clean-sample accuracy (not drawn once collapsed to round-off); (d) RankMe of the final
    clean-sample embeddings. Returns the ``matplotlib.figure.Figure`` (write it with
    [`save_figure`][collapse_jax.save_figure]); each value's curve carries its label on every
    panel.
    """
    fig, axes = new_figure(1, 4, figsize=(18, 4.2))
    phi = res["frustration"]
    for h, v in enumerate(res["values"]):
        color, style = f"C{h}", ("-o", "--s", ":^", "-.v")[h % 4]
        label = _value_label(res, v)
        ratio = np.median(res["min_l2"][:, h, :, -1] / res["min_l2"][:, h, :, 0], axis=-1)
        axes[0].semilogy(phi, np.clip(ratio, floor, None), style, color=color, label=label)
        axes[1].plot(phi, np.median(res["slow_rate"][:, h], axis=-1), style, color=color,
                     label=label)  # fmt: skip
        axes[2].plot(phi, _finite_rows(res["accuracy"][:, h, :, -1], np.mean), style,
                     color=color, label=label, mfc="none")  # fmt: skip
        axes[3].plot(phi, np.median(res["diag_rankme"][:, h], axis=-1), style, color=color,
                     label=label)  # fmt: skip
    axes[0].axhline(1e-2, color="0.3", lw=0.8, ls=":", label="collapse threshold 1e-2")
    axes[1].axhline(0.0, color="0.3", lw=0.8)
    axes[2].set_ylim(-0.05, 1.05)
    panels = [
        ("final MinL2 / initial MinL2", "(a) class separation at the horizon"),
        ("late rate d log MinL2 / dt", "(b) late collapse rate"),
        ("final accuracy (clean samples)", "(c) accuracy (not drawn once collapsed)"),
        ("RankMe of final clean samples", "(d) effective rank"),
    ]
    _label_panels(axes, panels, xlabel=PHI_LABEL)
    fig.suptitle(
        f"mechanism '{res['mechanism']}': K={res['n_classes']}, n={res['per_class']}, "
        f"d={res['dim']}, {len(res['seeds'])} seed(s), t1={res['t'][-1]:.3g}"
    )
    fig.tight_layout()
    return fig


def mechanism_summary_figure(results: dict, *, floor: float = 1e-12):
    """All mechanisms side by side, each at its default hyper-parameter value.

    Panels: (a) final / initial MinL2 vs frustration ratio; (b) MinL2(t) / MinL2(0) at the
    largest ratio (first seed). Returns the ``matplotlib.figure.Figure`` (write it with
    [`save_figure`][collapse_jax.save_figure]); one curve per mechanism, labelled by its name,
    on each panel.
    """
    from .._mechanisms import get_mechanism

    fig, axes = new_figure(1, 2, figsize=(13, 4.6))
    styles = ("-o", "--s", ":^", "-.v", "-D", "--x", ":P", "-.*")
    for k, (name, res) in enumerate(results.items()):
        default = get_mechanism(name).default
        h = 0 if default is None else int(np.argmin(np.abs(res["values"] - default)))
        label = name if res["hyper"] is None else f"{name} ({res['hyper']}={res['values'][h]:g})"
        style, color = styles[k % len(styles)], f"C{k}"
        ratio = np.median(res["min_l2"][:, h, :, -1] / res["min_l2"][:, h, :, 0], axis=-1)
        axes[0].semilogy(res["frustration"], np.clip(ratio, floor, None), style, color=color,
                         label=label)  # fmt: skip
        traj = res["min_l2"][-1, h, 0] / res["min_l2"][-1, h, 0, 0]
        axes[1].loglog(res["t"], np.clip(traj, floor, None), style[:-1] or "-", color=color,
                       label=label)  # fmt: skip
    axes[0].axhline(1e-2, color="0.3", lw=0.8, ls=":", label="collapse threshold")
    axes[0].set_xlabel(PHI_LABEL)
    axes[0].set_ylabel("final MinL2 / initial MinL2")
    axes[0].set_title("(a) which mechanisms keep a finite separation")
    last = next(iter(results.values()))
    axes[1].set_xlabel("time t")
    axes[1].set_ylabel("MinL2(t) / MinL2(0)")
    axes[1].set_title(rf"(b) trajectories at $\varphi = {last['frustration'][-1]:.3g}$")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"collapse-prevention mechanisms, K={last['n_classes']}, n={last['per_class']}, "
                 f"d={last['dim']}")  # fmt: skip
    fig.tight_layout()
    return fig


def spectrum_figure(singular_values, n_samples: int, *, alpha=None, fit_range=None,
                    title: str = ""):  # fmt: skip
    """Covariance spectrum of a set of embeddings (``collapse-jax diagnose --plot``).

    Draws `lambda_k = sigma_k^2 / N` against the rank `k` (log-log, label "covariance
    eigenvalues"; only the positive ones: the singular values at the round-off cut of
    [`singular_values`][collapse_jax.singular_values] are 0 and not drawn, so no round-off
    eigenvalue stretches the axis) and, where ``alpha`` (alpha-ReQ) is finite and at least two
    positive eigenvalues lie in ``fit_range = (lo, hi)`` (default all), the fitted power law
    `lambda_k ~ k^(-alpha)` over those ranks through their geometric centre (label starting
    "alpha-ReQ"). Returns the ``matplotlib.figure.Figure`` (write it with
    [`save_figure`][collapse_jax.save_figure]).
    """
    import math

    s = np.asarray(singular_values, dtype=np.float64)
    lam = s**2 / n_samples
    k = np.arange(1, lam.size + 1)
    pos = lam > 0
    fig, ax = new_figure(figsize=(5.5, 4))
    if pos.any():
        ax.loglog(k[pos], lam[pos], "o-", ms=3, label="covariance eigenvalues")
        lo, hi = fit_range if fit_range is not None else (1, lam.size)
        fit = pos & (k >= lo) & (k <= hi)
        if alpha is not None and math.isfinite(alpha) and fit.sum() >= 2:
            kk, ll = np.log(k[fit]), np.log(lam[fit])
            c = ll.mean() + alpha * kk.mean()
            ax.loglog(k[fit], np.exp(c - alpha * kk), "--", label=f"alpha-ReQ = {alpha:.3g}")
        ax.legend()
    ax.set_xlabel("rank k")
    ax.set_ylabel("eigenvalue lambda_k = sigma_k^2 / N")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def stop_gradient_comparison_figure(ts, runs: dict[bool, dict], y_final, *, title=None):
    """The same start integrated with and without stop-gradient, side by side.

    What ``collapse-jax simulate --model projection --figure PATH`` draws: the two runs of
    [`plot_projection_comparison`][collapse_jax.plot_projection_comparison], labelled
    "without stop-gradient (conservative)" and "with stop-gradient", with the round-off floor
    ([`roundoff_floor`][collapse_jax.roundoff_floor]) of the final labels ``y_final``
    as the bound.

    Args:
        ts: save times, shape `(T,)`.
        runs: ``stop_gradient`` (``False``, ``True``) -> ``{"min_l2": (T,), "accuracy": (T,)}``.
        y_final: the label embeddings `(K, d)` at the last save time of the run reported.
        title: figure title.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from .._metrics import roundoff_floor

    labelled = {
        "without stop-gradient (conservative)": runs[False],
        "with stop-gradient": runs[True],
    }
    bound = float(roundoff_floor(y_final))
    return plot_projection_comparison(ts, labelled, title=title, bound=bound)
