import os

import jax
import pytest

import collapse_jax

jax.config.update("jax_enable_x64", True)

# Warm starts: JAX's persistent compilation cache in .cache/jax of the repository (ignored by
# git), so that a second local run loads what the first compiled. Through the environment, so
# that the command-line runs the tests start (here and in subprocesses) use the same folder
# and never the user's own; COLLAPSE_JAX_CACHE_DIR chooses another, COLLAPSE_JAX_CACHE=0 turns
# it off. The tests keep equinox's raising runtime checks (the command line's NaN mode is only
# for a process it runs as the program), so executables holding those checks are not stored.
os.environ.setdefault(
    "COLLAPSE_JAX_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "jax")
)
collapse_jax.enable_compilation_cache()


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def pytest_collection_modifyitems(config, items):
    """Files holding slow checks run first. With ``--dist loadfile`` (pyproject.toml) a file is
    one unit of work for pytest-xdist; the long files (the end-to-end reproduce run, the
    notebooks, the multi-process sweeps) scheduled last would leave the other worker idle while
    they finish. Within a file, and among the other files, the order is unchanged."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
