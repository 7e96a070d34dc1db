"""Sizes of a run (`ReproduceConfig`, the `QUICK` and `FULL` presets) and the section
names and titles."""

from __future__ import annotations

from typing import NamedTuple

#: Section names in report order.
SECTIONS = ("embedding", "projection", "sweep", "teacher_student", "diagnostics", "network")


_TITLES = {
    "embedding": "Embedding-only model: fast alignment, slow collapse (docs/theory.md §2)",
    "projection": "Projection head and stop-gradient: P1-P3 (docs/theory.md §3)",
    "sweep": "Frustration sweeps: phase diagram and slow-rate fit (docs/theory.md §2, §3)",
    "teacher_student": "Linear teacher-student model (docs/theory.md §4)",
    "diagnostics": "Collapse diagnostics on simulated embeddings (docs/theory.md §5)",
    "network": "A trained network: the opening observation and the minimal model's time scale",
}


class ReproduceConfig(NamedTuple):
    """Sizes of a [`reproduce`][collapse_jax.reproduce.reproduce] run.
    [`QUICK`][collapse_jax.reproduce.QUICK] and [`FULL`][collapse_jax.reproduce.FULL] are the two
    presets.

    Attributes:
        classes, per_class, shared, dim, seed: the embedding model `(K, n, M, d)` and its start
            (section 1; the `M = 0` comparison uses the same `K, n, d` and seed).
        t_min, t1, points: log-spaced save times of the embedding runs (section 1 adds 40
            equally spaced times over the fast phase, on which the fast rate is fitted).
        projection_seed, projection_t1: start and horizon of the projection trajectories
            (same `K, n, M, d`).
        projection_seeds: starts classified by branch for P2 (1: only ``projection_seed``).
        sweep_frustration: ``(start, stop, count)`` ratios of the embedding sweep (stop
            included); ``sweep_seeds`` seeds each.
        integrated_sweep: also run the sweep with diffrax (explicit ``Tsit5``) on
            ``integrated_sweep`` ratios x 2 seeds (0: skip) and hold its fitted slow and fast
            rates to `lambda_pm` written out.
        projection_sweep: run the projection-model sweep where
            ``collapse_jax.projection_sweep`` exists;
            ``projection_sweep_frustration``, ``projection_sweep_seeds``,
            ``projection_sweep_t1``, ``projection_sweep_per_class``: its sizes.
        ts_frustration, ts_seeds, ts_t1: teacher-student runs (docs/theory.md §4 defaults
            otherwise: `D = 100, P = 400, p = 5`).
        diagnostics_dim, diagnostics_t1, diagnostics_points: the embedding runs whose sample
            embeddings are diagnosed (section 5); `d > K` so that dimensional collapse shows.
        rates_vs_n, rates_vs_n_frustration, rates_vs_n_dim, rates_vs_n_t1: the per-class
            counts `n` (at one fixed frustration ratio) whose integrated fast and slow rates
            are held to `lambda_pm` (section 1).
        sweep_expm_members: members of the exact-path sweep (spread over the ratios) whose
            MinL2(t) is checked against ``scipy.linalg.expm`` (section 3).
        projection_reference_t1: the projection trajectories (lifted reduced path) are
            checked against a scipy LSODA integration of every sample up to this time
            (section 2; 0: skip).
        ts_sg_t1: horizon of the teacher-student stop-gradient runs (long enough for them to
            reach their fixed point: `|F|` falls to about 1e-11 of its start by `t = 2000`).
        network_frustration, network_seeds, network_steps: the plain network trainings
            (section 6: the default MLP on the bundled digits, full-batch SGD at the default
            learning rate), one ``jit(vmap)`` over ratios x seeds; the ratios must include 0,
            0.02, 0.04 and 0.08 (the ratios the section's claims are made at).
        network_sg_seeds: stop-gradient trainings at `phi = 0.02` (seeds `0..S-1`, the same
            starts as the plain runs of those seeds).
    """

    classes: int = 3
    per_class: int = 10
    shared: int = 2
    dim: int = 4
    seed: int = 0
    t_min: float = 1e-2
    t1: float = 1e3
    points: int = 100
    projection_seed: int = 1
    projection_t1: float = 1e3
    projection_seeds: int = 1
    sweep_frustration: tuple[float, float, int] = (0.0, 0.5, 16)
    sweep_seeds: int = 4
    integrated_sweep: int = 3
    projection_sweep: bool = True
    projection_sweep_frustration: tuple[float, float, int] = (0.0, 0.3, 4)
    projection_sweep_seeds: int = 2
    projection_sweep_t1: float = 1e3
    projection_sweep_per_class: int = 10
    ts_frustration: tuple[float, ...] = (0.0, 0.1, 0.2)
    ts_seeds: int = 1
    ts_t1: float = 400.0
    diagnostics_dim: int = 8
    diagnostics_t1: float = 100.0
    diagnostics_points: int = 40
    rates_vs_n: tuple[int, ...] = (5, 10, 20, 40)
    rates_vs_n_frustration: float = 0.2
    rates_vs_n_dim: int = 2
    rates_vs_n_t1: float = 100.0
    sweep_expm_members: int = 3
    projection_reference_t1: float = 1e3
    ts_sg_t1: float = 2000.0
    network_frustration: tuple[float, ...] = (0.0, 0.02, 0.04, 0.08)
    network_seeds: int = 1
    network_steps: int = 10_000
    network_sg_seeds: int = 1


#: ``--quick``: a few minutes on a 2-core laptop CPU, most of it JAX compilation.
QUICK = ReproduceConfig()


#: The full run: larger sweeps, P2 branch counts over many starts, more teacher-student runs
#: (sized for an accelerator; the fixed-point searches run on the host either way).
FULL = ReproduceConfig(
    points=200,
    projection_seeds=12,
    sweep_frustration=(0.0, 0.5, 64),
    sweep_seeds=16,
    integrated_sweep=16,
    projection_sweep_frustration=(0.0, 0.4, 12),
    projection_sweep_seeds=4,
    ts_frustration=(0.0, 0.1, 0.2, 0.3),
    ts_seeds=3,
    ts_sg_t1=1e4,  # seed 2 at f = 0 is still approaching its fixed point at t = 2000
    diagnostics_dim=16,
    diagnostics_points=80,
    network_frustration=(0.0, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08),
    network_seeds=4,
    network_sg_seeds=4,
)
