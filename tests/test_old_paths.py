"""Version 0.1's public module paths and result files keep working for one release.

The library's modules became private (``collapse_jax._sweep``, ...) and every public name is
exported by ``collapse_jax``; ``collapse_jax.sweep``, ``collapse_jax.models.projection`` and the
other old paths are served by a finder that warns on each attribute access. A sweep file
written by version 0.1 (``tests/data/sweep_written_by_0.1.npz``: the ``--quick`` reproduction's
stop-gradient projection sweep, written before the move) still loads.
"""

import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax._deprecated import OLD_MODULES

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("old", sorted(OLD_MODULES), ids=str)
def test_every_old_module_imports_and_serves_its_names(old):
    mod = importlib.import_module(f"collapse_jax.{old}")
    private = importlib.import_module(f"collapse_jax.{OLD_MODULES[old]}")
    names = [n for n in getattr(private, "__all__", []) if n in cj.__all__]
    for name in names:
        with pytest.warns(DeprecationWarning, match=rf"collapse_jax\.{old}\.{name} moved to"):
            value = getattr(mod, name)
        assert value is getattr(cj, name)


def test_old_paths_of_the_0_1_release():
    """Names that moved between modules in 0.1 resolve through their old path too."""
    import collapse_jax.metrics

    with pytest.warns(DeprecationWarning, match="moved to collapse_jax.projection_metrics"):
        old = collapse_jax.metrics.projection_metrics
    assert old is cj.projection_metrics
    with pytest.warns(DeprecationWarning, match="moved to collapse_jax.load_sweep"):
        from collapse_jax.sweep import load_sweep
    assert load_sweep is cj.load_sweep
    with pytest.warns(DeprecationWarning, match="moved to collapse_jax.omega"):
        from collapse_jax.models.projection import omega
    assert omega is cj.omega
    # attribute access on the package, as `import collapse_jax; collapse_jax.exact.x` did
    with pytest.warns(DeprecationWarning, match="moved to collapse_jax.lambda_pm"):
        assert cj.exact.lambda_pm is cj.lambda_pm


def test_unknown_names_still_fail():
    import collapse_jax.sweep

    with pytest.raises(AttributeError):
        collapse_jax.sweep.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        cj.no_such_module  # noqa: B018
    with pytest.raises(ImportError):
        importlib.import_module("collapse_jax.models.no_such_module")


def test_the_public_api_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in cj.__all__:
            getattr(cj, name)


def test_a_sweep_file_written_by_0_1_loads():
    path = DATA / "sweep_written_by_0.1.npz"
    res = cj.load_sweep(path)
    assert res.metadata["versions"]["collapse_jax"] == "0.1.0"
    assert res.metadata["model"] == "projection" and res.metadata["stop_gradient"] is True
    F, S, T = res.min_l2.shape
    assert (F, S, T) == (res.frustration.size, res.seed.size, res.t.size)
    assert res.result.shape == res.steps.shape == (F, S)
    # the arrays are the stored ones, bit for bit (read with numpy alone)
    with np.load(path, allow_pickle=False) as raw:
        for key in ("frustration", "seed", "t", "shared", "min_l2", "accuracy", "steps"):
            np.testing.assert_array_equal(getattr(res, key), raw[key])
        assert json.loads(str(raw["metadata"])) == res.metadata
