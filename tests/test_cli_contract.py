"""The command line's failure contract (docs/cli.md, "Exit status"), for every subcommand.

- bad input: exit 2, exactly one line on stderr, no traceback, with ``--json`` a parseable
  ``{"error": ...}`` on stdout, refused before any JAX computation (nothing traced/compiled);
- an internal error: exit 1, one line naming the traceback file;
- Ctrl-C: exit 130 within seconds, one line, nothing left half-written;
- a closed stdout: no traceback.

The fuzz table is derived from the parser: a new subcommand or flag inherits it.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import jax
import numpy as np
import pytest

import collapse_jax.cli as cli
from collapse_jax.cli import _errors, _spectrum, main
from collapse_jax.cli._common import RunFailed

EXE = [sys.executable, "-m", "collapse_jax.cli"]
# as EXE, with Python's own Ctrl-C handler even where the test runner ignores SIGINT (a child
# inherits that); no preexec_fn: forking a threaded (JAX) test process is unsafe
EXE_SIGINT = [
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from collapse_jax.cli import main; sys.exit(main())",
]

# flags for which a value the fuzz table calls bad is a valid one
NEGATIVE_OK = {"--seed", "--margin"}
ZERO_OK = {"--seed", "--margin", "--shared", ("teacher-student", "--frustration")}
# the network command: no shared samples, no hidden layer (a linear encoder), no weight decay,
# no test split
ZERO_OK |= {
    ("network", flag) for flag in ("--frustration", "--depth", "--weight-decay", "--test-fraction")
}
HUGE_OK = {"--margin", "--max-memory"}  # --max-memory: an override, any size

# --- no computation while refusing bad input -----------------------------------------------

_GUARD = {"on": False}


def _no_compute(event, *args, **kwargs):
    if _GUARD["on"] and event.startswith("/jax/core/compile"):
        raise AssertionError(f"bad input reached a JAX computation ({event})")


jax.monitoring.register_event_duration_secs_listener(_no_compute)


@pytest.fixture
def no_compute():
    _GUARD["on"] = True
    yield
    _GUARD["on"] = False


# --- the fuzz table ------------------------------------------------------------------------


def _subparsers():
    (action,) = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _returns(type_, text, kind):
    try:
        value = type_(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    return isinstance(value, kind) and not isinstance(value, bool)


def _bad_values(command, action):
    """(label, value) pairs that must be refused for ``action`` of ``command``."""
    flag = action.option_strings[0]
    if action.nargs == 0:  # store_true
        return [("explicit value", f"{flag}=1")]
    vals = [("empty", ""), ("non-numeric", "abc")]
    if action.choices is not None:
        return [*vals, ("unknown choice", "bogus")]
    if action.type is None:  # a path: --out, --figure, --plot, --key, --labels
        return []
    is_int = _returns(action.type, "3", int)
    is_float = not is_int and _returns(action.type, "0.25", float)
    vals += [("NaN", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("overflowing", "1e999")]
    if flag not in NEGATIVE_OK:
        vals.append(("negative", "-1"))
    if flag not in ZERO_OK and (command, flag) not in ZERO_OK:
        vals.append(("zero", "0"))
    if is_int:
        vals += [("fraction", "2.5"), ("10**5000", "1" + "0" * 5000)]
        if flag not in HUGE_OK:
            vals += [("float notation", "1e23"), ("past int64", "9" * 30)]
    elif not is_float and flag not in HUGE_OK:
        vals.append(("huge", "9" * 30))
    return vals


def _cases():
    cases = []
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.option_strings:  # positional: a file
                cases += [
                    pytest.param(command, [v], label, id=f"{command}-FILE-{label}")
                    for label, v in (
                        ("missing", "MISSING"),
                        ("directory", "DIR"),
                        ("empty file", "EMPTY"),
                        ("text", "TEXT"),
                        ("newline name", "NEWLINE"),
                        ("empty", ""),
                    )
                ]
                continue
            flag = action.option_strings[0]
            for label, value in _bad_values(command, action):
                argv = [value] if action.nargs == 0 else [flag, value]
                cases.append(pytest.param(command, argv, label, id=f"{command}{flag}-{label}"))
        cases.append(pytest.param(command, ["--no-such-flag"], "unknown flag", id=f"{command}-x"))
    cases.append(pytest.param("explode", [], "unknown command", id="explode"))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The files the table refers to by name, made once."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("1 2 3\n4 5 6\n")
    (tmp_path / "bad\nname.npy").write_text("not an array")
    np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(20, 4)))
    return {
        "GOOD": str(tmp_path / "z.npy"),
        "MISSING": str(tmp_path / "missing.npy"),
        "DIR": str(tmp_path / "adir"),
        "EMPTY": str(tmp_path / "empty.npy"),
        "TEXT": str(tmp_path / "text.npy"),
        "NEWLINE": str(tmp_path / "bad\nname.npy"),
    }


def _argv(command, argv, files):
    argv = [files.get(a, a) for a in argv]
    if command == "diagnose" and argv and argv[0].startswith("-"):
        argv = [files["GOOD"], *argv]  # a flag's bad value, the file being good
    return [command, *argv]


def _assert_one_line(err):
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), repr(err)
    assert err.startswith("collapse-jax: error: "), err


def test_fuzz_table_covers_every_subcommand():
    commands = set(_subparsers())
    assert commands == set(cli.COMMANDS)
    assert {c.values[0] for c in CASES} >= commands
    print(f"{len(CASES)} bad inputs x 2 (plain and --json) = {2 * len(CASES)} runs")


@pytest.mark.parametrize("command, argv, label", CASES)
def test_bad_input_one_line_exit_2(command, argv, label, files, capsys, no_compute):
    full = _argv(command, argv, files)
    assert main(full) == 2, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert out == ""
    _assert_one_line(err)
    # with --json: the same line, and a JSON object on stdout
    assert main([*full, "--json"]) == 2
    out, err_json = capsys.readouterr()
    _assert_one_line(err_json)
    assert json.loads(out) == {"error": err.removeprefix("collapse-jax: error: ").rstrip("\n")}


# --- single defects (reproduction commands as reported) ------------------------------------


@pytest.mark.parametrize("seed", ["1e23", "100000000000000000000000", "-9223372036854775809"])
def test_seed_out_of_range_is_bad_input(seed, capsys, no_compute):
    assert main(["simulate", "--seed", seed]) == 2
    out, err = capsys.readouterr()
    _assert_one_line(err)
    assert "--seed" in err and seed in err


def test_fixed_point_seed_range_past_int64(capsys, no_compute):
    assert main(["fixed-point", "--seed", str(2**63 - 1), "--seeds", "2"]) == 2
    _assert_one_line(capsys.readouterr().err)


def test_file_name_with_newline_stays_one_line(tmp_path, capsys, no_compute):
    path = tmp_path / "a\nb.npy"
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    _assert_one_line(err)
    assert "a\\nb.npy" in err


def _network_data_files(folder):
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(12, 3)), np.arange(12) % 3
    X_nan = X.copy()
    X_nan[4, 1] = np.nan
    arrays = {
        "nolabels.npz": dict(X=X),
        "mismatch.npz": dict(X=X, labels=labels[:5]),
        "nan.npz": dict(X=X_nan, labels=labels),
        "float_labels.npz": dict(X=X, labels=labels + 0.5),
    }
    for name, a in arrays.items():
        np.savez(folder / name, **a)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ("mnist", "--data must be one of digits"),
        ("missing.npz", "does not exist"),
        ("", "--data must be one of digits"),
        (".", "is a directory"),
        ("nolabels.npz", "missing ['labels']"),
        ("mismatch.npz", "one label per row of X (12)"),
        ("nan.npz", "X must be finite, got nan at row 4, column 1"),
        ("float_labels.npz", "labels must be integers"),
    ],
)
def test_network_bad_data_is_refused_before_computing(data, fragment, tmp_path, monkeypatch,
                                                      capsys, no_compute):  # fmt: skip
    _network_data_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    for command in (["network"], ["sweep", "--model", "network", "--out", "sw"]):
        assert main([*command, "--data", data]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        _assert_one_line(err)
        assert fragment in err, err
    assert not os.path.exists(tmp_path / "sw")


def test_internal_error_is_exit_1_with_traceback_file(monkeypatch, tmp_path, capsys):
    def broken(args, progress):
        raise ValueError("an internal value check failed\nsecond line")

    monkeypatch.setattr(_spectrum, "run", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["spectrum", "--json"]) == 1
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    prefix = "collapse-jax: internal error: ValueError: an internal value check failed ("
    assert err.startswith(prefix), err
    path = err.split("traceback written to ")[1].rstrip(")\n")
    assert os.path.dirname(path) == str(tmp_path)
    text = open(path).read()
    assert "Traceback" in text and "second line" in text and "def broken" not in text
    assert json.loads(out)["error"].startswith("internal error: ValueError:")


def test_failed_run_is_exit_1_one_line(monkeypatch, capsys):
    def failed(args, progress):
        raise RunFailed("the solve did not succeed: diffrax result max_steps_reached")

    monkeypatch.setattr(_spectrum, "run", failed)
    assert main(["spectrum"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "collapse-jax: error: the solve did not succeed: diffrax result max_steps_reached\n"
    )
    assert main(["spectrum", "--json"]) == 1
    assert "max_steps_reached" in json.loads(capsys.readouterr().out)["error"]


def test_usage_error_from_a_check_is_exit_2(capsys, no_compute):
    # a command's own check (after parsing) is bad input, with --json too
    assert main(["simulate", "--stop-gradient", "--json"]) == 2
    out, err = capsys.readouterr()
    _assert_one_line(err)
    assert "--stop-gradient" in json.loads(out)["error"]


def _warning_run(args, progress):
    np.nanmean(np.array([np.nan]))  # Mean of empty slice
    np.nanmax(np.array([np.nan]))  # All-NaN slice
    np.polyfit([1.0, 1.0], [1.0, 2.0], 1)  # RankWarning
    return {"value": np.nan}


def test_numpy_runtime_warnings_do_not_leak(monkeypatch, capsys):
    monkeypatch.setattr(_spectrum, "run", _warning_run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["spectrum", "--json"]) == 0
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    out, err = capsys.readouterr()
    assert json.loads(out) == {"value": None} and err == ""


@pytest.mark.slow
def test_numpy_runtime_warnings_of_a_real_sweep_do_not_leak(tmp_path, capsys):
    # a sweep whose every rate is undefined: "Mean of empty slice" in the figure
    argv = ["sweep", "--frustration", "0:0:1", "--seeds", "1", "--t1", "0.01", "--t-min", "0.01"]
    argv += ["--points", "2", "--per-class", "2", "--dim", "2", "--quiet"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main([*argv, "--out", str(tmp_path / "sw")])
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert "Warning" not in capsys.readouterr().err


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def test_closed_stdout_is_silent(tmp_path):
    # collapse-jax diagnose z.npy --json | true
    np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(50, 8)))
    proc = subprocess.Popen(
        [*EXE, "diagnose", str(tmp_path / "z.npy"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    proc.stdout.close()  # the reader has gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)
    assert err == ""


# --- Ctrl-C --------------------------------------------------------------------------------


def _interrupt(argv, ready, tmp_path):
    """Start ``argv``, wait until stderr shows ``ready`` (the computation runs), send SIGINT;
    returns (exit status, seconds from the signal to the exit, stderr)."""
    proc = subprocess.Popen(
        [*EXE_SIGINT, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=_env(),
    )
    chunks, seen = [], threading.Event()

    def read():
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 4096), b""):
            chunks.append(chunk)
            if ready in b"".join(chunks):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(120), b"".join(chunks)
        time.sleep(1.0)  # inside the compiled solve
        start = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        elapsed = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    return code, elapsed, b"".join(chunks).decode()


def _lines_after(err, marker):
    """The lines of stderr after the progress output (which contains ``marker``)."""
    tail = err.rsplit(marker, 1)[1].replace("\r", "\n")
    return [line for line in tail.splitlines()[1:] if line.strip()]


@pytest.mark.slow  # 13 s: the solve's compilation comes first
def test_ctrl_c_inside_a_jitted_solve_with_progress_bar(tmp_path):
    # collapse-jax simulate (progress bar on) interrupted inside the diffrax solve
    argv = ["simulate", "--solver", "tsit5", "--per-class", "20", "--dim", "8", "--t1", "1e7"]
    code, elapsed, err = _interrupt(argv, b"%|", tmp_path)
    assert code == 130, err
    assert elapsed < 5
    assert "Traceback" not in err and "JaxRuntimeError" not in err
    assert _lines_after(err, "%|") == ["collapse-jax: interrupted; nothing was written"]
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_a_sweep_writes_nothing(tmp_path):
    # collapse-jax sweep ... interrupted while computing: no segfault, no --out folder left
    argv = ["sweep", "--frustration", "0:0.4:8", "--seeds", "8", "--per-class", "40"]
    argv += ["--dim", "16", "--method", "integrate", "--t1", "1e5", "--out", "sw"]
    code, elapsed, err = _interrupt(argv, b"sweeping", tmp_path)
    assert code == 130, err
    assert elapsed < 5
    lines = err.splitlines()
    assert lines[0].startswith("sweeping") and lines[1:] == [
        "collapse-jax: interrupted; nothing was written"
    ], err
    assert os.listdir(tmp_path) == []


def test_interrupt_message_names_what_was_written(tmp_path):
    class Args:
        out = str(tmp_path / "new")

    outputs = _errors._Outputs(Args())
    os.makedirs(Args.out)
    (tmp_path / "new" / "sweep.npz").write_bytes(b"done")
    (tmp_path / "new" / ".sweep.abc123.png").write_bytes(b"half")
    written = outputs.clean_up()
    assert written == [str(tmp_path / "new" / "sweep.npz")]
    assert os.listdir(tmp_path / "new") == ["sweep.npz"]
    assert "1 file(s) written" in _errors._interrupted_message(written)
    os.unlink(written[0])
    os.rmdir(Args.out)
    outputs = _errors._Outputs(Args())
    os.makedirs(Args.out)  # made by the run, nothing written yet: removed
    assert outputs.clean_up() == [] and not os.path.exists(Args.out)


def test_json_stdout_is_protected_from_c_level_prints():
    """With ``--json`` the command runs with file descriptor 1 pointed at stderr: what a C
    library prints there (LAPACK's ``** On entry to DLASCL ...`` on ``--t1 1e-300``) cannot
    corrupt the one JSON object on stdout."""
    code = (
        "import os, sys\n"
        "from collapse_jax.cli._errors import _CStdoutToStderr\n"
        "c = _CStdoutToStderr(); c.start()\n"
        "os.write(1, b'from C\\n'); print('from Python')\n"
        "c.stop(); print('{}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "{}\n"
    assert "from C" in proc.stderr and "from Python" in proc.stderr


@pytest.mark.slow
def test_tiny_times_give_valid_json():
    """`simulate --t-min 1e-301 --t1 1e-300 --json` printed LAPACK errors on stdout and exited
    with a LinAlgError; the rate fit now works in units of the last time."""
    proc = subprocess.run(
        [sys.executable, "-m", "collapse_jax.cli", "simulate", "--t-min", "1e-301", "--t1",
         "1e-300", "--points", "8", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert len(out["t"]) == 8
