import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see collapse_jax/__init__.py

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
