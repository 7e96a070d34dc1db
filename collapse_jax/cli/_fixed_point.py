"""``collapse-jax fixed-point``: the projection model's steady state and its analysis (P1-P3)."""

from __future__ import annotations

from ._common import (
    UsageError,
    _add_int_flag,
    _add_model_flags,
    _add_path_flag,
    _add_steady_flags,
    _check_horizon,
    _check_model,
    _check_run,
    _model_info,
    _print_fixed_point,
    _progress_meter,
    _setup,
)

COMMAND = "fixed-point"

# what ``runs`` reports per start with --seeds > 1
RUN_KEYS = (
    "branch",
    "status",
    "min_l2",
    "residual_norm",
    "jacobian_max_real",
    "zero_modes",
    "t_reached",
    "w_eigenvalues_abs",
)


def add_parser(sub):
    sf = sub.add_parser(
        COMMAND, help="projection model: run to a steady state and analyse it (P1-P3)"
    )
    _add_model_flags(sf, model="projection")
    _add_steady_flags(sf)
    _add_path_flag(sf)
    _add_int_flag(
        sf,
        "--seeds",
        1,
        1,
        "also classify this many starts (seeds --seed, --seed+1, ...) by branch "
        "(default %(default)s: only --seed)",
    )


def check(args):
    """The checks of a projection steady-state command (also ``spectrum --model projection``)."""
    _check_model(args)
    if args.command == COMMAND and args.model != "projection":
        raise UsageError(
            f"fixed-point analyses the projection model (docs/theory.md §3), "
            f"got --model {args.model}"
        )
    _check_horizon(args)
    if args.command == COMMAND and args.seed + args.seeds > 2**63:
        raise UsageError(
            f"--seed {args.seed} + --seeds {args.seeds} runs past the last seed 2**63 - 1"
        )


def _steady_kwargs(args, progress):
    return dict(
        stop_gradient=args.stop_gradient,
        t1=args.horizon,
        t_max=args.t_max,
        progress_meter=_progress_meter(progress),
        path=args.path,
    )


def fixed_point(args, progress):
    """``(data, analysis)`` of the steady state reached from ``--seed`` (with ``steady``)."""
    from .._models.projection import projection_fixed_point

    data, state = _setup(args)
    out = projection_fixed_point(data, state, **_steady_kwargs(args, progress))
    out["path"] = args.path
    return data, out


def run(args, progress):
    check(args)
    _check_run(args)
    if args.seeds == 1:
        out = fixed_point(args, progress)[1]
        out.pop("steady")
    else:
        from .._models.projection import classify_starts

        data = _setup(args)[0]
        seeds = range(args.seed, args.seed + args.seeds)
        census = classify_starts(data, args.dim, seeds, **_steady_kwargs(args, progress))
        runs = census["runs"]
        out = dict(runs[0])
        out["path"] = args.path
        out["branch_counts"] = census["counts"]
        out["branch_fractions"] = census["fractions"]
        out["runs"] = [{"seed": r["seed"], **{k: r[k] for k in RUN_KEYS}} for r in runs]
    out.update(_model_info(args), seeds=args.seeds)
    return out


def print_human(out):
    _print_fixed_point(out)
    print(
        f"n/(n+M) = {out['predicted_bias_eigenvalue']:.6g}; max eig Omega(W) = "
        f"{out['omega_max_eigenvalue']:.6g} (bound {out['omega_bound']:.6g})"
    )
    for k, sec in enumerate(out["bias_sectors"]):
        print(
            f"  bias direction {k}: spread {sec['spread']:.4g}, w = "
            f"{sec['w_rayleigh']:.6g} -> {sec['sector']}"
        )
    if "branch_counts" in out:
        print(f"branches over {out['seeds']} starts: {out['branch_counts']}")
