"""Pieces shared by every command: flags, argument types, checks, set-up, JSON and printing.

Each is defined here once; the command modules (``_spectrum.py``, ``_simulate.py``, ...) only
assemble them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

DEFAULTS = dict(classes=3, per_class=10, shared=2, dim=4, seed=0)


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, never the usage block
        # our argument types name their flag already: drop argparse's "argument --x: " prefix
        if message.startswith("argument ") and ": --" in message:
            message = message.split(": ", 1)[1]
        raise UsageError(message)


# --- argument types ------------------------------------------------------------------------


def _checked_number(name, convert, kind, ok, must, *, echo_text=False):
    """An argparse type: ``convert(text)`` (a ``kind``, else an error) that passes ``ok``; the
    error says what it must (``must``) and names the value (or the text as typed: ``echo_text``)."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {text!r}") from None
        if not ok(value):
            shown = text if echo_text else value
            raise argparse.ArgumentTypeError(f"{name} must {must}, got {shown}")
        return value

    return parse


def _positive_float(name):
    def ok(value):
        return math.isfinite(value) and value > 0

    return _checked_number(name, float, "a number", ok, "be a positive number", echo_text=True)


def _int_at_least(name, minimum):
    return _checked_number(name, int, "an integer", lambda v: v >= minimum, f"be >= {minimum}")


def _name_list(flag, text, allowed):
    """A non-empty comma-separated list of names out of ``allowed`` (argparse type)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or any(n not in allowed for n in names):
        raise argparse.ArgumentTypeError(
            f"{flag} must be a comma-separated list of {', '.join(allowed)}, got {text!r}"
        )
    return names


def _frustration_range(text):
    """``START:STOP:COUNT`` frustration ratios in [0, 1), STOP included (``numpy.linspace``)."""
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


def _half_fraction(value):
    return math.isfinite(value) and 0.0 <= value < 0.5


# one frustration fraction in [0, 0.5) (the teacher-student model)
_frustration_half = _checked_number(
    "--frustration", float, "a number", _half_fraction, "lie in [0, 0.5)", echo_text=True
)


# --- flags -------------------------------------------------------------------------------


def _add_output_flags(p, progress="progress bar"):
    """``--json`` and ``--quiet`` on ``p`` (a parser or an argument group)."""
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help=f"no {progress}")


def _add_int_flag(p, flag, minimum, default, help):
    """An integer flag ``>= minimum`` (its errors name ``flag``)."""
    p.add_argument(flag, type=_int_at_least(flag, minimum), default=default, help=help)


def _add_positive_flag(p, flag, default, help):
    """A positive, finite number flag (its errors name ``flag``)."""
    p.add_argument(flag, type=_positive_float(flag), default=default, help=help)


def _add_seed_flag(p, drawn, default=DEFAULTS["seed"]):
    """``--seed``: the seed of what is ``drawn``."""
    p.add_argument(
        "--seed", type=int, default=default, help=f"seed of {drawn} (default %(default)s)"
    )


def _add_stop_gradient_flag(p, only="projection model"):
    p.add_argument(
        "--stop-gradient", action="store_true", help=f"stop-gradient field ({only} only)"
    )


def _add_out_flag(p, default, help):
    """``--out``: the output folder (made by ``_out_dir``)."""
    p.add_argument("--out", default=default, help=help)


def _add_quick_flag(p, help):
    p.add_argument("--quick", action="store_true", help=help)


# the data set's sizes: flag, minimum, what it counts (defaults in ``DEFAULTS``)
_SIZE_FLAGS = (
    ("--classes", 2, "number of classes K"),
    ("--per-class", 1, "clean samples per class n"),
    ("--shared", 0, "shared (frustrated) samples M"),
    ("--dim", 1, "embedding dimension d"),
)


def _add_model_flags(p, model="embedding"):
    """The minimal model's flags (group "model") and the output flags (group "output")."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=["embedding", "projection"],
        default=model,
        help=f"which minimal model (default: {model})",
    )
    _add_stop_gradient_flag(g)
    for flag, minimum, what in _SIZE_FLAGS:
        default = DEFAULTS[flag[2:].replace("-", "_")]
        _add_int_flag(g, flag, minimum, default, f"{what} (>= {minimum}, default %(default)s)")
    _add_seed_flag(g, "the initial state x~N(0,1), y~2N(0,1)")
    _add_output_flags(p.add_argument_group("output"))


def _add_t1_flag(p, t1: float):
    _add_positive_flag(p, "--t1", t1, "end time (default %(default)s)")


def _add_time_flags(p, t1: float):
    """``--t1``, ``--t-min``, ``--points``: the log-spaced save grid of a run."""
    _add_t1_flag(p, t1)
    _add_positive_flag(p, "--t-min", 1e-2, "first save time (default %(default)s)")
    _add_int_flag(
        p, "--points", 2, 100, "log-spaced save times in [t-min, t1] (default %(default)s)"
    )


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
    _add_positive_flag(
        g, "--horizon", 1e3, "first integration horizon; later ones grow x10 (default %(default)s)"
    )
    _add_positive_flag(
        g,
        "--t-max",
        1e5,
        "give up (report a slow transient or saddle) at this time (default %(default)s)",
    )


# --- checks ------------------------------------------------------------------------------


def _check_model(args):
    """The check every command with model flags makes: stop-gradient needs the projection."""
    if args.stop_gradient and args.model == "embedding":
        raise UsageError(
            "--stop-gradient needs --model projection (the embedding model has no "
            "held copy to stop)"
        )


def _check_horizon(args):
    if args.horizon > args.t_max:
        raise UsageError(f"--horizon must be <= --t-max={args.t_max}, got {args.horizon}")


def _check_t_min(args):
    if args.t_min > args.t1:
        raise UsageError(f"--t-min must be <= --t1={args.t1}, got {args.t_min}")


def _out_dir(path, *, strict=False):
    """Create the output folder ``path`` (``--out``); ``strict``: also refuse a file there and
    a folder that cannot be written to."""
    if strict and os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {path!r} cannot be created: {err.strerror}") from None
    if strict and not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path!r} is not writable")
    return path


# --- set-up ------------------------------------------------------------------------------


def _setup(args, seed=None):
    """The standard data set and the start drawn from ``--seed`` (or ``seed``)."""
    import jax

    from .._data import init_embedding_state, init_projection_state, standard_data

    data = standard_data(args.classes, args.per_class, args.shared)
    init = init_projection_state if args.model == "projection" else init_embedding_state
    key = jax.random.PRNGKey(args.seed if seed is None else seed)
    state = init(key, data.n_samples, args.classes, args.dim)
    return data, state


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


def result_name(result) -> str:
    from .._integrate import result_name as name

    return name(result)


# --- output ------------------------------------------------------------------------------


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


def _note(progress, message):
    """A progress message on stderr (stdout is kept for the result)."""
    if progress:
        print(message, file=sys.stderr)


def _print_min_l2(out):
    print(
        f"MinL2: {out['min_l2'][0]:.6g} at t={out['t'][0]:.3g} -> "
        f"{out['final_min_l2']:.6g} at t={out['t'][-1]:.3g}"
    )


def _print_fixed_point(out):
    """The steady-state summary of ``fixed-point`` and ``spectrum --model projection``."""
    print(
        f"{out['status']} ({out['branch']}) at t={out['t_reached']:.4g}: residual "
        f"{out['residual_norm']:.2e}, MinL2 {out['min_l2']:.6g}, max Re J "
        f"{out['jacobian_max_real']:.2e}, zero modes {out['zero_modes']}"
    )
    print(f"|eig W| = {np.array2string(np.asarray(out['w_eigenvalues_abs']), precision=6)}")
