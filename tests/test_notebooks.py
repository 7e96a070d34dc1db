"""The notebooks in ``notebooks/`` run top to bottom.

Each notebook asserts its own results against closed forms (``lambda_pm``, the Hessian slow
rate, ``n/(n+M)``, exact paths), so executing it without error is a check that can fail.
Here we also check what the notebooks promise: they open with a markdown cell saying what
they show, they are committed without outputs, and they import only the public API.
"""

import ast
import os
import re
from pathlib import Path

import nbclient  # a missing dependency fails the suite: no notebook may be skipped silently
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
#: Executed by the default suite (about 9 s); the others run with ``-m slow`` (7-27 s each,
#: mostly compilation), which keeps the default suite near its 5-minute budget.
FAST = {"01_minimal_model_and_sectors"}
#: Public modules a notebook may import (documented in the README).
PUBLIC = {
    "collapse_jax",
    "collapse_jax._sweep",
    "collapse_jax._plots",
    "collapse_jax._models.teacher_student",
}


def test_there_is_one_notebook_per_part_of_the_story():
    names = [p.stem for p in NOTEBOOKS]
    assert [n[:2] for n in names] == ["01", "02", "03", "04", "05", "06"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_and_uses_the_public_api(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "**What this shows.**" in first.source
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None  # committed without outputs
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("collapse_jax"):
                assert node.module in PUBLIC and node.level == 0, node.module
                assert all(not a.name.startswith("_") for a in node.names)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "cj":
                    assert not node.attr.startswith("_"), node.attr
    # the package is imported as cj, in any order (its BLAS thread limit does not depend on it)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^import collapse_jax as cj", code, re.M)


def _execute(path):
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=env)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    # every code cell ran, in order
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))


@pytest.mark.parametrize(
    "path",
    [p if p.stem in FAST else pytest.param(p, marks=pytest.mark.slow) for p in NOTEBOOKS],
    ids=lambda p: p.stem,
)
def test_notebook_executes_top_to_bottom(path):
    _execute(path)
