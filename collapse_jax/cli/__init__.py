"""The ``collapse-jax`` command line (contract: ``docs/cli.md``).

With ``--json`` stdout holds exactly one JSON object; progress and logs go to stderr. Bad input
prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import json
import sys

from . import (
    _diagnose,
    _dmft,
    _fixed_point,
    _mechanisms,
    _reproduce,
    _simulate,
    _spectrum,
    _sweep,
    _teacher_student,
)
from ._common import UsageError, _jsonable, _Parser

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
    _mechanisms,
    _reproduce,
)
COMMANDS = {m.COMMAND: m for m in _MODULES}


def _parser() -> _Parser:
    from .. import __version__

    p = _Parser(prog="collapse-jax", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"collapse-jax {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _MODULES:
        module.add_parser(sub)
    return p


def main(argv=None) -> int:
    """Entry point of the ``collapse-jax`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when a run's own verifications failed (``reproduce``),
        2 on bad input (one line on stderr), 130 when interrupted.
    """
    try:
        args = _parser().parse_args(argv)
        import jax

        jax.config.update("jax_enable_x64", True)
        progress = not args.quiet and not (args.json and not sys.stdout.isatty())
        command = COMMANDS[args.command]
        out = command.run(args, progress)
    except (UsageError, ValueError, TypeError) as err:
        print(f"collapse-jax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collapse-jax: interrupted", file=sys.stderr)
        return 130
    if args.json:
        json.dump(_jsonable(out), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        command.print_human(out)
    # a run whose own verifications failed (reproduce) is not a success
    return 1 if isinstance(out, dict) and out.get("all_passed") is False else 0
