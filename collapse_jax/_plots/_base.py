"""The figure machinery every builder shares: a ``Figure`` outside pyplot, an atomic save,
and the axis labels and panel helpers used by more than one figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: x-axis label of every plot against the frustration ratio
PHI_LABEL = r"frustration ratio $\varphi = M/(Kn+M)$"
#: x-axis label of every plot against (gradient-flow) time
TIME_LABEL = "time t (gradient-flow time, dimensionless)"


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=(8, 5), **subplots_kw):
    """A ``matplotlib.figure.Figure`` and its axes, outside pyplot's global state.

    Every figure builder of the package makes its figure here and returns it, so that a caller
    (or a test) can read the plotted data back from the axes; nothing has to be closed, the
    figure is garbage-collected like any object. ``subplots_kw`` go to ``Figure.subplots``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots_kw)


def save_figure(fig, path, *, dpi: int = 110) -> str:
    """Write ``fig`` to ``path`` (format from the suffix) atomically: the image is written
    under a temporary name in the same folder and renamed, so an interrupted write never
    leaves a half-written file behind. Creates the parent folder. Returns ``str(path)``."""
    from .._atomic import atomic_write

    path = Path(path)
    with atomic_write(path, prefix=f".{path.stem}.", suffix=path.suffix) as fh:
        fig.savefig(fh, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return str(path)


def _finite_rows(a, stat):
    """``stat`` of the finite entries of each row; NaN (not drawn) for rows with none."""
    a = np.asarray(a, dtype=np.float64)
    out = np.full(a.shape[0], np.nan)
    for i, row in enumerate(a):
        if np.isfinite(row).any():
            out[i] = stat(row[np.isfinite(row)])
    return out


def _label_panels(axes, panels, *, xlabel: str, legend_fontsize=8) -> None:
    """Give each of ``axes`` its ``(ylabel, title)`` from ``panels``, then every axis the
    same ``xlabel`` and a legend."""
    for ax, (ylabel, title) in zip(axes, panels, strict=True):
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=legend_fontsize)
