"""``collapse-jax mechanisms``: compare collapse-prevention mechanisms."""

from __future__ import annotations

import os
import time

import numpy as np

from ._common import (
    _add_distributed_flags,
    _add_out_flag,
    _add_output_flags,
    _add_quick_flag,
    _check_run,
    _join_cluster,
    _name_list,
    _note,
    _write_json,
)

COMMAND = "mechanisms"

# the grid of ``--fixed-points`` (what comparison.fixed_point_analysis runs)
FIXED_POINT_SETUP = {"n_classes": 3, "per_class": 6, "dim": 4, "seed": 0, "t_max": 1e4}


def _mechanism_list(text):
    from .._mechanisms import MECHANISMS

    return _name_list("--only", text, sorted(MECHANISMS))


def add_parser(sub):
    mp = sub.add_parser(
        COMMAND,
        help="compare collapse-prevention mechanisms: flow sweep, table, figures, optax training",
    )
    _add_out_flag(mp, "results/mechanisms", "output folder (created)")
    _add_quick_flag(mp, "small grid (K=3, n=6, d=4, 3 ratios, 1 seed)")
    mp.add_argument("--only", type=_mechanism_list, default=None, help="e.g. mse,simsiam")
    mp.add_argument(
        "--no-training", action="store_true", help="skip the discrete (optax) comparison"
    )
    mp.add_argument(
        "--fixed-points",
        action="store_true",
        help="only the fixed-point / linear-stability analysis (K=3, n=6, d=4, phi = 0, 0.1; "
        "about 1 min): status, residual, max Re J, zero modes vs prediction",
    )
    _add_output_flags(mp, progress="progress messages")
    _add_distributed_flags(mp)


def _fixed_points(args, progress):
    from .._comparison import fixed_point_analysis

    start = time.perf_counter()
    rows = fixed_point_analysis(
        args.only, progress=lambda n: _note(progress, f"fixed point {n} ...")
    )
    return {
        "fixed_points": rows,
        "setup": dict(FIXED_POINT_SETUP),
        "seconds": time.perf_counter() - start,
    }


def _result_summary(r):
    return {
        "hyper": r["hyper"],
        "values": r["values"],
        "frustration": r["frustration"],
        "shared": r["shared"],
        "final_min_l2": r["min_l2"][..., -1],
        "initial_min_l2": r["min_l2"][..., 0],
        "final_accuracy": r["accuracy"][..., -1],
        "collapse_time": r["collapse_time"],
        "slow_rate": r["slow_rate"],
        "status": r["status"],
        "failed_members": int(np.sum(r["result"] != 0)),
        "diagnostics": {k[5:]: r[k] for k in r if k.startswith("diag_")},
        "seconds": r["seconds"],
    }


def run(args, progress):
    from .._comparison import FULL, QUICK, compare_mechanisms, training_comparison
    from .._plots import mechanism_phase_figure, mechanism_summary_figure, save_figure

    writer = _join_cluster(args)  # with a cluster, only process 0 writes the files
    if args.fixed_points:
        return _fixed_points(args, progress)
    _check_run(args, writes=("mechanisms.json", "summary.png"))
    grid = dict(QUICK if args.quick else FULL)

    def note(name):
        _note(progress, f"running {name} ...")

    comp = compare_mechanisms(args.only, progress=note, **grid)
    figures = {}
    for name, res in comp["results"].items() if writer else ():
        figures[name] = save_figure(
            mechanism_phase_figure(res), os.path.join(args.out, f"{name}.png")
        )
    if writer:
        figures["summary"] = save_figure(
            mechanism_summary_figure(comp["results"]), os.path.join(args.out, "summary.png")
        )
    training = None
    if not args.no_training:
        training = training_comparison(
            args.only,
            frustration=grid["frustration"],
            per_class=grid["per_class"],
            dim=grid["dim"],
            progress=note,
        )
    out = {
        "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in grid.items()},
        "n_classes": 3,
        "table": comp["table"],
        "results": {name: _result_summary(r) for name, r in comp["results"].items()},
        "training": training,
        "figures": figures,
        "seconds": comp["seconds"] + (training["seconds"] if training else 0.0),
    }
    out["file"] = _write_json(out, os.path.join(args.out, "mechanisms.json")) if writer else None
    return out


def _fmt_range(upto):
    return "none" if upto is None else f"phi <= {upto:g}"


def _print_fixed_points(out):
    print("mechanism      phi   M status          t        residual  max Re J   zero (pred)  MinL2")
    for r in out["fixed_points"]:
        pred = "-" if r["zero_modes_predicted"] is None else str(r["zero_modes_predicted"])
        print(
            f"{r['mechanism']:<14} {r['frustration']:<5g} {r['shared']:<2d}"
            f"{r['status']:<15} {r['t']:<8.3g} {r['residual']:<9.2e} {r['max_real']:<10.2e}"
            f" {r['zero_modes']:>3d} ({pred:>3})    {r['min_l2']:.4g}"
        )
    print(f"({out['seconds']:.1f} s)")


def print_human(out):
    if "fixed_points" in out:
        _print_fixed_points(out)
        return
    print("mechanism            hyper          separated (flow)   final MinL2/initial per phi")
    for r in out["table"]:
        hyper = "-" if r["hyper"] is None else f"{r['hyper']}={r['value']:g}"
        ratios = " ".join(f"{v:.2e}" for v in r["final_min_l2_ratio"])
        print(f"{r['mechanism']:<20} {hyper:<14} {_fmt_range(r['separated_up_to']):<18} {ratios}")
    print(f"phi = {out['table'][0]['frustration']}, shared M = {out['table'][0]['shared']}")
    if out["training"]:
        print("discrete training (optax), separated range per optimiser:")
        for r in out["training"]["rows"]:
            print(f"  {r['mechanism']:<15} {r['optimizer']:<13} {_fmt_range(r['separated_up_to'])}")
    where = "process 0's --out" if out["file"] is None else os.path.dirname(out["file"])
    print(f"figures and mechanisms.json in {where} ({out['seconds']:.1f} s)")
