"""Sweeps over several processes, for real: ``jax.distributed`` on localhost, CPU collectives.

Two processes with two host devices each join a coordinator on 127.0.0.1 through the command
line (``--coordinator/--num-processes/--process-id``), run one sweep over the four devices and
gather it (Gloo, JAX's CPU collectives). The gathered result must equal a single-process run to
1e-12, and only process 0 may write. A process that dies must make the other one stop with
JAX's error, within the cluster timeout, instead of waiting for it forever.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from collapse_jax import load_sweep
from collapse_jax.cli import main

TIMEOUT = 5  # --cluster-timeout: seconds to join, and of silence before a process is dead

EMBEDDING = [
    "sweep", "--frustration", "0:0.4:3", "--seeds", "2", "--classes", "3", "--per-class", "3",
    "--dim", "2", "--t1", "100", "--points", "10",
]  # fmt: skip
# t <= 10: over longer horizons the escape from W ~ 0 amplifies round-off (tests/test_sweep.py)
PROJECTION = [
    "sweep", "--model", "projection", "--stop-gradient", "--frustration", "0:0.4:3", "--seeds",
    "1", "--classes", "2", "--per-class", "3", "--dim", "3", "--t-min", "0.1", "--t1", "10",
    "--points", "5",
]  # fmt: skip
# MinL2 ~ 1e-4 at t = 10 is a difference of O(1) label positions, whose round-off (1e-16)
# differs between one batch of 3 members and 4 batches of 1
ATOL = 1e-14
ARRAYS = ("frustration", "seed", "t", "shared", "min_l2", "accuracy", "accuracy_all", "loss")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONUNBUFFERED": "1",
    }


def _cluster_flags(port, i):
    return [
        "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
        "--cluster-timeout", str(TIMEOUT),
    ]  # fmt: skip


def _cli(args):
    return [sys.executable, "-m", "collapse_jax.cli", *args]


def _run_cluster(command, tmp_path, timeout=300):
    """``command`` in two processes of one cluster, ``--out`` ``tmp_path/out<i>``."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            _cli([*command, "--json", "--quiet", "--out", str(tmp_path / f"out{i}")])
            + _cluster_flags(port, i),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    # stdout holds exactly one JSON object (Gloo's connection notices went to stderr)
    return [json.loads(out) for out, _ in outs]


def _single(command, tmp_path, capsys):
    assert main([*command, "--json", "--quiet", "--out", str(tmp_path / "single")]) == 0
    return json.loads(capsys.readouterr().out)


def _check_same(cluster, single, files):
    zero, one = cluster
    assert one["file"] is None and one["figure"] is None  # process 1 wrote nothing
    for name in files:
        gathered = load_sweep(os.path.join(os.path.dirname(zero["file"]), name))
        alone = load_sweep(os.path.join(os.path.dirname(single["file"]), name))
        assert gathered.metadata["process_count"] == 2
        assert gathered.metadata["n_devices"] == 4 and alone.metadata["n_devices"] == 1
        for key in ARRAYS:
            np.testing.assert_allclose(
                getattr(gathered, key), getattr(alone, key), rtol=1e-12, atol=ATOL, err_msg=key
            )
        np.testing.assert_array_equal(gathered.result, alone.result)
        assert np.all(gathered.result == 0)
    for key in ("final_min_l2", "final_accuracy", "shared"):  # null (NaN): undefined
        expected = np.array(single[key], dtype=float)
        for report in cluster:  # both processes received the gathered result
            got = np.array(report[key], dtype=float)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=ATOL)


@pytest.mark.slow
def test_two_processes_embedding_sweep_equals_one(tmp_path, capsys):
    cluster = _run_cluster(EMBEDDING, tmp_path)
    assert not (tmp_path / "out1").exists()  # exactly one process writes
    assert sorted(os.listdir(tmp_path / "out0")) == ["sweep.npz", "sweep.png"]
    _check_same(cluster, _single(EMBEDDING, tmp_path, capsys), ["sweep.npz"])


@pytest.mark.slow
def test_two_processes_projection_sweep_equals_one(tmp_path, capsys):
    cluster = _run_cluster(PROJECTION, tmp_path)
    assert not (tmp_path / "out1").exists()
    files = ["sweep_conservative.npz", "sweep_stop_gradient.npz"]
    assert sorted(os.listdir(tmp_path / "out0")) == sorted([*files, "sweep.png"])
    single = _single(PROJECTION, tmp_path, capsys)
    _check_same(cluster, single, files)
    np.testing.assert_allclose(
        cluster[0]["comparison"]["final_min_l2"],
        single["comparison"]["final_min_l2"],
        rtol=1e-12,
        atol=ATOL,
    )


# joins the cluster, says so, then waits to be killed
JOIN_ONLY = f"""
import sys, time
from collapse_jax import initialize_distributed
initialize_distributed(coordinator_address=sys.argv[1], num_processes=2,
                       process_id=int(sys.argv[2]), initialization_timeout={TIMEOUT},
                       heartbeat_timeout_seconds={TIMEOUT})
print("joined", flush=True)
time.sleep(600)
"""


# the coordinator (0) dying is told at once (~6 s in all); the other one at the heartbeat timeout
@pytest.mark.parametrize("victim", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_dead_process_stops_the_other(tmp_path, victim):
    """Kill one process (the coordinator, 0, or the other) once both have joined: the other,
    in a sweep, must stop with JAX's error within the timeout, writing nothing."""
    port = _free_port()
    survivor = 1 - victim
    dying = subprocess.Popen(
        [sys.executable, "-c", JOIN_ONLY, f"127.0.0.1:{port}", str(victim)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out = tmp_path / "out"
    sweep = subprocess.Popen(
        _cli([*EMBEDDING, "--quiet", "--out", str(out)]) + _cluster_flags(port, survivor),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dying.stdout.readline().strip() == "joined"
        dying.send_signal(signal.SIGKILL)
        dying.wait()
        start = time.monotonic()
        _, err = sweep.communicate(timeout=120)
        waited = time.monotonic() - start
    finally:
        for p in (dying, sweep):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sweep.returncode != 0
    assert "another task died" in err or "could not join" in err, err[-3000:]
    assert waited < 12 * TIMEOUT
    assert not out.exists() or not os.listdir(out)
