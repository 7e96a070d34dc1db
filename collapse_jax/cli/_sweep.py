"""``collapse-jax sweep``: jit(vmap) over frustration ratios x seeds, sharded."""

from __future__ import annotations

import os
import time

from . import _network
from ._common import (
    UsageError,
    _add_distributed_flags,
    _add_int_flag,
    _add_model_flags,
    _add_out_flag,
    _add_path_flag,
    _add_time_flags,
    _check_model,
    _check_run,
    _check_t_min,
    _frustration_range,
    _join_cluster,
    _note,
    _progress_meter,
)

COMMAND = "sweep"


def add_parser(sub):
    sw = sub.add_parser(COMMAND, help="jit(vmap) over frustration ratios x seeds, sharded")
    _add_model_flags(sw)
    sw.add_argument(
        "--frustration",
        type=_frustration_range,
        default="0:0.5:16",
        help="START:STOP:COUNT ratios, STOP included (default %(default)s)",
    )
    _add_int_flag(sw, "--seeds", 1, 4, "number of seeds 0..N-1 (default %(default)s)")
    _add_out_flag(sw, "results/sweep", "output folder (default %(default)s)")
    sw.add_argument(
        "--method",
        choices=["exact", "integrate"],
        default="exact",
        help="embedding model only: exact sector solution (default) or diffrax integration",
    )
    _add_path_flag(sw)
    sw.add_argument(
        "--rule",
        choices=["round", "spread"],
        default="round",
        help="how a ratio becomes shared rows (default %(default)s)",
    )
    _add_time_flags(sw, 1e3)
    _network.add_sweep_flags(sw)
    _add_distributed_flags(sw)


def _variant_name(stop_gradient: bool) -> str:
    return "sweep_stop_gradient" if stop_gradient else "sweep_conservative"


def run(args, progress):
    from .._integrate import log_times
    from .._models.embedding import embedding_sweep, fitted_rates
    from .._models.projection import projection_sweep
    from .._plots import phase_diagram_figure, save_figure, sweep_figure
    from .._sweep import save_sweep, sweep_summary

    _network.check_sweep_flags(args)
    if args.model == "network":
        return _network.run_sweep(args, progress, _join_cluster)
    _check_model(args)
    if args.method == "integrate" and args.model != "embedding":
        raise UsageError(
            "--method integrate is for the embedding model: a projection sweep always "
            "integrates; choose its path with --path {reduced,full}"
        )
    _check_t_min(args)
    writer = _join_cluster(args)  # with a cluster, only process 0 writes the files
    _check_run(args, writes=("sweep*.npz", "sweep.png"))
    ts = log_times(args.t_min, args.t1, args.points)
    grid = dict(n_classes=args.classes, per_class=args.per_class, dim=args.dim, ts=ts)
    _note(progress, f"sweeping {len(args.frustration)} ratios x {args.seeds} seeds ...")
    embedding = args.model == "embedding"
    start = time.perf_counter()
    if not embedding:
        # both fields: the phase diagram compares them (docs/theory.md §3 P1/P2)
        runs = {
            sg: projection_sweep(
                args.frustration,
                args.seeds,
                stop_gradient=sg,
                rule=args.rule,
                path=args.path,
                progress_meter=_progress_meter(progress),
                **grid,
            )
            for sg in (args.stop_gradient, not args.stop_gradient)
        }
        result, other = runs[args.stop_gradient], runs[not args.stop_gradient]
    else:
        result = embedding_sweep(
            args.frustration, args.seeds, method=args.method, rule=args.rule, **grid
        )
    seconds = time.perf_counter() - start
    rates = fitted_rates(result)
    name = "sweep" if embedding else _variant_name(args.stop_gradient)
    file = save_sweep(result, os.path.join(args.out, f"{name}.npz")) if writer else None
    figure_path = os.path.join(args.out, "sweep.png")
    if not writer:
        figure = None
    elif embedding:
        figure = save_figure(sweep_figure(result, rates), figure_path)
    else:
        fig = phase_diagram_figure(
            {"without stop-gradient": runs[False], "with stop-gradient": runs[True]}
        )
        figure = save_figure(fig, figure_path, dpi=120)
    summary = sweep_summary(result, rates)
    out = {
        "file": file,
        "figure": figure,
        "frustration": result.frustration,
        "shared": result.shared,
        "final_min_l2": summary["final_min_l2"],
        "final_accuracy": summary["final_accuracy"],
        "slow_rate_fit": summary["slow_rate_fit"],
        "slow_rate_predicted": rates["slow_rate_predicted"] if embedding else None,
        "fast_rate_fit": summary["fast_rate_fit"],
        "fast_rate_predicted": rates["fast_rate_predicted"] if embedding else None,
        "collapse_time": summary["collapse_time"],
        "failed_members": summary["failed_members"],
        "seconds": seconds,
        "compile_seconds": result.metadata["compile_seconds"],
        "run_seconds": result.metadata["run_seconds"],
        "devices": result.metadata["devices"],
        "method": args.method if embedding else f"{args.path}-path",
        "model": args.model,
        "seeds": args.seeds,
    }
    if not embedding:
        out["stop_gradient"] = args.stop_gradient
        other_name = f"{_variant_name(not args.stop_gradient)}.npz"
        other_file = save_sweep(other, os.path.join(args.out, other_name)) if writer else None
        out["comparison"] = {
            "stop_gradient": not args.stop_gradient,
            "file": other_file,
            **sweep_summary(other),
        }
    return out


def print_human(out):
    if out["model"] == "network":
        return _network.print_sweep(out)
    print(
        f"{len(out['frustration'])} ratios x {out['seeds']} seeds in {out['seconds']:.2f} s "
        f"(compile {out['compile_seconds']:.2f} s, run {out['run_seconds']:.3f} s) on "
        f"{len(out['devices'])} device(s); failed members: {out['failed_members']}"
    )
    if out["model"] == "projection":
        sg = "with" if out["stop_gradient"] else "without"
        other = "without" if out["stop_gradient"] else "with"
        print(f"   phi      M   final MinL2 ({sg} / {other} stop-gradient)")
        for row in zip(
            out["frustration"],
            out["shared"],
            out["final_min_l2"],
            out["comparison"]["final_min_l2"],
            strict=True,
        ):
            print("  {:.3f} {:6.1f} {:12.4e} {:12.4e}".format(*row))
    else:
        print("   phi      M   final MinL2   slow fit   lambda+")
        for row in zip(
            out["frustration"],
            out["shared"],
            out["final_min_l2"],
            out["slow_rate_fit"],
            out["slow_rate_predicted"],
            strict=True,
        ):
            print("  {:.3f} {:6.1f} {:12.4e} {:10.5f} {:9.5f}".format(*row))
    if out["file"] is None:
        print("results: written by process 0 of the cluster")
        return
    print(f"results: {out['file']}\nfigure:  {out['figure']}")
