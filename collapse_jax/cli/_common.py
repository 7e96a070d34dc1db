"""Pieces shared by every command: flags, argument types, checks, set-up, JSON and printing.

Each is defined here once; the command modules (``_spectrum.py``, ``_simulate.py``, ...) only
assemble them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import tempfile

import numpy as np

from .._atomic import atomic_write

DEFAULTS = dict(classes=3, per_class=10, shared=2, dim=4, seed=0)


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class RunFailed(Exception):
    """A run that did not succeed (e.g. its solve failed): reported in one line, exit 1."""


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


def _relative_tolerance(name):
    def ok(value):
        return math.isfinite(value) and 0 < value < 1

    return _checked_number(
        name, float, "a number", ok, "lie in (0, 1) (a relative error, e.g. 1e-8)", echo_text=True
    )


_INT64 = 2**63  # integers the computation can hold: [-2**63, 2**63)


def _int_at_least(name, minimum):
    at_least = _checked_number(name, int, "an integer", lambda v: v >= minimum, f"be >= {minimum}")
    return _checked_number(name, at_least, "an integer", lambda v: v < _INT64, "be < 2**63")


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
    if count < 1:
        raise argparse.ArgumentTypeError(f"--frustration COUNT must be >= 1, got {text}")
    if count == 1 and start != stop:  # one ratio: which end was meant is not ours to guess
        raise argparse.ArgumentTypeError(
            f"--frustration COUNT 1 is one ratio: give START equal to STOP (e.g. "
            f"{parts[0]}:{parts[0]}:1) or COUNT >= 2 for a range, got {text}"
        )
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


def _add_cache_flags(p):
    """``--no-cache`` and ``--cache-dir``: JAX's persistent compilation cache (every command)."""
    g = p.add_argument_group("compilation cache (warm starts)")
    g.add_argument(
        "--no-cache",
        action="store_true",
        help="do not read or write the persistent compilation cache (also: COLLAPSE_JAX_CACHE=0)",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="the cache folder (default: COLLAPSE_JAX_CACHE_DIR, else "
        "$XDG_CACHE_HOME/collapse_jax/jax or ~/.cache/collapse_jax/jax)",
    )


def _add_int_flag(p, flag, minimum, default, help):
    """An integer flag ``>= minimum`` (its errors name ``flag``)."""
    p.add_argument(flag, type=_int_at_least(flag, minimum), default=default, help=help)


def _add_positive_flag(p, flag, default, help):
    """A positive, finite number flag (its errors name ``flag``)."""
    p.add_argument(flag, type=_positive_float(flag), default=default, help=help)


def _add_seed_flag(p, drawn, default=DEFAULTS["seed"]):
    """``--seed``: the seed of what is ``drawn``."""
    seed = _checked_number(
        "--seed", int, "an integer", lambda v: -_INT64 <= v < _INT64, "lie in [-2**63, 2**63)"
    )
    p.add_argument(
        "--seed", type=seed, default=default, help=f"seed of {drawn} (default %(default)s)"
    )


def _add_stop_gradient_flag(p, only="projection model"):
    p.add_argument(
        "--stop-gradient", action="store_true", help=f"stop-gradient field ({only} only)"
    )


def _add_out_flag(p, default, help):
    """``--out``: the output folder (checked by ``_check_out``), and ``--force``."""
    p.add_argument("--out", default=default, help=help)
    p.add_argument(
        "--force",
        action="store_true",
        help="write into --out even if it holds another run's results (overwriting them)",
    )


def _memory_size(text):
    from .._limits import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--max-memory must be a size such as 64GB or 512MiB, got {text!r}"
        ) from None


def _add_max_memory_flag(p):
    """``--max-memory``: the memory a run may use instead of what is detected."""
    p.add_argument(
        "--max-memory",
        type=_memory_size,
        default=None,
        metavar="SIZE",
        help="run if the estimated memory is at most SIZE (e.g. 64GB), instead of checking "
        "it against the memory available here",
    )


def _add_quick_flag(p, help):
    p.add_argument("--quick", action="store_true", help=help)


def _add_distributed_flags(p):
    """``--distributed`` and ``--coordinator/--num-processes/--process-id``: join a cluster of
    processes (``jax.distributed``) that share one sweep; ``--cluster-timeout``."""
    g = p.add_argument_group("cluster (one sweep over the devices of several processes)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join a cluster: jax.distributed.initialize() finds the coordinator, the number "
        "of processes and this one's id itself under SLURM, Open MPI and on cloud TPUs",
    )
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    _add_int_flag(g, "--num-processes", 1, None, "processes in the cluster")
    _add_int_flag(g, "--process-id", 0, None, "this process: 0 .. N-1 (0 writes the files)")
    _add_positive_flag(
        g,
        "--cluster-timeout",
        None,
        "seconds to wait for every process to join, and after which a silent process counts "
        "as dead and the others stop (default: JAX's, 300 and 100)",
    )


def _join_cluster(args):
    """Join the cluster the flags of ``_add_distributed_flags`` name (before anything touches
    a device); returns whether this process writes the files (process 0, or no cluster)."""
    explicit = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    given = [flag for flag, value in explicit.items() if value is not None]
    if not args.distributed and not given:
        if args.cluster_timeout is not None:
            raise UsageError("--cluster-timeout needs --distributed or --coordinator")
        return True
    if not args.distributed and len(given) < 3:
        missing = ", ".join(f for f in explicit if f not in given)
        raise UsageError(f"{given[0]} needs {missing} too (or --distributed to detect them)")
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if given == list(explicit) and args.process_id >= args.num_processes:
        raise UsageError(
            f"--process-id must be < --num-processes={args.num_processes}, got {args.process_id}"
        )
    import jax

    from .._sweep import initialize_distributed

    names = ("coordinator_address", "num_processes", "process_id")
    kw = dict(zip(names, explicit.values(), strict=True))
    if args.cluster_timeout is not None:
        seconds = max(1, math.ceil(args.cluster_timeout))
        kw.update(initialization_timeout=seconds, heartbeat_timeout_seconds=seconds)
    try:
        initialize_distributed(**kw)
    except Exception as err:
        first = next(iter(str(err).splitlines()), "")
        if isinstance(err, ValueError) and given:
            raise UsageError(f"{given[0]}: {first}") from None
        if isinstance(err, ValueError):  # no cluster environment detected
            raise UsageError(
                f"--distributed: {first} (outside SLURM, Open MPI and cloud TPUs give "
                "--coordinator, --num-processes and --process-id)"
            ) from None
        raise RunFailed(f"could not join the cluster: {type(err).__name__}: {first}") from None
    return jax.process_index() == 0


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
    out = p.add_argument_group("output")
    _add_output_flags(out)
    _add_max_memory_flag(out)


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
    if args.t_min >= args.t1:
        raise UsageError(f"--t-min must be < --t1={args.t1}, got {args.t_min}")


def _probe_folder(path, flag, shown):
    """Refuse (``flag`` ``shown``) a folder ``path`` that cannot hold a new file: create what
    is missing of it, write and delete a probe file, then remove the folders it made."""
    if os.path.exists(path) and not os.path.isdir(path):
        if shown == path:
            raise UsageError(f"{flag} {shown!r} exists and is not a directory")
        raise UsageError(f"{flag} {shown!r} cannot be created: {path!r} is not a directory")
    missing, head = [], os.path.abspath(path)
    while not os.path.exists(head):
        missing.append(head)
        head = os.path.dirname(head)
    made = []
    try:
        for folder in reversed(missing):
            os.mkdir(folder)
            made.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".collapse-jax-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        what = "cannot be created" if len(made) < len(missing) else "is not writable"
        raise UsageError(f"{flag} {shown!r} {what} ({err.strerror}): choose another path") from None
    finally:
        for folder in reversed(made):
            os.rmdir(folder)


def _check_out(path, *, force=False, writes=()):
    """Check the output folder ``--out`` before a run computes, creating nothing: it must be
    (or become) a writable folder, and without ``force`` it must not hold a file this run
    writes (``writes``: glob patterns), which would be another run's results."""
    _probe_folder(path, "--out", path)
    if not force and os.path.isdir(path):
        clash = sorted({n for pattern in writes for n in fnmatch.filter(os.listdir(path), pattern)})
        if clash:
            raise UsageError(
                f"--out {path!r} already holds another run's {clash[0]}: choose another "
                "folder, or add --force to overwrite it"
            )
    return path


def _check_file(path, flag):
    """Check an output file (``--figure``, ``--plot``) before a run computes: its folder is
    writable, it is not a folder, and its suffix is an image format matplotlib writes."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a directory: give a file name such as x.png")
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if suffix not in formats:
            raise UsageError(
                f"{flag} {path!r}: unknown image format {suffix!r}; use one of "
                + ", ".join(sorted(formats))
            )
    _probe_folder(os.path.dirname(path) or ".", flag, path)


def _check_size(args):
    """Refuse sizes without a sensible use (the caps of ``_limits``) and a run whose main
    arrays would not fit in memory (or in ``--max-memory``), before anything is allocated."""
    from .. import _limits as lim

    try:
        need, flags, devices = lim.command_bytes(args)
    except lim.SizeError as err:
        raise UsageError(str(err)) from None
    reason = lim.memory_refusal(need, limit=args.max_memory, devices=devices)
    if reason is not None:
        raise UsageError(
            f"{args.command} {flags} {reason}: use smaller sizes, or --max-memory SIZE to override"
        )


def _check_run(args, *, writes=()):
    """The checks every command makes before it computes, creating nothing: sizes (when it
    has ``--max-memory``), the output folder ``--out`` (with ``writes``: the file patterns it
    writes there, see ``_check_out``) and an output file ``--figure`` or ``--plot``."""
    if hasattr(args, "max_memory"):
        _check_size(args)
    if getattr(args, "out", None) is not None:
        _check_out(args.out, force=getattr(args, "force", False), writes=writes)
    for name in ("figure", "plot"):
        if getattr(args, name, None) is not None:
            _check_file(getattr(args, name), f"--{name}")


def _write_json(obj, path):
    """Write ``obj`` as indented JSON to ``path`` atomically (a temporary name in the same
    folder, then renamed); creates the folder. Returns ``path``."""
    with atomic_write(path, mode="w", suffix=".json") as f:
        json.dump(_jsonable(obj), f, allow_nan=False, indent=1)
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
