"""Figures (matplotlib, Agg backend: no display needed).

Every builder makes its ``Figure`` with [`new_figure`][collapse_jax.new_figure] (outside
pyplot's global state) and returns it; [`save_figure`][collapse_jax.save_figure] writes it
atomically. The figures of the models and sweeps are public; those of ``collapse-jax
reproduce``, drawn from its sections' numbers, are private to the report.
"""

from __future__ import annotations

from ._base import new_figure, save_figure
from ._models import (
    mechanism_phase_figure,
    mechanism_summary_figure,
    phase_diagram_figure,
    plot_projection_comparison,
    spectrum_figure,
    stop_gradient_comparison_figure,
    sweep_figure,
    teacher_student_figure,
)
from ._network import plot_network_run
from ._network_study import plot_network_phi

__all__ = [
    "new_figure",
    "save_figure",
    "sweep_figure",
    "phase_diagram_figure",
    "teacher_student_figure",
    "plot_projection_comparison",
    "stop_gradient_comparison_figure",
    "mechanism_phase_figure",
    "mechanism_summary_figure",
    "spectrum_figure",
    "plot_network_run",
    "plot_network_phi",
]
