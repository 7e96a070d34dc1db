"""The ``collapse-jax`` command line (contract: ``docs/cli.md``).

With ``--json`` stdout holds exactly one JSON object (``{"error": ...}`` when the command
fails); progress and logs go to stderr. Bad input prints one line to stderr and exits with
status 2; how every other failure is reported: ``_errors.py``. Every command stores its
compiled executables in JAX's persistent compilation cache and loads them in later runs
(``--no-cache``, ``--cache-dir DIR``; ``collapse_jax/_cache.py``).
"""

from __future__ import annotations

import functools
import json
import sys
import warnings

from . import (
    _diagnose,
    _dmft,
    _errors,
    _fixed_point,
    _mechanisms,
    _network,
    _reproduce,
    _simulate,
    _spectrum,
    _sweep,
    _teacher_student,
)
from ._common import RunFailed, UsageError, _add_cache_flags, _jsonable, _Parser

__all__ = ["main"]

# in the order of ``collapse-jax --help``; each has COMMAND, add_parser, run and print_human
_MODULES = (
    _spectrum,
    _fixed_point,
    _simulate,
    _sweep,
    _diagnose,
    _dmft,
    _teacher_student,
    _network,
    _mechanisms,
    _reproduce,
)
COMMANDS = {m.COMMAND: m for m in _MODULES}


@functools.cache  # built once: argparse parsers are reusable, and building one takes 10 ms
def _parser() -> _Parser:
    from .. import __version__

    p = _Parser(prog="collapse-jax", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"collapse-jax {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _MODULES:
        module.add_parser(sub)
    for command in dict.fromkeys(sub.choices.values()):  # every subcommand once
        _add_cache_flags(command)
    return p


def _warn(message: str) -> None:
    """One line ``collapse-jax: warning: ...`` on stderr; the run goes on."""
    _errors._emit(sys.stderr, f"{_errors.PREFIX}warning: {_errors.one_line(message)}\n")


def _cache_for_run(args, program: bool):
    """The persistent compilation cache of this run (``--no-cache``, ``--cache-dir``):
    returns the function that puts JAX's settings back (``_cache._cli_cache``)."""
    from .. import _cache

    if args.cache_dir is not None and args.no_cache:
        raise UsageError("--cache-dir and --no-cache exclude each other: give one of them")
    if args.cache_dir is not None and not args.cache_dir.strip():
        raise UsageError("--cache-dir must be a folder, got ''")
    _, restore = _cache._cli_cache(args.no_cache, args.cache_dir, program=program, warn=_warn)
    return restore


def main(argv=None) -> int:
    """Entry point of the ``collapse-jax`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when a run's own verifications failed (``reproduce``),
        a run did not succeed, or on an internal error (one line; the traceback goes to a
        file), 2 on bad input (one line on stderr), 130 when interrupted, 141 when stdout was
        closed by its reader.
    """
    # run as the program (console script, ``python -m``), not called from a longer-lived
    # process: only then may the run compile equinox's runtime checks as NaN results (see
    # ``_cache._cli_cache``), which jit's in-memory caches would hand on to later calls
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    json_mode = _errors.json_requested(argv)
    restore_cache = None
    try:
        args = _parser().parse_args(argv)
        json_mode = bool(args.json)
        import jax

        jax.config.update("jax_enable_x64", True)
        restore_cache = _cache_for_run(args, program)
        progress = not args.quiet and not (args.json and not sys.stdout.isatty())
        command = COMMANDS[args.command]
        with warnings.catch_warnings():
            # numpy's "Mean of empty slice", "All-NaN slice", RankWarning...: the results
            # say what is undefined (null), the user can do nothing about the warning
            warnings.simplefilter("ignore", RuntimeWarning)
            status, out = _errors.run_interruptible(
                lambda: command.run(args, progress), args, json_mode
            )
        if status is not None:
            return status
        if args.json:
            # one write: an interrupt cannot leave half an object on stdout
            sys.stdout.write(json.dumps(_jsonable(out), allow_nan=False) + "\n")
        else:
            command.print_human(out)
        sys.stdout.flush()
    except UsageError as err:
        return _errors.bad_input(err, json_mode)
    except RunFailed as err:
        return _errors.run_failed(err, json_mode)
    except KeyboardInterrupt:  # outside the run (start-up, printing)
        _errors.report("interrupted; nothing was written", json_mode)
        return _errors.EXIT_INTERRUPTED
    except BrokenPipeError:
        return _errors.broken_pipe()
    except Exception as err:
        return _errors.internal_error(err, json_mode)
    finally:
        if restore_cache is not None:
            restore_cache()
    # a run whose own verifications failed (reproduce) is not a success
    return 1 if isinstance(out, dict) and out.get("all_passed") is False else 0
