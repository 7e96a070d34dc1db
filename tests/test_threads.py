"""BLAS threads: one per library after ``import collapse_jax``, whatever was imported first.

Each check runs a script in a fresh process (the import order is the point) with
``OPENBLAS_NUM_THREADS`` removed from its environment unless the check sets it. The thread
counts are read with ``threadpoolctl.threadpool_info()`` directly, not through the package.
JAX's LAPACK library is found without the package as well: it is the BLAS library that a JAX
LU loads when numpy alone came before (JAX's CPU kernels call scipy's LAPACK), or the one that
``import scipy.linalg`` adds to numpy's.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import collapse_jax as cj

# Written before any import of the script's own; PRELUDE is the case's imports.
SCRIPT = """
import json
{prelude}
import threadpoolctl

def blas():
    return {{i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"}}

before_cj = blas()
import collapse_jax as cj
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
{setting}
before_lu = blas()
rng = np.random.default_rng(0)
a = rng.standard_normal((280, 280)) / 280**0.5 + 3 * np.eye(280)  # condition 2.7
b = rng.standard_normal(280)
x = np.asarray(jnp.linalg.solve(jnp.asarray(a), jnp.asarray(b)))
print(json.dumps({{
    "before_cj": before_cj, "before_lu": before_lu, "after_lu": blas(),
    "package": cj.blas_threads(), "env": __import__("os").environ.get("OPENBLAS_NUM_THREADS"),
    "error": float(np.max(np.abs(x - np.linalg.solve(a, b)))),
}}))
"""


def _run(prelude="", setting="", env_threads=None):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["JAX_PLATFORMS"] = "cpu"
    if env_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(env_threads)
    script = textwrap.dedent(SCRIPT).format(prelude=prelude, setting=setting)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # the LU is right whatever the threads (numpy's solve the reference): 8.9e-16 measured
    assert result["error"] < 1e-14
    assert result["package"] == {os.path.basename(p): n for p, n in result["after_lu"].items()}
    return result


def test_numpy_first_jax_lapack_single_threaded():
    r = _run(prelude="import numpy")
    jax_lapack = set(r["after_lu"]) - set(r["before_lu"])  # loaded by JAX's first LU
    assert len(jax_lapack) == 1, r
    assert all(r["after_lu"][p] == 1 for p in jax_lapack)
    assert set(r["after_lu"].values()) == {1}  # numpy's, limited at run time, too
    assert any(n > 1 for n in r["before_cj"].values()) or os.cpu_count() == 1
    assert r["env"] == "1"


@pytest.mark.parametrize("prelude", ["import numpy\nimport scipy.linalg", "import sklearn"])
def test_scipy_first_every_blas_single_threaded(prelude):
    """scipy's LAPACK (JAX's) already loaded and threaded before ``import collapse_jax``."""
    r = _run(prelude=prelude)
    assert len(r["before_cj"]) >= 2, r  # numpy's OpenBLAS and scipy's LAPACK both loaded
    if os.cpu_count() > 1:
        assert all(n > 1 for n in r["before_cj"].values()), r
    assert set(r["after_lu"]) == set(r["before_cj"])  # JAX's LU used one of them
    assert set(r["after_lu"].values()) == {1}


def test_collapse_jax_first():
    r = _run()
    assert set(r["after_lu"].values()) == {1} and len(r["after_lu"]) >= 2


@pytest.mark.skipif(os.cpu_count() < 2, reason="OpenBLAS caps its threads at the cores")
def test_user_environment_variable_is_kept():
    r = _run(prelude="import numpy\nimport scipy.linalg", env_threads=2)
    assert set(r["after_lu"].values()) == {2} and len(r["after_lu"]) >= 2
    assert r["env"] == "2"


@pytest.mark.skipif(os.cpu_count() < 2, reason="OpenBLAS caps its threads at the cores")
@pytest.mark.parametrize("prelude", ["", "import numpy\nimport scipy.linalg"])
def test_set_blas_threads(prelude):
    """Before JAX's LAPACK is loaded (its count then comes from the variable) and after."""
    r = _run(prelude=prelude, setting="cj.set_blas_threads(2)")
    assert set(r["after_lu"].values()) == {2} and len(r["after_lu"]) >= 2
    assert r["env"] == "2"


def test_set_blas_threads_in_process():
    """Here (numpy and JAX already loaded by the test session); the previous state restored."""
    from threadpoolctl import threadpool_info

    def counts():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    previous, previous_env = counts(), os.environ.get("OPENBLAS_NUM_THREADS")
    assert len(previous) == 1  # one count for every library (1 unless the user set one)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200, 200)) + 15 * np.eye(200)
    threads = 2 if previous == {1} and os.cpu_count() > 1 else 1
    try:
        assert set(cj.set_blas_threads(threads).values()) == {threads} == counts()
        assert os.environ["OPENBLAS_NUM_THREADS"] == str(threads)
        x = np.linalg.solve(a, np.ones(200))
        assert np.max(np.abs(a @ x - 1)) < 1e-13  # residual 9.8e-15 measured
        assert set(cj.set_blas_threads(np.int64(1)).values()) == {1} == counts()
    finally:
        cj.set_blas_threads(previous.pop())
        if previous_env is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = previous_env


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_blas_threads_rejects(bad):
    with pytest.raises(ValueError, match="positive integer"):
        cj.set_blas_threads(bad)
