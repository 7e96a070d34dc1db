"""Figures of the network against the minimal model: the late decay and the collapse step
against the frustration ratio, and the opening comparison of ``collapse-jax reproduce``."""

from __future__ import annotations

import numpy as np

from ._base import PHI_LABEL, _finite_rows, new_figure, save_figure


def _seed_stats(values):
    """Per ratio (rows of `(F, S)`): mean and standard deviation over the finite seeds (NaN
    where none is finite; a standard deviation of 0 with one finite seed)."""
    return _finite_rows(values, np.mean), _finite_rows(values, np.std)


def _per_seed(ax, phi, values, color, label):
    """Every seed as a small marker, the seed mean with its standard deviation as error bars;
    ``values`` `(F, S)`. Non-finite entries (e.g. no collapse) are not drawn."""
    values = np.asarray(values, dtype=np.float64)
    for s in range(values.shape[1]):
        ax.plot(phi, values[:, s], ".", color=color, alpha=0.35, ms=5,
                label="each seed" if s == 0 else None)  # fmt: skip
    mean, std = _seed_stats(values)
    ok = np.isfinite(mean)
    ax.plot(phi[ok], mean[ok], "o-", color=color, ms=5, label=label)
    ax.errorbar(phi[ok], mean[ok], yerr=std[ok], fmt="none", ecolor=color, capsize=3)
    return mean


def plot_network_phi(sweep, *, lr_index: int = 0, path=None):
    """The network's late decay and collapse step against the frustration ratio, beside the
    minimal model's slow rate for the same counts.

    ``sweep``: a [`NetworkSweep`][collapse_jax.NetworkSweep] of the plain network (ratios x
    seeds, one learning rate of it chosen by ``lr_index``), whose metadata holds
    ``n_samples`` and ``n_classes``. The minimal model's rate per step is
    [`minimal_model_rates`][collapse_jax.minimal_model_rates] `lr lambda_+(n, M) / N` and the
    constants that map it onto the network are [`time_scale_map`][collapse_jax.time_scale_map]
    fits over the ratios `phi > 0`. Panels, each seed a small marker and the seed mean with
    its standard deviation as error bars:

    (a) `|r|`, the magnitude of the late exponential rate of the label MinL2 per step (the
    summary's ``slow_rate_fit``; a decay has `r < 0`), log axis; the minimal model's
    `|lr lambda_+ / N|` (solid black) and the same times the fitted constant `c` (dashed).
    At `phi = 0` the minimal model's rate is 0 and is not drawn.
    (b) the late power-law exponent `p` (``power_law_exponent``, `MinL2 ~ step^p`), with how
    many trainings prefer each form in the legend.
    (c) the collapse step (``collapse_step``: first step after the peak with the training
    accuracy 0.1 below it; trainings without one are not drawn), log axis; the minimal model's
    slow time `1/|lr lambda_+ / N|` (dotted) and the same times its fitted constant (dashed).

    Returns the ``matplotlib.figure.Figure``; with ``path`` it is also written there
    ([`save_figure`][collapse_jax.save_figure]).
    """
    from .._network_study import minimal_model_rates, time_scale_map

    phi = np.asarray(sweep.frustration, dtype=np.float64)
    lr = float(np.asarray(sweep.lr)[lr_index])
    summ = {k: np.asarray(v)[:, :, lr_index] for k, v in sweep.summary.items()}
    meta = sweep.metadata
    mm = minimal_model_rates(meta["n_samples"], meta["n_classes"], phi, lr)
    pred = np.abs(np.asarray(mm["rate_per_step"], dtype=np.float64))
    pos = phi > 0
    fig, axes = new_figure(1, 3, figsize=(17, 4.8))

    ax = axes[0]
    rate = np.abs(summ["slow_rate_fit"])
    mean_rate = _per_seed(ax, phi, rate, "C0", "network: late exponential rate |r|")
    rate_map = time_scale_map(mean_rate[pos], pred[pos])
    ax.plot(phi[pos], pred[pos], "s-", color="k", ms=4,
            label=r"minimal model $|lr\,\lambda_+(n, M)/N|$")  # fmt: skip
    ax.plot(phi[pos], rate_map["c"] * pred[pos], "--", color="0.4",
            label=f"minimal model × c, c = {rate_map['c']:.3g} "
            f"(spread {rate_map['spread']:.3g})")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("late decay rate of the label MinL2 per step")
    ax.set_title("(a) late exponential rate against the minimal model")

    ax = axes[1]
    better = np.asarray(summ["better_fit"]).astype(str)
    counts = f"power law preferred by {int(np.sum(better == 'power law'))} of {better.size}"
    _per_seed(ax, phi, summ["power_law_exponent"], "C1", f"network ({counts})")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_ylabel(r"late power-law exponent $p$ (MinL2 $\sim$ step$^p$)")
    ax.set_title("(b) late power-law exponent")

    ax = axes[2]
    collapse = summ["collapse_step"]
    mean_collapse = _per_seed(ax, phi, collapse, "C3", "network: collapse step")
    with np.errstate(divide="ignore"):
        slow_time = 1.0 / pred
    cmap = time_scale_map(mean_collapse[pos], slow_time[pos])
    ax.plot(phi[pos], slow_time[pos], ":", color="k",
            label=r"minimal model slow time $1/|lr\,\lambda_+/N|$")  # fmt: skip
    ax.plot(phi[pos], cmap["c"] * slow_time[pos], "--", color="0.4",
            label=f"slow time × c, c = {cmap['c']:.3g} (spread {cmap['spread']:.3g})")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("collapse step (optimiser updates)")
    ax.set_title("(c) collapse step against the slow time")
    for ax in axes:
        ax.set_xlabel(PHI_LABEL)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"network model ({meta.get('data', 'data')}, N = {meta['n_samples']}, "
        f"K = {meta['n_classes']}, lr = {lr:g}) against the minimal model with the same counts; "
        "error bars: standard deviation over seeds"
    )
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=120)
    return fig


def _fig_network_opening(plain: dict, stop_gradient: dict, reference: dict | None = None):
    """The opening figure of the report's network section: the plain and the stop-gradient
    training from the same start (and the plain training at `phi = 0`), drawn by
    [`plot_network_run`][collapse_jax.plot_network_run]: accuracy (test dashed) against the
    step, the loss and the label MinL2, log steps."""
    from ._network import plot_network_run

    runs = {"plain": plain, "stop-gradient": stop_gradient}
    if reference is not None:
        runs[f"plain, φ = {reference['frustration']:g}"] = reference
    fig = plot_network_run(runs)
    fig.suptitle(
        f"network on digits from one start (seed {plain.get('seed', 0)}): plain and "
        f"stop-gradient at φ = {plain['frustration']:g} ({plain['shared']} shared training "
        "samples); dots: peak training accuracy"
    )
    return fig
