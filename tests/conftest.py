import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see collapse_jax/__init__.py

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


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
