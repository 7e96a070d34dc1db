"""The paper's whole story in one run: figures, verifications and a written report.

[`reproduce`][collapse_jax.reproduce.reproduce] runs six sections and writes PNG figures,
``report.md`` (which embeds them) and ``numbers.json`` (every number of the report,
machine-readable) into one folder:

1. ``embedding``: the embedding-only model: fast alignment and slow collapse. The exact
   sector solution against ``scipy.linalg.expm`` of the loss Hessian assembled in numpy; the
   diffrax-integrated path against the exact one; fast and slow rates fitted to the
   integrated path against `lambda_pm` written out in closed form, also against the class
   size `n` at fixed frustration; Jacobian sector spectra against the closed forms; `M = 0`
   against `M > 0`.
2. ``projection``: the projection head with and without stop-gradient (docs/theory.md §3, P1-P3):
   trajectories on the `N`-independent reduced path
   ([`simulate_projection`][collapse_jax.simulate_projection]) and fixed points found,
   polished and classified by
   [`projection_fixed_point`][collapse_jax.projection_fixed_point].
3. ``sweep``: a frustration sweep
   ([`embedding_sweep`][collapse_jax.embedding_sweep]) and its phase diagram;
   a few members against ``scipy.linalg.expm``; a small diffrax-integrated sweep
   whose fitted slow and fast rates (worst member) are held to `lambda_pm`; and a projection-model
   sweep with and without stop-gradient where this version of
   [`projection_sweep`][collapse_jax.projection_sweep] has ``projection_sweep``.
4. ``teacher_student``: the linear teacher-student model (docs/theory.md §4).
5. ``diagnostics``: the collapse diagnostics on diffrax-integrated embeddings (class-mean
   MinL2 checked against numpy, its decay against `lambda+` in closed form).
6. ``network``: the paper's opening observation in a trained network (an MLP on the bundled
   digits, plain and stop-gradient from the same start: the accuracy rises then falls while
   the loss keeps falling and the labels collapse), and the network's late decay and collapse
   step beside the minimal model's slow rate for the same counts.

The report reports; it does not re-derive. Every number comes from the library functions the
test suite checks (``lambda_pm``, ``exact_min_l2``, ``fit_slow_rate``,
``embedding_spectrum_report``, ``projection_fixed_point``, ``run_teacher_student``,
``trajectory_diagnostics``, ...), and every verification is stated with its measured error
and the tolerance it is held to. A section that raises is reported as failed and the others
still run.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from .._cache import CompileClock, _active_dir, compile_clock

# besides what the driver uses, the private names the tests reach through
# ``collapse_jax.reproduce`` (and ``Check``, ``Section``, ``TS_*`` for the API page)
# (the report's figures are built in the plots layer)
from .._plots._reproduce import (  # noqa: F401
    _fig_diagnostics,
    _fig_projection_dynamics,
    _fig_projection_fixed_points,
    _fig_projection_sweep,
    _fig_rates_vs_n,
    _fig_spectra,
    _fig_timescales,
)
from ._checks import Check, Section, _plain, fmt_error, fmt_value  # noqa: F401
from ._config import _TITLES, FULL, QUICK, SECTIONS, ReproduceConfig
from ._diagnostics_section import _diagnostics
from ._embedding_section import _embedding
from ._network_section import NETWORK_COLLAPSE_PHI, NETWORK_PHI, _network  # noqa: F401
from ._projection_section import _plateau, _projection, _projection_run  # noqa: F401
from ._references import (  # noqa: F401
    _collapsed_tangent,
    _np_omega,
    _np_projection_field,
    _scipy_projection_path,
)
from ._report import _default_command, _environment, _report
from ._sweep_section import _k_of_n, _projection_sweep_or_note, _sweep  # noqa: F401
from ._teacher_student_section import (  # noqa: F401
    TS_CLAIM_MAX_F,
    TS_TWO_STAGE_F,
    _teacher_student,
    _ts_split_time,
)

__all__ = [
    "ReproduceConfig",
    "QUICK",
    "FULL",
    "SECTIONS",
    "reproduce",
    "fmt_error",
    "fmt_value",
]


# --- driver ---------------------------------------------------------------------------------

_RUNNERS: dict[str, Callable] = {
    "embedding": _embedding,
    "projection": _projection,
    "sweep": _sweep,
    "teacher_student": _teacher_student,
    "diagnostics": _diagnostics,
    "network": _network,
}


def reproduce(
    out_dir="results",
    *,
    quick: bool = False,
    config: ReproduceConfig | None = None,
    sections: Sequence[str] = SECTIONS,
    progress: bool = False,
    command: str | None = None,
) -> dict:
    """Run the sections, write the figures, ``report.md`` and ``numbers.json`` to ``out_dir``.

    Args:
        out_dir: output folder (created if needed).
        quick: use [`QUICK`][collapse_jax.reproduce.QUICK] (a few minutes on a 2-core CPU) instead
            of [`FULL`][collapse_jax.reproduce.FULL].
        config: explicit sizes (overrides ``quick``).
        sections: which of [`SECTIONS`][collapse_jax.reproduce.SECTIONS] to run (report order is
            kept).
        progress: progress lines on stderr.
        command: the command line recorded in the report.

    Returns:
        ``{"report", "figures", "seconds", "numbers", "checks", "passed", "failed",
        "errors", "compile_seconds", "trace_seconds", "compute_seconds", "cache"}``: paths of
        the report and of every figure, wall seconds, the numbers file, every verification
        (dicts), counts of passed and failed verifications, the sections that raised (name ->
        one-line message), and where the wall time went: XLA compilation (or loading
        executables from the persistent compilation cache), tracing and lowering to XLA, and
        the rest (running, the references, the figures); ``cache``: the compilation cache's
        folder (``None`` when off) and its hits and misses.
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"sections must be a non-empty subset of {SECTIONS}, got {sections!r}")
    if not jax.config.jax_enable_x64:
        raise ValueError("reproduce needs float64: jax.config.update('jax_enable_x64', True)")
    cfg = config if config is not None else (QUICK if quick else FULL)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        if progress:
            print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    ctx: dict = {}
    done, errors, seconds, times = [], {}, {}, {}
    order = [s for s in SECTIONS if s in sections]
    with compile_clock() as clock:
        for k, name in enumerate(order, 1):
            log(f"[{k}/{len(order)}] {_TITLES[name]}")
            t0, c0 = time.perf_counter(), clock.snapshot()
            _run_section(name, cfg, out, log, ctx, done, errors)
            seconds[name] = time.perf_counter() - t0
            times[name] = _split(seconds[name], c0, clock.snapshot())
            log(f"  {_fmt_split(times[name])}")
        total = time.perf_counter() - start
        overall = _split(total, CompileClock().snapshot(), clock.snapshot())
    log(f"in all: {_fmt_split(overall)}")
    cache = {
        "dir": _active_dir(),
        "hits": overall.pop("cache_hits"),
        "misses": overall.pop("cache_misses"),
    }
    checks = [c for s in done for c in s.checks]
    figures = [f for s in done for f in s.figures]
    env = _environment()
    numbers = {
        "mode": "quick" if (config is None and quick) else ("full" if config is None else "custom"),
        "config": cfg._asdict(),
        "sections": {s.name: s.numbers for s in done},
        "checks": [c.as_dict() for c in checks],
        "seconds": total,
        "section_seconds": seconds,
        **{k: overall[k] for k in _TIME_KEYS},
        "section_times": times,
        "compilation_cache": cache,
        "errors": errors,
        "environment": env,
        "figures": [Path(f).name for f in figures],
    }
    numbers_path = out / "numbers.json"
    numbers_path.write_text(json.dumps(_plain(numbers), indent=1, allow_nan=False) + "\n")
    report_path = out / "report.md"
    report_path.write_text(
        _report(done, checks, numbers, command or _default_command(quick, config))
    )
    log(f"report: {report_path}")
    return {
        "report": str(report_path),
        "figures": figures,
        "seconds": total,
        "numbers": str(numbers_path),
        "checks": [c.as_dict() for c in checks],
        "passed": sum(c.passed for c in checks),
        "failed": sum(not c.passed for c in checks),
        "errors": errors,
        **{k: overall[k] for k in _TIME_KEYS},
        "cache": cache,
    }


_TIME_KEYS = ("compile_seconds", "trace_seconds", "compute_seconds")


def _split(wall: float, before: dict, after: dict) -> dict:
    """Where ``wall`` seconds went, from two ``compile_clock`` snapshots: compilation (or
    loading from the cache), tracing and lowering, and the rest; cache hits and misses."""
    comp = after["compile"] - before["compile"]
    trace = after["trace"] - before["trace"]
    return {
        "seconds": wall,
        "compile_seconds": comp,
        "trace_seconds": trace,
        "compute_seconds": max(wall - comp - trace, 0.0),
        "cache_hits": after["hits"] - before["hits"],
        "cache_misses": after["misses"] - before["misses"],
    }


def _fmt_split(t: dict) -> str:
    return (
        f"{t['seconds']:.1f} s (compile {t['compile_seconds']:.1f} s, trace "
        f"{t['trace_seconds']:.1f} s, compute {t['compute_seconds']:.1f} s)"
    )


def _run_section(name, cfg, out, log, ctx, done, errors) -> None:
    """Run one section into ``done``; one that raises is reported as failed (``errors``)."""
    try:
        done.append(_RUNNERS[name](cfg, out, log, ctx))
    except Exception as err:  # a failed section is reported, the others still run
        msg = f"{type(err).__name__}: {err}".splitlines()[0]
        errors[name] = msg
        log(f"  section {name} FAILED: {msg}")
        body = [f"**This section failed:** `{msg}`", "```", traceback.format_exc().rstrip(), "```"]
        done.append(Section(name, body, [], [], {}))
