"""Figures (matplotlib, Agg backend: files only, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_projection_comparison"]


def plot_projection_comparison(
    ts, runs: dict[str, dict], path, *, title: str | None = None, bound=None
) -> Path:
    """MinL2(t) and clean-sample accuracy with and without stop-gradient (MODEL.md §3).

    Args:
        ts: save times, shape `(T,)`.
        runs: label -> ``{"min_l2": (T,), "accuracy": (T,)}`` (accuracy NaN where MinL2 is at
            the round-off floor and accuracy is not defined, MODEL.md §1).
        path: output file (PNG by suffix).
        title: figure title.
        bound: optional floor drawn as a dotted line on the MinL2 panel (e.g. round-off).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.asarray(ts, dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    styles = ["-", "--", "-.", ":"]
    for k, (label, run) in enumerate(runs.items()):
        ml = np.asarray(run["min_l2"], dtype=np.float64)
        acc = np.asarray(run["accuracy"], dtype=np.float64)
        ax1.loglog(ts, np.where(ml > 0, ml, np.nan), styles[k % 4], lw=2, label=label)
        ax2.semilogx(ts, acc, styles[k % 4], lw=2, label=label)
    if bound is not None:
        ax1.axhline(bound, color="gray", ls=":", lw=1, label="round-off floor")
    ax1.set_xlabel("time t (gradient-flow time, dimensionless)")
    ax1.set_ylabel("MinL2 = min over c ≠ c′ of ‖y_c − y_c′‖ (embedding units)")
    ax1.set_title("label separation")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend()
    ax2.set_xlabel("time t (gradient-flow time, dimensionless)")
    ax2.set_ylabel("nearest-label accuracy, clean samples (fraction)")
    ax2.set_title("accuracy with ŷ(x) = W x (gaps: MinL2 at round-off)")
    ax2.set_ylim(-0.05, 1.05)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend()
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
