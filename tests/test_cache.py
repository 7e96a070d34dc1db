"""Warm starts: the persistent compilation cache (``collapse_jax/_cache.py``, docs/performance.md
"Warm starts").

The facts checked are outside the package: files JAX writes into the folder (its entries are
named after the compiled function, ``jit_<name>-<hash>``), JAX's own cache-hit events, and the
folder a fresh process resolves from its environment. Every process run here gets its own
folder, never the user's cache or the suite's.
"""

import json
import os
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax
from collapse_jax import _cache
from collapse_jax import reproduce as rp
from collapse_jax.cli import main

# a small jitted function in a fresh process; prints JAX's cache hits and misses
_SNIPPET = """
import sys, jax, jax.numpy as jnp
import collapse_jax
counts = {"hits": 0, "misses": 0}
def count(event, **kw):
    for k in counts:
        if event == "/jax/compilation_cache/cache_" + k:
            counts[k] += 1
jax.monitoring.register_event_listener(count)
print("DIR", collapse_jax.enable_compilation_cache(*sys.argv[1:]))
jax.jit(lambda x: jnp.sin(x) * 3.0 + jnp.cos(x))(jnp.arange(5.0)).block_until_ready()
print("HITS", counts["hits"], "MISSES", counts["misses"])
"""


def _env(tmp_path, **extra):
    """The environment of a fresh process: none of the cache variables of this one, a home
    of its own (``tmp_path/home``), then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLLAPSE_JAX_CACHE_DIR", "COLLAPSE_JAX_CACHE", "XDG_CACHE_HOME")
        and not k.startswith("JAX_COMPILATION_CACHE")
    }
    env.update(HOME=str(tmp_path / "home"), JAX_PLATFORMS="cpu", **extra)
    return env


def _snippet(env, *args):
    proc = subprocess.run(
        [sys.executable, "-c", _SNIPPET, *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    hits, _, misses = lines["HITS"].partition(" MISSES ")
    return lines["DIR"], int(hits), int(misses), proc.stderr


def _entries(folder):
    """JAX's cache entries in ``folder`` (its files, without our probe or lock files)."""
    if not os.path.isdir(folder):
        return set()
    return {f for f in os.listdir(folder) if f.startswith("jit_")}


def _cli(env, *argv):
    proc = subprocess.run(
        [sys.executable, "-m", "collapse_jax.cli", *argv], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    return proc


# --- where the folder is ---------------------------------------------------------------------


def test_folder_follows_xdg_cache_home(tmp_path):
    xdg = tmp_path / "xdg"
    folder, hits, misses, _ = _snippet(_env(tmp_path, XDG_CACHE_HOME=str(xdg)))
    expected = xdg / "collapse_jax" / "jax"
    assert folder == str(expected)
    assert _entries(expected) and misses >= 1 and hits == 0
    assert not (tmp_path / "home").exists()  # nothing written to the home folder


def test_folder_defaults_to_home_cache_and_ignores_a_relative_xdg(tmp_path):
    # the XDG specification: a relative XDG_CACHE_HOME is invalid and ignored
    folder, *_ = _snippet(_env(tmp_path, XDG_CACHE_HOME="relative/path"))
    expected = tmp_path / "home" / ".cache" / "collapse_jax" / "jax"
    assert folder == str(expected) and _entries(expected)


def test_env_folder_wins_and_a_second_process_loads_instead_of_compiling(tmp_path):
    folder = tmp_path / "mine"
    env = _env(tmp_path, COLLAPSE_JAX_CACHE_DIR=str(folder), XDG_CACHE_HOME=str(tmp_path / "x"))
    got, hits, misses, _ = _snippet(env)
    assert got == str(folder) and hits == 0 and misses >= 1
    first = {f: os.path.getmtime(folder / f) for f in _entries(folder)}
    assert len(first) == misses  # one file per executable compiled
    got, hits, misses, _ = _snippet(env)
    # JAX's own events: every executable of the second process came from the folder, and
    # the folder holds the same files, untouched
    assert misses == 0 and hits == len(first)
    assert {f: os.path.getmtime(folder / f) for f in _entries(folder)} == first
    assert not (tmp_path / "x").exists()


def test_env_switch_turns_it_off(tmp_path):
    folder = tmp_path / "c"
    env = _env(tmp_path, COLLAPSE_JAX_CACHE_DIR=str(folder), COLLAPSE_JAX_CACHE="off")
    got, hits, misses, _ = _snippet(env)
    assert got == "None" and hits == misses == 0 and not folder.exists()


@pytest.mark.parametrize(
    "value, off", [("0", True), ("off", True), (" OFF ", True), ("false", True), ("no", True),
                   ("1", False), ("on", False), ("", False)],
)  # fmt: skip
def test_env_switch_values(monkeypatch, value, off):
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", value)
    assert _cache._env_disabled() is off


def test_explicit_path_argument(tmp_path):
    folder = tmp_path / "explicit"
    env = _env(tmp_path, COLLAPSE_JAX_CACHE_DIR=str(tmp_path / "other"))
    got, *_ = _snippet(env, str(folder))
    assert got == str(folder) and _entries(folder) and not (tmp_path / "other").exists()


def test_unwritable_folder_warns_once_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("COLLAPSE_JAX_CACHE", raising=False)  # the suite may run with it off
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    bad = blocker / "cache"  # its parent is a file: cannot be created, even by root
    before = {k: getattr(jax.config, k) for k in _cache._KEYS}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert collapse_jax.enable_compilation_cache(bad) is None
        assert collapse_jax.enable_compilation_cache(bad) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and str(bad) in messages[0], messages
    assert {k: getattr(jax.config, k) for k in _cache._KEYS} == before


# --- the command line ------------------------------------------------------------------------


def test_cli_flags_choose_the_folder_or_none(tmp_path):
    data = tmp_path / "z.npy"
    np.save(data, np.random.default_rng(0).normal(size=(30, 5)))
    diagnose = ["diagnose", str(data), "--json"]
    default = tmp_path / "default"
    env = _env(tmp_path, COLLAPSE_JAX_CACHE_DIR=str(default))
    flag = tmp_path / "flag"
    proc = _cli(env, *diagnose, "--cache-dir", str(flag))
    assert proc.returncode == 0, proc.stderr
    assert _entries(flag) and not default.exists()
    proc = _cli(env, *diagnose, "--no-cache")
    assert proc.returncode == 0 and not default.exists()
    proc = _cli({**env, "COLLAPSE_JAX_CACHE": "off"}, *diagnose)
    assert proc.returncode == 0 and not default.exists()
    proc = _cli(env, *diagnose)
    assert proc.returncode == 0 and _entries(default)


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--no-cache", "--cache-dir", "x"], "exclude each other"),
        (["--cache-dir", ""], "--cache-dir must be a folder"),
    ],
)
def test_cli_bad_cache_flags_are_bad_input(argv, msg, capsys):
    assert main(["spectrum", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and msg in err


def test_cli_unwritable_cache_dir_warns_in_one_line_and_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLLAPSE_JAX_CACHE", raising=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = {k: getattr(jax.config, k) for k in _cache._KEYS}
    assert main(["spectrum", "--json", "--cache-dir", str(blocker / "c")]) == 0
    out, err = capsys.readouterr()
    # the run itself is unaffected: the Jacobian spectrum against its closed form
    assert json.loads(out)["max_abs_error"] < 1e-13  # measured 7.1e-15
    lines = [line for line in err.splitlines() if "compilation cache" in line]
    assert len(lines) == 1 and lines[0].startswith("collapse-jax: warning: "), err
    # main() called from Python puts JAX's settings back
    assert {k: getattr(jax.config, k) for k in _cache._KEYS} == before


_SIMULATE = ["simulate", "--t1", "10", "--points", "5", "--json"]


def _results(proc):
    out = json.loads(proc.stdout)
    out.pop("seconds")  # the wall time
    return out


def test_cli_stores_the_diffrax_solve_and_a_second_run_compiles_nothing(tmp_path):
    # The command line compiles equinox's runtime checks as NaN results (diffrax's checks of
    # the save times would otherwise be host callbacks, which JAX does not store): the solve's
    # executable is a file of the folder after the first run.
    folder = tmp_path / "c"
    env = _env(tmp_path, COLLAPSE_JAX_CACHE_DIR=str(folder))
    first = _cli(env, *_SIMULATE)
    assert first.returncode == 0, first.stderr
    files = _entries(folder)
    assert any(f.startswith("jit_diffeqsolve-") for f in files), sorted(files)
    second = _cli(env, *_SIMULATE)
    assert second.returncode == 0 and _results(second) == _results(first)
    assert _entries(folder) == files  # nothing new compiled and stored


@pytest.mark.slow  # 10 s
def test_cli_keeps_a_users_eqx_on_error(tmp_path):
    # EQX_ON_ERROR=raise set by the user: the checks stay host callbacks, the solve is not stored
    folder = tmp_path / "c"
    env = _env(tmp_path, COLLAPSE_JAX_CACHE_DIR=str(folder), EQX_ON_ERROR="raise")
    assert _cli(env, *_SIMULATE).returncode == 0
    files = _entries(folder)
    assert files and not any(f.startswith("jit_diffeqsolve-") for f in files)


# --- where the time goes ---------------------------------------------------------------------


def test_compile_clock_against_the_wall_clock():
    scale = time.time_ns() % 1000 + 0.5  # a constant no earlier process compiled
    f = jax.jit(lambda x: jnp.tanh(x @ x.T) * scale)
    x = jnp.ones((64, 64))
    with _cache.compile_clock() as clock:
        t0 = time.perf_counter()
        f(x).block_until_ready()
        first = time.perf_counter() - t0
    took = clock.snapshot()
    assert took["compile"] > 0 and took["trace"] > 0
    assert took["compile"] + took["trace"] <= first  # parts of the first call's wall time
    # one executable, loaded from the folder or compiled into it (no events with the cache off)
    assert took["hits"] + took["misses"] == (1 if _cache._active_dir() else 0)
    with _cache.compile_clock() as clock:
        f(x).block_until_ready()  # in memory: nothing traced or compiled
    assert clock.snapshot() == dict(trace=0.0, compile=0.0, hits=0, misses=0)


def test_reproduce_reports_compile_and_compute_apart(tmp_path, monkeypatch):
    pause = 0.3

    def section(cfg, out, log, ctx):
        scale = time.time_ns() % 1000 + 0.25
        jax.jit(lambda x: jnp.exp(x) * scale)(jnp.arange(7.0)).block_until_ready()
        time.sleep(pause)  # computing, as far as the clock can tell
        return rp.Section("embedding", ["body"], [], [], {})

    monkeypatch.setitem(rp._RUNNERS, "embedding", section)
    res = rp.reproduce(tmp_path, quick=True, sections=["embedding"])
    nb = json.load(open(res["numbers"]))
    t = nb["section_times"]["embedding"]
    assert t["compile_seconds"] > 0 and t["compute_seconds"] >= pause
    parts = t["compile_seconds"] + t["trace_seconds"] + t["compute_seconds"]
    assert abs(parts - t["seconds"]) < 1e-9  # the parts add up to the section's wall time
    assert (t["cache_hits"] + t["cache_misses"] >= 1) == bool(_cache._active_dir())
    for key in ("compile_seconds", "trace_seconds", "compute_seconds"):
        assert res[key] == nb[key] >= 0
    assert nb["compilation_cache"] == res["cache"]
    assert nb["compilation_cache"]["dir"] == jax.config.jax_compilation_cache_dir
    assert "of which XLA compilation" in open(res["report"]).read()
