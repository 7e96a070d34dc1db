"""The ``collapse-jax`` command line (contract: ``docs/cli.md``).

With ``--json`` stdout holds exactly one JSON object; progress and logs go to stderr. Bad input
prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["main"]

DEFAULTS = dict(classes=3, per_class=10, shared=2, dim=4, seed=0)


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, never the usage block
        # our argument types name their flag already: drop argparse's "argument --x: " prefix
        if message.startswith("argument ") and ": --" in message:
            message = message.split(": ", 1)[1]
        raise UsageError(message)


def _positive_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text}")
        return value

    return parse


def _int_at_least(name, minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def _rank_range(text):
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fit-range must be KMIN:KMAX (integers), got {text!r}"
        ) from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"--fit-range needs 1 <= KMIN <= KMAX, got {text}")
    return lo, hi


def _add_model_flags(p):
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=["embedding", "projection"],
        default="embedding",
        help="which minimal model (default: embedding)",
    )
    g.add_argument(
        "--stop-gradient", action="store_true", help="stop-gradient field (projection model only)"
    )
    g.add_argument(
        "--classes",
        type=_int_at_least("--classes", 2),
        default=DEFAULTS["classes"],
        help="number of classes K (>= 2, default %(default)s)",
    )
    g.add_argument(
        "--per-class",
        type=_int_at_least("--per-class", 1),
        default=DEFAULTS["per_class"],
        help="clean samples per class n (>= 1, default %(default)s)",
    )
    g.add_argument(
        "--shared",
        type=_int_at_least("--shared", 0),
        default=DEFAULTS["shared"],
        help="shared (frustrated) samples M (>= 0, default %(default)s)",
    )
    g.add_argument(
        "--dim",
        type=_int_at_least("--dim", 1),
        default=DEFAULTS["dim"],
        help="embedding dimension d (>= 1, default %(default)s)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        help="seed of the initial state x~N(0,1), y~2N(0,1) (default %(default)s)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_time_flags(p, t1: float):
    """``--t1``, ``--t-min``, ``--points``: the log-spaced save grid of a run."""
    p.add_argument(
        "--t1", type=_positive_float("--t1"), default=t1, help="end time (default %(default)s)"
    )
    p.add_argument(
        "--t-min",
        type=_positive_float("--t-min"),
        default=1e-2,
        help="first save time (default %(default)s)",
    )
    p.add_argument(
        "--points",
        type=_int_at_least("--points", 2),
        default=100,
        help="log-spaced save times in [t-min, t1] (default %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="collapse-jax", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"collapse-jax {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sp = sub.add_parser("spectrum", help="Jacobian eigenvalues vs the closed-form predictions")
    _add_model_flags(sp)
    _add_steady_flags(sp)
    _add_path_flag(sp)

    sf = sub.add_parser(
        "fixed-point", help="projection model: run to a steady state and analyse it (P1-P3)"
    )
    _add_model_flags(sf)
    sf.set_defaults(model="projection")
    _add_steady_flags(sf)
    _add_path_flag(sf)
    sf.add_argument(
        "--seeds",
        type=_int_at_least("--seeds", 1),
        default=1,
        help="also classify this many starts (seeds --seed, --seed+1, ...) by branch "
        "(default %(default)s: only --seed)",
    )

    sm = sub.add_parser("simulate", help="integrate the gradient flow and record metrics")
    _add_model_flags(sm)
    _add_time_flags(sm, 1e3)
    sm.add_argument(
        "--solver",
        choices=["kvaerno5", "tsit5", "exact", "kencarp"],
        default=None,
        help="diffrax Kvaerno5 (implicit; default, except on the projection model's reduced "
        "path), Tsit5 (explicit), the exact sector solution (embedding model), or kencarp: "
        "IMEX KenCarp with exact (y, W) stage solves (projection reduced path; its default)",
    )
    _add_path_flag(sm)
    sm.add_argument(
        "--rtol",
        type=_positive_float("--rtol"),
        default=None,
        help="relative tolerance (default 1e-12)",
    )
    sm.add_argument(
        "--atol",
        type=_positive_float("--atol"),
        default=None,
        help="absolute tolerance (default 1e-14)",
    )
    sm.add_argument(
        "--max-steps",
        type=_int_at_least("--max-steps", 1),
        default=200_000,
        help="solver step budget (default %(default)s)",
    )
    sm.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="projection model: also integrate the other field from the same start and write "
        "a PNG comparing MinL2(t) and accuracy with and without stop-gradient",
    )
    sw = sub.add_parser("sweep", help="jit(vmap) over frustration ratios x seeds, sharded")
    _add_model_flags(sw)
    sw.add_argument(
        "--frustration",
        type=_frustration_range,
        default="0:0.5:16",
        help="START:STOP:COUNT ratios, STOP included (default %(default)s)",
    )
    sw.add_argument(
        "--seeds",
        type=_int_at_least("--seeds", 1),
        default=4,
        help="number of seeds 0..N-1 (default %(default)s)",
    )
    sw.add_argument("--out", default="results/sweep", help="output folder (default %(default)s)")
    sw.add_argument(
        "--method",
        choices=["exact", "integrate"],
        default="exact",
        help="embedding model: exact sector solution (default) or diffrax integration",
    )
    _add_path_flag(sw)
    sw.add_argument(
        "--rule",
        choices=["round", "spread"],
        default="round",
        help="how a ratio becomes shared rows (default %(default)s)",
    )
    _add_time_flags(sw, 1e3)

    sd = sub.add_parser(
        "diagnose", help="collapse diagnostics of an embeddings file (docs/theory.md §5)"
    )
    sd.add_argument("file", help="embeddings, .npy (N x D) or .npz (with --key)")
    sd.add_argument("--key", default=None, help="array name inside an .npz (optional if only one)")
    sd.add_argument(
        "--labels", default=None, help=".npy of N integer labels (-1: unlabelled sample)"
    )
    sd.add_argument("--plot", default=None, help="write a log-scale spectrum plot to this path")
    sd.add_argument(
        "--fit-range",
        type=_rank_range,
        default=None,
        metavar="KMIN:KMAX",
        help="ranks (1-based, inclusive) of the alpha-ReQ power-law fit (default: all "
        "eigenvalues above the round-off tolerance)",
    )
    sd.add_argument(
        "--rankme-eigenvalues",
        action="store_true",
        help="also report RankMe of the eigenvalues (p_k = lambda_k / sum lambda) as "
        "rankme_eigenvalues",
    )
    sd.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sd.add_argument("--quiet", action="store_true", help="no progress output")
    sdm = sub.add_parser(
        "dmft", help="self-consistent (Dyson-type) solution of the projection model vs direct"
    )
    _add_model_flags(sdm)
    sdm.set_defaults(model="projection")
    sdm.add_argument(
        "--t1", type=_positive_float("--t1"), default=50.0, help="end time (default %(default)s)"
    )
    sdm.add_argument(
        "--window",
        type=_positive_float("--window"),
        default=1.0,
        help="Picard window length (default %(default)s)",
    )
    sdm.add_argument(
        "--tol",
        type=_positive_float("--tol"),
        default=1e-10,
        help="convergence threshold on max |W_new - W_old| (default %(default)s)",
    )
    sdm.add_argument(
        "--max-iter",
        type=_int_at_least("--max-iter", 1),
        default=50,
        help="Picard iterations a window (default %(default)s)",
    )
    _add_teacher_student_parser(sub)
    _add_mechanisms_parser(sub)
    _add_reproduce_parser(sub)
    return p


def _name_list(flag, text, allowed):
    """A non-empty comma-separated list of names out of ``allowed`` (argparse type)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or any(n not in allowed for n in names):
        raise argparse.ArgumentTypeError(
            f"{flag} must be a comma-separated list of {', '.join(allowed)}, got {text!r}"
        )
    return names


def _frustration_range(text):
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--frustration must be START:STOP:COUNT, got {text!r}"
        ) from None
    for value in (start, stop):
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise argparse.ArgumentTypeError(f"--frustration values must lie in [0, 1), got {text}")
    if count < 1 or (count == 1 and start != stop):
        raise argparse.ArgumentTypeError(f"--frustration COUNT must be >= 1, got {text}")
    return np.linspace(start, stop, count)


def _add_path_flag(p):
    p.add_argument(
        "--path",
        choices=["reduced", "full"],
        default="reduced",
        help="projection model: integrate the N-independent order-parameter reduction, lifted "
        "back to every sample (default), or every sample (full)",
    )


def _add_steady_flags(p):
    g = p.add_argument_group("steady state (projection model)")
    g.add_argument(
        "--horizon",
        type=_positive_float("--horizon"),
        default=1e3,
        help="first integration horizon; later ones grow x10 (default %(default)s)",
    )
    g.add_argument(
        "--t-max",
        type=_positive_float("--t-max"),
        default=1e5,
        help="give up (report a slow transient or saddle) at this time (default %(default)s)",
    )


def _jsonable(obj):
    """NaN/inf become null (plain JSON numbers only); numpy scalars and arrays become Python."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def _check_model(args):
    if not hasattr(args, "model"):  # commands without model flags (diagnose)
        return
    if args.stop_gradient and args.model == "embedding":
        raise UsageError(
            "--stop-gradient needs --model projection (the embedding model has no "
            "held copy to stop)"
        )
    if args.command == "dmft" and args.model != "projection":
        raise UsageError("dmft solves the projection model: use --model projection")
    if args.command == "fixed-point" and args.model != "projection":
        raise UsageError(
            f"fixed-point analyses the projection model (docs/theory.md §3), "
            f"got --model {args.model}"
        )
    if getattr(args, "solver", None) == "exact" and args.model == "projection":
        raise UsageError("--solver exact exists for the embedding model only")
    if getattr(args, "solver", None) == "kencarp" and (
        args.model != "projection" or args.path != "reduced"
    ):
        raise UsageError(
            "--solver kencarp integrates the projection model's reduced path only "
            "(--model projection --path reduced)"
        )
    if getattr(args, "solver", "") is None:
        reduced = args.model == "projection" and args.path == "reduced"
        args.solver = "kencarp" if reduced else "kvaerno5"
    # simulate's --figure compares projection runs (teacher-student draws its own run)
    simulate_figure = args.command == "simulate" and getattr(args, "figure", None) is not None
    if simulate_figure and args.model != "projection":
        raise UsageError("--figure compares stop-gradient runs: it needs --model projection")
    if hasattr(args, "t_max") and args.horizon > args.t_max:
        raise UsageError(f"--horizon must be <= --t-max={args.t_max}, got {args.horizon}")


def _setup(args, seed=None):
    from .data import init_embedding_state, init_projection_state, standard_data

    data = standard_data(args.classes, args.per_class, args.shared)
    import jax

    init = init_projection_state if args.model == "projection" else init_embedding_state
    key = jax.random.PRNGKey(args.seed if seed is None else seed)
    state = init(key, data.n_samples, args.classes, args.dim)
    return data, state


def _cmd_dmft(args, progress):
    import diffrax
    import jax
    import jax.numpy as jnp

    from .dmft import solve_dmft
    from .integrate import simulate
    from .metrics import min_l2
    from .reduced import reduce_state, reduced_field, reduced_params

    data, state = _setup(args)  # the projection start of docs/theory.md §1
    z0 = reduce_state(state.x, state.y, state.W, args.classes, args.per_class, data.shared_mask)
    p = reduced_params(data)
    if progress:
        print(f"dmft: windows of {args.window} up to t={args.t1} ...", file=sys.stderr)
    res = solve_dmft(
        z0,
        p,
        t1=args.t1,
        window=args.window,
        stop_gradient=args.stop_gradient,
        tol=args.tol,
        max_iter=args.max_iter,
    )
    out = {
        "converged": res.converged,
        "message": res.message,
        "iterations": int(res.iterations.sum()),
        "iterations_per_window": res.iterations,
        "windows": len(res.iterations),
        "seconds": res.seconds,
        "t": res.t,
        "min_l2": res.min_l2,
        "stop_gradient": args.stop_gradient,
    }
    if len(res.t) > 1:
        start = time.perf_counter()
        direct = simulate(
            reduced_field(stop_gradient=args.stop_gradient),
            z0,
            p,
            ts=jnp.asarray(res.t[1:]),
            t1=float(res.t[-1]),
            solver=diffrax.Tsit5(),
            rtol=1e-12,
            atol=1e-12,
            max_steps=1_000_000,
        )
        d_w = float(np.max(np.abs(np.asarray(direct.ys.W) - res.states.W[1:])))
        d_m = float(np.max(np.abs(np.asarray(jax.vmap(min_l2)(direct.ys.y)) - res.min_l2[1:])))
        out.update(
            max_abs_difference=max(d_w, d_m),
            max_abs_difference_w=d_w,
            max_abs_difference_min_l2=d_m,
            direct_seconds=time.perf_counter() - start,
            direct_result=result_name(direct.result),
        )
    else:
        out.update(max_abs_difference=float("nan"))
    return out


def _model_info(args):
    return dict(
        model=args.model,
        stop_gradient=bool(args.stop_gradient),
        classes=args.classes,
        per_class=args.per_class,
        shared=args.shared,
        dim=args.dim,
        seed=args.seed,
    )


def _progress_meter(progress):
    import diffrax

    return diffrax.TqdmProgressMeter() if progress else None


def _fixed_point(args, progress, seed=None):
    from .steady import projection_fixed_point

    data, state = _setup(args, seed)
    out = projection_fixed_point(
        data,
        state,
        stop_gradient=args.stop_gradient,
        t1=args.horizon,
        t_max=args.t_max,
        progress_meter=_progress_meter(progress),
        path=args.path,
    )
    out["path"] = args.path
    return data, out


def _cmd_fixed_point(args, progress):
    data, out = _fixed_point(args, progress)
    out.pop("steady")
    if args.seeds > 1:
        from .steady import BRANCHES

        runs = [out]
        for seed in range(args.seed + 1, args.seed + args.seeds):
            other = _fixed_point(args, progress, seed)[1]
            other.pop("steady")
            runs.append(other)
        counts = {b: sum(r["branch"] == b for r in runs) for b in BRANCHES}
        out["branch_counts"] = counts
        out["branch_fractions"] = {b: c / len(runs) for b, c in counts.items()}
        out["runs"] = [
            {
                "seed": args.seed + k,
                "branch": r["branch"],
                "status": r["status"],
                "min_l2": r["min_l2"],
                "residual_norm": r["residual_norm"],
                "jacobian_max_real": r["jacobian_max_real"],
                "zero_modes": r["zero_modes"],
                "t_reached": r["t_reached"],
                "w_eigenvalues_abs": r["w_eigenvalues_abs"],
            }
            for k, r in enumerate(runs)
        ]
    out.update(_model_info(args), seeds=args.seeds)
    return out


def _projection_spectrum(args, progress):
    """Spectrum at the steady state reached from --seed. No closed form exists for the whole
    projection-model spectrum, so ``predicted`` is null and ``max_abs_error`` is the largest
    entry of |J_autodiff - J_finite_differences| (central differences): the check that the
    reported Jacobian is right (docs/theory.md §3 trap). ``sectors`` holds W on the label span of a
    separated stop-gradient fixed point, predicted {1, n/(n+M) (K-1 times)} (P2)."""
    from .fields import vector_field
    from .losses import projection_loss
    from .spectral import finite_difference_jacobian, is_symmetric

    data, out = _fixed_point(args, progress)
    st = out.pop("steady")
    field = vector_field(projection_loss, stop_gradient=args.stop_gradient)
    J_fd = finite_difference_jacobian(field, st.state, data.matrix())
    sectors = {}
    if args.stop_gradient and out["branch"] == "separated":
        n, M, K = args.per_class, args.shared, args.classes
        sectors["W_on_label_span"] = {
            "numeric": np.sort(out["label_span_w_eigenvalues"]),
            "predicted": np.sort([1.0] + [n / (n + M)] * (K - 1)),
        }
    ev = st.eigenvalues
    report = {
        "numeric": ev.real,
        "numeric_imag": ev.imag,
        "predicted": None,
        "max_abs_error": float(np.max(np.abs(st.jacobian - J_fd))),
        "max_abs_error_reference": "central finite differences of the field",
        "sectors": sectors,
        "symmetric": is_symmetric(st.jacobian),
        "asymmetry_norm": out["asymmetry_norm"],
    }
    for key in (
        "status",
        "branch",
        "residual_norm",
        "jacobian_max_real",
        "zero_modes",
        "n_variables",
        "min_l2",
        "w_eigenvalues_abs",
        "t_reached",
    ):
        report[key] = out[key]
    report.update(_model_info(args))
    return report


def _cmd_spectrum(args, progress):
    from .fields import vector_field
    from .losses import embedding_loss
    from .spectral import embedding_spectrum_report

    if args.model == "projection":
        return _projection_spectrum(args, progress)
    data, state = _setup(args)
    report = embedding_spectrum_report(vector_field(embedding_loss), state, data)
    report.update(_model_info(args))
    return report


def _cmd_simulate(args, progress):
    import diffrax
    import jax

    from .exact import exact_min_l2, exact_solution, lambda_pm
    from .fields import vector_field
    from .integrate import DEFAULT_ATOL, DEFAULT_RTOL, log_times, simulate
    from .losses import embedding_loss
    from .metrics import embedding_metrics, fit_slow_rate

    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")
    data, state = _setup(args)
    ts = log_times(args.t_min, args.t1, args.points)
    rtol = DEFAULT_RTOL if args.rtol is None else args.rtol
    atol = DEFAULT_ATOL if args.atol is None else args.atol
    if args.model == "projection":
        return _simulate_projection(args, progress, data, state, ts, rtol, atol)
    start = time.perf_counter()
    if args.solver == "exact":
        ys = exact_solution(state, data, ts)
        result, steps = "successful", 0
    else:
        solver = None if args.solver == "kvaerno5" else diffrax.Tsit5()
        sol = simulate(
            vector_field(embedding_loss),
            state,
            data.matrix(),
            ts=ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=args.max_steps,
            progress_meter=diffrax.TqdmProgressMeter() if progress else None,
        )
        ys, result, steps = sol.ys, result_name(sol.result), int(sol.stats["num_steps"])
    metrics = jax.vmap(lambda s: embedding_metrics(s, data))(ys)
    seconds = time.perf_counter() - start
    reference = np.asarray(exact_min_l2(state, data, ts))
    min_l2 = np.asarray(metrics["min_l2"])
    resolved = reference > 1e-6 * reference[0]
    lam_plus, lam_minus = (float(v) for v in lambda_pm(args.per_class, float(args.shared)))
    return {
        "t": np.asarray(ts),
        "min_l2": min_l2,
        "loss": np.asarray(metrics["loss"]),
        "accuracy": np.asarray(metrics["accuracy"]),
        "accuracy_all": np.asarray(metrics["accuracy_all"]),
        "final_state_norm": float(np.sqrt(sum(np.sum(np.asarray(a)[-1] ** 2) for a in ys))),
        "solver": args.solver,
        "result": result,
        "steps": steps,
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "model": args.model,
        "classes": args.classes,
        "per_class": args.per_class,
        "shared": args.shared,
        "dim": args.dim,
        "seed": args.seed,
        "min_l2_exact": reference,
        "max_rel_error_vs_exact": float(np.max(np.abs(min_l2 / reference - 1)[resolved])),
        "slow_rate_fit": fit_slow_rate(ts, min_l2),
        "slow_rate_predicted": lam_plus,
        "fast_rate_predicted": lam_minus,
        "final_min_l2": float(min_l2[-1]),
    }


def _load_npy_or_npz(path, key, what):
    import os
    import zipfile

    if not os.path.isfile(path):
        raise UsageError(f"{what} file not found: {path}")
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        msg = f"cannot read {what} file {path}: not a valid .npy/.npz array ({err})"
        raise UsageError(msg.splitlines()[0]) from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if key is None:
                if len(names) != 1:
                    raise UsageError(
                        f"{path} holds {len(names)} arrays {names}: choose one with --key"
                    )
                key = names[0]
            if key not in names:
                raise UsageError(f"--key {key!r} not in {path} (arrays: {names})")
            try:
                return obj[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
                msg = f"cannot read array {key!r} of {path}: {err}"
                raise UsageError(msg.splitlines()[0]) from None
    if key is not None:
        raise UsageError(f"--key applies to .npz files only, {path} holds a single array")
    return obj


def _load_embeddings(path, key):
    z = _load_npy_or_npz(path, key, "embeddings")
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise UsageError(f"embeddings must be real numbers, got dtype {z.dtype}")
    if z.ndim != 2:
        raise UsageError(f"embeddings must be a 2-D array (samples, dim), got shape {z.shape}")
    if z.size == 0:
        raise UsageError(f"embeddings are empty, got shape {z.shape}")
    if z.shape[0] < 2:
        raise UsageError(f"need at least 2 samples, got {z.shape[0]}")
    bad = ~np.isfinite(z)
    if bad.any():
        raise UsageError(f"embeddings contain {int(bad.sum())} NaN or inf values")
    return z


def _load_labels(path, n_samples):
    lab = _load_npy_or_npz(path, None, "labels")
    if lab.ndim != 1:
        raise UsageError(f"labels must be a 1-D array, got shape {lab.shape}")
    if lab.shape[0] != n_samples:
        raise UsageError(f"labels have {lab.shape[0]} entries, embeddings have {n_samples} rows")
    if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)):
        if np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
    if not np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.bool_):
        raise UsageError(f"labels must be integers, got dtype {lab.dtype}")
    if lab.min() < -1:
        raise UsageError(f"labels must be >= 0 (or -1 for unlabelled), got {lab.min()}")
    classes = np.unique(lab[lab >= 0])
    if classes.size < 2:
        raise UsageError(f"labels must name at least 2 classes, got {classes.size}")
    if classes.max() >= 100_000:
        raise UsageError(f"labels must be < 100000, got {classes.max()}")
    return lab.astype(np.int32)


def _spectrum_plot(path, out):
    from .plots import save_figure, spectrum_figure

    title = f"RankMe {out['rankme']:.3g} of D={out['dim']}"
    fig = spectrum_figure(
        out["singular_values"],
        out["n_samples"],
        alpha=out["alpha_req"],
        fit_range=out.get("alpha_req_fit_range"),
        title=title + (" (collapsed)" if out["collapsed"] else ""),
    )
    try:
        save_figure(fig, path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot write plot {path}: {err}".splitlines()[0]) from None


def _cmd_diagnose(args, progress):
    from .diagnostics import COLLAPSE_RULE, diagnose

    z = _load_embeddings(args.file, args.key)
    labels = None if args.labels is None else _load_labels(args.labels, z.shape[0])
    raw = diagnose(z, labels, fit_range=args.fit_range, rankme_eigenvalues=args.rankme_eigenvalues)
    out = {k: np.asarray(v) for k, v in raw.items()}
    out["n_samples"] = int(out["n_samples"])
    out["dim"] = int(out["dim"])
    out["n_components_95"] = int(out["n_components_95"])
    out["numerical_rank"] = int(out["numerical_rank"])
    out["collapsed"] = bool(out["collapsed"])
    out["collapse_rule"] = COLLAPSE_RULE
    out["file"] = args.file
    if args.fit_range is not None:
        out["alpha_req_fit_range"] = list(args.fit_range)
    for key in ("std_l2_normalized", "rankme", "participation_ratio", "alpha_req"):
        out[key] = float(out[key])
    if labels is not None:
        for key in ("min_l2_class_means", "nc1", "nc2", "ncm_accuracy"):
            out[key] = float(out[key])
        out["n_classes_present"] = int(out["n_classes_present"])
    if args.plot is not None:
        _spectrum_plot(args.plot, out)
        out["plot"] = args.plot
    return out


def _simulate_projection(args, progress, data, state, ts, rtol, atol):
    import diffrax
    import jax

    from .integrate import default_solver
    from .metrics import fit_slow_rate, projection_metrics, roundoff_floor
    from .projection import simulate_projection

    solver = {
        "kvaerno5": default_solver(rtol, atol),
        "kencarp": None,  # the reduced path's default IMEX solver
        "tsit5": diffrax.Tsit5(),
    }[args.solver]

    def run(stop_gradient):
        start = time.perf_counter()
        sol = simulate_projection(
            data,
            state,
            stop_gradient=stop_gradient,
            path=args.path,
            ts=ts,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=args.max_steps,
            progress_meter=_progress_meter(progress),
        )
        metrics = jax.vmap(lambda s: projection_metrics(s, data))(sol.states)
        return sol, {k: np.asarray(v) for k, v in metrics.items()}, time.perf_counter() - start

    sol, metrics, seconds = run(args.stop_gradient)
    ys = sol.states
    out = {
        "t": np.asarray(ts),
        "min_l2": metrics["min_l2"],
        "loss": metrics["loss"],
        "accuracy": metrics["accuracy"],
        "accuracy_all": metrics["accuracy_all"],
        "final_state_norm": float(np.sqrt(sum(np.sum(np.asarray(a)[-1] ** 2) for a in ys))),
        "solver": args.solver,
        "result": result_name(sol.result),
        "steps": int(sol.steps),
        "path": args.path,
        "rtol": rtol,
        "atol": atol,
        "seconds": seconds,
        "slow_rate_fit": fit_slow_rate(ts, metrics["min_l2"]),
        "final_min_l2": float(metrics["min_l2"][-1]),
        "final_w_eigenvalues_abs": np.sort(np.abs(np.linalg.eigvals(np.asarray(ys.W[-1])))),
    }
    out.update(_model_info(args))
    if args.figure is not None:
        from .plots import plot_projection_comparison, save_figure

        other_sol, other, other_seconds = run(not args.stop_gradient)
        by_sg = {args.stop_gradient: metrics, not args.stop_gradient: other}
        runs = {
            "without stop-gradient (conservative)": by_sg[False],
            "with stop-gradient": by_sg[True],
        }
        floor = float(roundoff_floor(ys.y[-1]))
        title = (
            f"projection model, K={args.classes}, n={args.per_class}, M={args.shared}, "
            f"d={args.dim}, seed {args.seed}"
        )
        fig = plot_projection_comparison(ts, runs, title=title, bound=floor)
        out["figure"] = save_figure(fig, args.figure, dpi=120)
        out["comparison"] = {
            "stop_gradient": not args.stop_gradient,
            "min_l2": other["min_l2"],
            "accuracy": other["accuracy"],
            "result": result_name(other_sol.result),
            "seconds": other_seconds,
        }
    return out


def _print_human(command, out):
    if command == "mechanisms":
        _print_mechanisms(out)
        return
    if command == "reproduce":
        _print_reproduce(out)
        return
    if command == "teacher-student":
        _print_teacher_student(out)
        return
    if command == "fixed-point" or (command == "spectrum" and out.get("model") == "projection"):
        print(
            f"{out['status']} ({out['branch']}) at t={out['t_reached']:.4g}: residual "
            f"{out['residual_norm']:.2e}, MinL2 {out['min_l2']:.6g}, max Re J "
            f"{out['jacobian_max_real']:.2e}, zero modes {out['zero_modes']}"
        )
        print(f"|eig W| = {np.array2string(np.asarray(out['w_eigenvalues_abs']), precision=6)}")
        if command == "fixed-point":
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
        else:
            print(
                f"max |J - J_fd| = {out['max_abs_error']:.2e}   symmetric={out['symmetric']}   "
                f"|J - J^T|_F = {out['asymmetry_norm']:.3e}"
            )
        return
    if command == "simulate" and out.get("model") == "projection":
        print(
            f"solver={out['solver']} result={out['result']} steps={out['steps']} "
            f"({out['seconds']:.2f} s), stop_gradient={out['stop_gradient']}"
        )
        print(
            f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> "
            f"{out['final_min_l2']:.6g} at t={out['t'][-1]:.3g}"
        )
        if "figure" in out:
            print(f"figure: {out['figure']}")
        return
    if command == "spectrum":
        print(
            f"max |numeric - predicted| = {out['max_abs_error']:.3e}   "
            f"symmetric={out['symmetric']}   |J - J^T|_F = {out['asymmetry_norm']:.3e}"
        )
        for name, sec in out["sectors"].items():
            num = np.asarray(sec["numeric"])
            pred = np.asarray(sec["predicted"])
            err = np.max(np.abs(num - pred), initial=0.0)
            uniq = np.unique(np.round(pred, 10))
            print(
                f"  sector {name:9s} {len(pred):4d} eigenvalues, distinct predicted "
                f"{np.array2string(uniq, precision=6)}  max error {err:.2e}"
            )
    elif command == "dmft":
        state = "converged" if out["converged"] else f"NOT converged: {out['message']}"
        print(
            f"self-consistent W(t) on {out['windows']} windows, {out['iterations']} Picard "
            f"iterations, {out['seconds']:.2f} s: {state}"
        )
        print(
            f"max |dmft - direct integration| = {out['max_abs_difference']:.3e} "
            "(over W(t) and MinL2(t))"
        )
    elif command == "sweep":
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
        print(f"results: {out['file']}\nfigure:  {out['figure']}")
    elif command == "simulate":
        print(
            f"solver={out['solver']} result={out['result']} steps={out['steps']} "
            f"({out['seconds']:.2f} s)"
        )
        print(
            f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> "
            f"{out['final_min_l2']:.6g} at t={out['t'][-1]:.3g}"
        )
        print(
            f"slow rate: fit {out['slow_rate_fit']:.6g}, predicted lambda+ "
            f"{out['slow_rate_predicted']:.6g} (fast lambda- {out['fast_rate_predicted']:.6g})"
        )
        print(
            f"max relative error of MinL2 vs the exact solution: "
            f"{out['max_rel_error_vs_exact']:.2e}"
        )
    elif command == "diagnose":
        verdict = "COLLAPSED" if out["collapsed"] else "not collapsed"
        print(f"{out['file']}: N={out['n_samples']} samples, D={out['dim']}: {verdict}")
        print(f"  rule: {out['collapse_rule']}")
        print(
            f"  std of L2-normalised embeddings {out['std_l2_normalized']:.4g} "
            f"(isotropic 1/sqrt(D) = {1 / math.sqrt(out['dim']):.4g})"
        )
        print(
            f"  RankMe {out['rankme']:.4g}, participation ratio "
            f"{out['participation_ratio']:.4g}, {out['n_components_95']} components for 95% "
            f"variance, numerical rank {out['numerical_rank']}"
        )
        print(f"  alpha-ReQ {out['alpha_req']:.4g} (R^2 {float(out['alpha_req_r2']):.4g})")
        if "rankme_eigenvalues" in out:
            print(f"  RankMe of the eigenvalues (variant) {float(out['rankme_eigenvalues']):.4g}")
        if "nc1" in out:
            print(
                f"  {out['n_classes_present']} classes: MinL2 of class means "
                f"{out['min_l2_class_means']:.4g}, NC1 {out['nc1']:.4g}, NC2 {out['nc2']:.4g}, "
                f"nearest-class-mean accuracy {out['ncm_accuracy']:.4g}"
            )
        if "plot" in out:
            print(f"  spectrum plot: {out['plot']}")


def _nanmean_rows(a):
    """Mean over seeds ignoring NaN (a ratio where no seed collapsed stays NaN, silently)."""
    a = np.asarray(a, dtype=np.float64)
    count = np.sum(np.isfinite(a), axis=1)
    total = np.nansum(a, axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _cmd_sweep(args, progress):
    import os

    from .integrate import log_times
    from .plots import phase_diagram_figure, save_figure, sweep_figure
    from .sweep import collapse_time, embedding_sweep, fitted_rates, projection_sweep, save_sweep

    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {args.out!r} cannot be created: {err.strerror}") from None
    ts = log_times(args.t_min, args.t1, args.points)
    grid = dict(n_classes=args.classes, per_class=args.per_class, dim=args.dim, ts=ts)
    if progress:
        print(f"sweeping {len(args.frustration)} ratios x {args.seeds} seeds ...", file=sys.stderr)
    start = time.perf_counter()
    if args.model == "projection":
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
    name = "sweep" if args.model == "embedding" else _variant_name(args.stop_gradient)
    file = save_sweep(result, os.path.join(args.out, f"{name}.npz"))
    figure_path = os.path.join(args.out, "sweep.png")
    if args.model == "projection":
        fig = phase_diagram_figure(
            {"without stop-gradient": runs[False], "with stop-gradient": runs[True]}
        )
        figure = save_figure(fig, figure_path, dpi=120)
    else:
        figure = save_figure(sweep_figure(result, rates), figure_path)
    out = {
        "file": file,
        "figure": figure,
        "frustration": result.frustration,
        "shared": result.shared,
        "final_min_l2": result.min_l2[..., -1].mean(axis=1),
        "final_accuracy": _nanmean_rows(result.accuracy[..., -1]),
        "slow_rate_fit": _nanmean_rows(rates["slow_rate_fit"]),
        "slow_rate_predicted": rates["slow_rate_predicted"] if args.model == "embedding" else None,
        "fast_rate_fit": _nanmean_rows(rates["fast_rate_fit"]),
        "fast_rate_predicted": rates["fast_rate_predicted"] if args.model == "embedding" else None,
        "collapse_time": _nanmean_rows(collapse_time(result.t, result.min_l2)),
        "failed_members": int(np.sum(result.result != 0)),
        "seconds": seconds,
        "compile_seconds": result.metadata["compile_seconds"],
        "run_seconds": result.metadata["run_seconds"],
        "devices": result.metadata["devices"],
        "method": args.method if args.model == "embedding" else f"{args.path}-path",
        "model": args.model,
        "seeds": args.seeds,
    }
    if args.model == "projection":
        out["stop_gradient"] = args.stop_gradient
        other_file = save_sweep(
            other, os.path.join(args.out, f"{_variant_name(not args.stop_gradient)}.npz")
        )
        out["comparison"] = {
            "stop_gradient": not args.stop_gradient,
            "file": other_file,
            "final_min_l2": other.min_l2[..., -1].mean(axis=1),
            "final_accuracy": _nanmean_rows(other.accuracy[..., -1]),
            "collapse_time": _nanmean_rows(collapse_time(other.t, other.min_l2)),
            "failed_members": int(np.sum(other.result != 0)),
        }
    return out


def _variant_name(stop_gradient: bool) -> str:
    return "sweep_stop_gradient" if stop_gradient else "sweep_conservative"


# --- teacher-student (docs/theory.md §4) -------------------------------------------------


def _frustration_half(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frustration must be a number, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value < 0.5):
        raise argparse.ArgumentTypeError(f"--frustration must lie in [0, 0.5), got {text}")
    return value


def _add_teacher_student_parser(sub):
    tp = sub.add_parser(
        "teacher-student", help="linear teacher-student model (docs/theory.md §4), gradient flow"
    )
    tp.set_defaults(model="teacher-student")
    g = tp.add_argument_group("model")
    g.add_argument(
        "--frustration",
        type=_frustration_half,
        default=0.1,
        help="fraction f in [0, 0.5) of each class at the opposite peak (default %(default)s)",
    )
    g.add_argument(
        "--variant",
        choices=["plain", "projection"],
        default="plain",
        help="plain student, or with a predictor W (default %(default)s)",
    )
    g.add_argument(
        "--stop-gradient", action="store_true", help="stop-gradient field (projection only)"
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data and of the start U~N(0,1/D), y~N(0,1), W=I+0.1N(0,1) "
        "(default %(default)s)",
    )
    g.add_argument(
        "--input-dim", type=_int_at_least("--input-dim", 1), default=100, help="D (default 100)"
    )
    g.add_argument(
        "--samples",
        type=_int_at_least("--samples", 2),
        default=400,
        help="P, even (default %(default)s)",
    )
    g.add_argument(
        "--student-dim",
        type=_int_at_least("--student-dim", 1),
        default=5,
        help="p (default %(default)s)",
    )
    g.add_argument("--margin", type=float, default=2.0, help="peak distance m (default 2)")
    g.add_argument(
        "--noise", type=_positive_float("--noise"), default=1.0, help="sigma (default 1)"
    )
    r = tp.add_argument_group("run")
    _add_time_flags(r, 400.0)
    r.add_argument(
        "--solver",
        choices=["tsit5", "kvaerno5"],
        default="tsit5",
        help="diffrax Tsit5 (default: not stiff enough for an implicit solver to pay) or "
        "Kvaerno5 (implicit, much slower here)",
    )
    r.add_argument("--figure", default=None, help="write a figure (PNG) to this path")
    o = tp.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_teacher_student(args, progress):
    import diffrax

    from .teacher_student import TeacherStudentConfig, run_teacher_student

    if args.stop_gradient and args.variant == "plain":
        raise UsageError(
            "--stop-gradient needs --variant projection (the plain loss has no held copy)"
        )
    if args.samples % 2:
        raise UsageError(f"--samples must be even (balanced classes), got {args.samples}")
    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")
    if not math.isfinite(args.margin):
        raise UsageError(f"--margin must be a finite number, got {args.margin}")
    config = TeacherStudentConfig(
        variant=args.variant,
        stop_gradient=args.stop_gradient,
        dim=args.input_dim,
        n_samples=args.samples,
        student_dim=args.student_dim,
        margin=args.margin,
        noise=args.noise,
    )
    solver = diffrax.Kvaerno5() if args.solver == "kvaerno5" else diffrax.Tsit5()
    start = time.perf_counter()
    out = run_teacher_student(
        args.frustration,
        args.seed,
        config,
        t1=args.t1,
        t_min=args.t_min,
        points=args.points,
        progress=progress,
        solver=solver,
    )
    out["seconds"] = time.perf_counter() - start
    out["solver"] = args.solver
    out["result"] = "successful" if out["result"] == 0 else f"failed (code {out['result']})"
    out.update(input_dim=args.input_dim, samples=args.samples, student_dim=args.student_dim)
    if args.figure is not None:
        from .plots import save_figure, teacher_student_figure

        try:
            out["figure"] = save_figure(teacher_student_figure([out]), args.figure)
        except OSError as err:
            raise UsageError(f"--figure {args.figure!r} cannot be written: {err}") from None
    return out


def _print_teacher_student(out):
    print(
        f"teacher-student {out['variant']} stop_gradient={out['stop_gradient']} "
        f"f={out['frustration']} (realised {out['frustration_realised']:.4f}) seed={out['seed']}: "
        f"{out['solver']} {out['result']}, {out['steps']} steps ({out['seconds']:.2f} s)"
    )
    print(
        f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> {out['final_min_l2']:.6g} "
        f"at t={out['t'][-1]:.3g}"
    )
    line = f"slow rate phi_eff: fit {out['slow_rate_fit']:.6g}"
    if "slow_rate_hessian" in out:
        line += f", smallest relevant Hessian eigenvalue {out['slow_rate_hessian']:.6g}"
    print(line)
    print(
        f"accuracy: final {out['final_accuracy']:.4f}, peak {out['peak_accuracy']:.4f} at "
        f"t={out['peak_time']:.3g}, reference 1-f = {out['accuracy_reference']:.4f}"
    )
    if "figure" in out:
        print(f"figure: {out['figure']}")


# --- collapse-prevention mechanisms ------------------------------------------------


def _mechanism_list(text):
    from .mechanisms import MECHANISMS

    return _name_list("--only", text, sorted(MECHANISMS))


def _add_mechanisms_parser(sub):
    mp = sub.add_parser(
        "mechanisms",
        help="compare collapse-prevention mechanisms: flow sweep, table, figures, optax training",
    )
    mp.add_argument("--out", default="results/mechanisms", help="output folder (created)")
    mp.add_argument(
        "--quick", action="store_true", help="small grid (K=3, n=6, d=4, 3 ratios, 1 seed)"
    )
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
    mp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    mp.add_argument("--quiet", action="store_true", help="no progress messages")


def _cmd_mechanism_fixed_points(args, progress):
    from .comparison import fixed_point_analysis

    def note(name):
        if progress:
            print(f"fixed point {name} ...", file=sys.stderr)

    start = time.perf_counter()
    rows = fixed_point_analysis(args.only, progress=note)
    return {
        "fixed_points": rows,
        "setup": {"n_classes": 3, "per_class": 6, "dim": 4, "seed": 0, "t_max": 1e4},
        "seconds": time.perf_counter() - start,
    }


def _print_mechanism_fixed_points(out):
    print("mechanism      phi   M status          t        residual  max Re J   zero (pred)  MinL2")
    for r in out["fixed_points"]:
        pred = "-" if r["zero_modes_predicted"] is None else str(r["zero_modes_predicted"])
        print(
            f"{r['mechanism']:<14} {r['frustration']:<5g} {r['shared']:<2d}"
            f"{r['status']:<15} {r['t']:<8.3g} {r['residual']:<9.2e} {r['max_real']:<10.2e}"
            f" {r['zero_modes']:>3d} ({pred:>3})    {r['min_l2']:.4g}"
        )
    print(f"({out['seconds']:.1f} s)")


def _cmd_mechanisms(args, progress):
    import os

    from .comparison import FULL, QUICK, compare_mechanisms, training_comparison
    from .plots import mechanism_phase_figure, mechanism_summary_figure, save_figure

    if args.fixed_points:
        return _cmd_mechanism_fixed_points(args, progress)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {args.out!r} cannot be created: {err.strerror}") from None
    grid = dict(QUICK if args.quick else FULL)

    def note(name):
        if progress:
            print(f"running {name} ...", file=sys.stderr)

    comp = compare_mechanisms(args.only, progress=note, **grid)
    figures = {}
    for name, res in comp["results"].items():
        figures[name] = save_figure(
            mechanism_phase_figure(res), os.path.join(args.out, f"{name}.png")
        )
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
    results = {
        name: {
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
        for name, r in comp["results"].items()
    }
    out = {
        "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in grid.items()},
        "n_classes": 3,
        "table": comp["table"],
        "results": results,
        "training": training,
        "figures": figures,
        "seconds": comp["seconds"] + (training["seconds"] if training else 0.0),
    }
    path = os.path.join(args.out, "mechanisms.json")
    with open(path, "w") as f:
        json.dump(_jsonable(out), f, allow_nan=False, indent=1)
    out["file"] = path
    return out


def _fmt_range(upto):
    return "none" if upto is None else f"phi <= {upto:g}"


def _print_mechanisms(out):
    if "fixed_points" in out:
        _print_mechanism_fixed_points(out)
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
    print(f"figures and mechanisms.json in {os.path.dirname(out['file'])} ({out['seconds']:.1f} s)")


# --- reproduce ---------------------------------------------------------------------


def _sections(text):
    from .reproduce import SECTIONS

    return _name_list("--sections", text.replace("-", "_"), SECTIONS)


def _add_reproduce_parser(sub):
    rp = sub.add_parser(
        "reproduce", help="every figure of the paper's story and a written report (report.md)"
    )
    rp.add_argument(
        "--out", default="results", help="output folder (default %(default)s); created if needed"
    )
    rp.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a few minutes on a 2-core CPU (default: the full run, sized for an "
        "accelerator)",
    )
    rp.add_argument(
        "--sections",
        type=_sections,
        default=None,
        metavar="A,B",
        help="run only these sections (embedding, projection, sweep, teacher_student, "
        "diagnostics; default all)",
    )
    rp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    rp.add_argument("--quiet", action="store_true", help="no progress output")


def _cmd_reproduce(args, progress):
    import os

    from .reproduce import SECTIONS, reproduce

    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out!r} cannot be created: {err.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out!r} is not writable")
    command = "collapse-jax reproduce" + (" --quick" if args.quick else "")
    if args.sections is not None:
        command += " --sections " + ",".join(args.sections)
    res = reproduce(
        out,
        quick=args.quick,
        sections=args.sections or SECTIONS,
        progress=progress,
        command=command,
    )
    res["all_passed"] = res["failed"] == 0 and not res["errors"]
    return res


def _print_reproduce(out):
    print(f"report:  {out['report']} ({out['seconds']:.1f} s)")
    print(f"numbers: {out['numbers']}")
    print("figures:")
    for f in out["figures"]:
        print(f"  {f}")
    print(f"verifications: {out['passed']} passed, {out['failed']} failed")
    for c in out["checks"]:
        if not c["passed"]:
            print(f"  FAILED: {c['what']}: measured {c['measured']}, error {c['error']}")
    for name, msg in out["errors"].items():
        print(f"  section {name} did not run: {msg}")


COMMANDS = {
    "spectrum": _cmd_spectrum,
    "simulate": _cmd_simulate,
    "sweep": _cmd_sweep,
    "diagnose": _cmd_diagnose,
    "dmft": _cmd_dmft,
    "teacher-student": _cmd_teacher_student,
    "fixed-point": _cmd_fixed_point,
    "mechanisms": _cmd_mechanisms,
    "reproduce": _cmd_reproduce,
}


def result_name(result) -> str:
    from .integrate import result_name as name

    return name(result)


def main(argv=None) -> int:
    """Entry point of the ``collapse-jax`` console script."""
    try:
        args = _parser().parse_args(argv)
        _check_model(args)
        import jax

        jax.config.update("jax_enable_x64", True)
        progress = not args.quiet and not (args.json and not sys.stdout.isatty())
        out = COMMANDS[args.command](args, progress)
    except UsageError as err:
        print(f"collapse-jax: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as err:
        print(f"collapse-jax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collapse-jax: interrupted", file=sys.stderr)
        return 130
    if args.json:
        json.dump(_jsonable(out), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        _print_human(args.command, out)
    # a run whose own verifications failed (reproduce) is not a success
    return 1 if isinstance(out, dict) and out.get("all_passed") is False else 0


if __name__ == "__main__":
    sys.exit(main())
