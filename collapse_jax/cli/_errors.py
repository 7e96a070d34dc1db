"""How the command line fails: bad input, internal errors, Ctrl-C, a closed stdout.

The contract (``docs/cli.md``, "Exit status"):

- **bad input** (status 2): :class:`~collapse_jax.cli._common.UsageError`, raised by the
  argument parser and by every check of the command modules, is the one exception type that
  means "the user's input was refused". Library ``ValueError``/``TypeError`` are *not* bad
  input here: the command line validates every value itself before it calls the library, so a
  library error that escapes is a gap in those checks, i.e. a bug, and is reported as one.
  Where the command line deliberately leaves a check to the library, it wraps that call in
  :func:`library_checks`, which turns the library's ``ValueError``/``TypeError`` into a
  ``UsageError``;
- **run failed** (status 1): ``RunFailed``, a run that did not succeed (its solve failed);
  one line on stderr;
- **internal error** (status 1): anything else; one line on stderr, the traceback in a file;
- **interrupted** (status 130): Ctrl-C. XLA cannot be interrupted inside a compiled call, so
  the command runs in a worker thread (:func:`run_interruptible`) while the main thread waits
  and takes the signal: it reports in one line what was (not) written, removes what an
  unfinished write left behind, and leaves at once;
- **stdout closed** (``... | head``): status 141, silently.

With ``--json`` every failure also prints ``{"error": "<message>"}`` on stdout (the line
without its ``collapse-jax: error: `` prefix).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import traceback

from ._common import RunFailed, UsageError

PREFIX = "collapse-jax: "
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_RUN_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
_MAX_MESSAGE = 1000  # characters; a longer message (a value typed 100000 digits long) is cut
_GRACE_SECONDS = 1.0  # after Ctrl-C, how long a write under way may take to finish


@contextlib.contextmanager
def library_checks():
    """Turn a ``ValueError``/``TypeError`` of the library call inside into bad input
    (:class:`UsageError`). Only for calls whose checks of a user's value are the ones the
    command line relies on; the message is the library's (it names the argument)."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from err


def one_line(message: str) -> str:
    """``message`` as one printable line: control characters (a newline in a file name) are
    written escaped, as ``repr`` does, and an overlong message is cut in the middle."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))
    if len(text) > _MAX_MESSAGE:
        half = _MAX_MESSAGE // 2
        text = f"{text[:half]}...({len(text) - 2 * half} characters)...{text[-half:]}"
    return text


def json_requested(argv) -> bool:
    """Whether ``argv`` asks for ``--json`` (or an abbreviation argparse accepts), read before
    or without a successful parse."""
    for arg in argv:
        if arg == "--":
            return False
        if len(arg) >= 3 and "--json".startswith(arg):
            return True
    return False


def _emit(stream, text):
    """Write and flush, ignoring a closed stream (the reader of a pipe has gone)."""
    try:
        stream.write(text)
        stream.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass


def report(message: str, json_mode: bool, label: str = "") -> None:
    """The one line ``collapse-jax: <label><message>`` on stderr; with ``--json`` also
    ``{"error": "<message>"}`` on stdout."""
    line = one_line(message)
    if json_mode:
        _emit(sys.stdout, json.dumps({"error": line}) + "\n")
    _emit(sys.stderr, PREFIX + label + line + "\n")


def bad_input(err: UsageError, json_mode: bool) -> int:
    report(str(err), json_mode, label="error: ")
    return EXIT_BAD_INPUT


def run_failed(err: RunFailed, json_mode: bool) -> int:
    """A run that did not succeed (its solve failed): one line, status 1."""
    report(str(err), json_mode, label="error: ")
    return EXIT_RUN_FAILED


def internal_error(err: BaseException, json_mode: bool) -> int:
    """Write the traceback to a file in the temporary folder; report the error in one line."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        fd, path = tempfile.mkstemp(prefix="collapse-jax-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"argv: {sys.argv!r}\n{text}")
        where = f"traceback written to {path}"
    except OSError as write_err:
        where = f"traceback not written: {write_err}"
    lines = str(err).strip().splitlines()
    what = type(err).__name__ + (f": {lines[0]}" if lines else "")
    report(f"internal error: {what} ({where})", json_mode)
    return EXIT_INTERNAL


def broken_pipe() -> int:
    """stdout's reader has gone: point stdout at /dev/null so that the final flush at exit
    cannot fail again, and leave silently."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


# --- Ctrl-C --------------------------------------------------------------------------------


class _Outputs:
    """The files a command may write (``--out`` folder, ``--figure``/``--plot`` files), seen
    before the run, to tell after an interrupt what was written and what was left half."""

    def __init__(self, args):
        self.folders = {}  # folder -> names in it before the run (None: it did not exist)
        out = getattr(args, "out", None)
        self.out = out if isinstance(out, str) else None
        paths = [self.out] if self.out else []
        for flag in ("figure", "plot"):
            value = getattr(args, flag, None)
            if isinstance(value, str):
                paths.append(os.path.dirname(os.path.abspath(value)))
        for folder in paths:
            self.folders[folder] = self._names(folder)

    @staticmethod
    def _names(folder):
        try:
            return set(os.listdir(folder))
        except OSError:
            return None

    def new(self):
        """Paths that appeared in the watched folders since the run started."""
        found = []
        for folder, before in self.folders.items():
            now = self._names(folder) or set()
            found += [os.path.join(folder, n) for n in sorted(now - (before or set()))]
        return found

    def clean_up(self):
        """Remove the temporary files of writes cut off (atomic writes go to a hidden
        temporary name first) and a ``--out`` folder this run created and left empty.
        Returns the files that were written completely."""
        written = []
        for path in self.new():
            if os.path.basename(path).startswith(".") and os.path.isfile(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            elif os.path.isfile(path):
                written.append(path)
        if self.out and self.folders.get(self.out) is None:
            with contextlib.suppress(OSError):
                os.rmdir(self.out)  # only if empty
        return written


class _LineTracker:
    """``sys.stderr`` during a run, remembering whether its last write ended a line (a
    progress bar redraws its line with ``\\r`` and leaves it open)."""

    def __init__(self, stream):
        self._stream = stream
        self.open_line = False
        self.muted = False  # after Ctrl-C: the worker's progress bar must not redraw

    def write(self, text):
        if self.muted:
            return len(text)
        if text:
            self.open_line = not text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _interrupted_message(written):
    if not written:
        return "interrupted; nothing was written"
    names = ", ".join(repr(p) for p in written[:3]) + (" ..." if len(written) > 3 else "")
    return (
        f"interrupted; the run did not finish: {len(written)} file(s) written ({names}), "
        "the rest not"
    )


class _CStdoutToStderr:
    """With ``--json``, stdout carries one JSON object and nothing else: while the command
    runs, file descriptor 1 points at stderr, so that what C libraries print there (LAPACK's
    ``** On entry to DLASCL ...``, Gloo's connection lines) cannot corrupt it. Inactive when
    stdout is not a real file (e.g. captured by a test)."""

    def __init__(self):
        self.saved = None

    def start(self):
        try:
            sys.stdout.flush()
            self.fd = sys.stdout.fileno()
            err = sys.__stderr__.fileno()
        except (AttributeError, OSError, ValueError):
            return
        self.saved = os.dup(self.fd)
        os.dup2(err, self.fd)

    def stop(self):
        if self.saved is None:
            return
        try:
            sys.stdout.flush()  # what Python buffered during the run goes to stderr too
        except (OSError, ValueError):
            pass
        os.dup2(self.saved, self.fd)
        os.close(self.saved)
        self.saved = None


def run_interruptible(fn, args, json_mode):
    """``fn()`` in a daemon worker thread; the main thread waits and takes Ctrl-C.

    On Ctrl-C: one line on stderr (and ``{"error": ...}`` on stdout with ``--json``), the
    leftovers of a cut-off write removed, then the process ends with status 130: at once with
    ``os._exit`` when the worker is still inside a computation (it cannot be stopped, and
    letting the interpreter shut down around a running XLA call can crash it).
    """
    outputs = _Outputs(args)
    box = {}
    done = threading.Event()  # not Thread.join/is_alive: Ctrl-C inside join() marks a running
    # thread as stopped on Python < 3.12 (bpo-45274's fix releases its state lock)

    def work():
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the main thread
            box["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=work, name="collapse-jax-run", daemon=True)
    stderr = sys.stderr
    sys.stderr = tracker = _LineTracker(stderr)
    c_stdout = _CStdoutToStderr()
    try:
        if json_mode:
            c_stdout.start()
        worker.start()
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        c_stdout.stop()
        if outputs.new():
            done.wait(_GRACE_SECONDS)  # a write under way: let it finish (each is atomic)
        sys.stderr = stderr
        tracker.muted = True
        if tracker.open_line:
            _emit(stderr, "\n")  # below the progress bar, not glued to it
        report(_interrupted_message(outputs.clean_up()), json_mode)
        if not done.is_set():
            _emit(sys.stdout, "")
            _emit(sys.stderr, "")
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED, None
    finally:
        c_stdout.stop()
        sys.stderr = stderr
    if "error" in box:
        raise box["error"]
    return None, box["value"]
