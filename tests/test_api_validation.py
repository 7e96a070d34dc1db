"""The Python API refuses what it cannot integrate, in one line naming the argument, and the
command line fails a run whose solve did not succeed."""

import jax
import jax.numpy as jnp
import pytest

import collapse_jax as cj
from collapse_jax._integrate import _check_precision
from collapse_jax._models.embedding import embedding_loss
from collapse_jax.cli import main


@pytest.fixture
def problem():
    data = cj.standard_data(3, 4, 1)
    state = cj.init_embedding_state(jax.random.PRNGKey(0), data.n_samples, 3, 4)
    return cj.vector_field(embedding_loss), state, data.matrix()


def _simulate(problem, state=None, **kw):
    field, state0, args = problem
    state0 = state0 if state is None else state
    return cj.simulate(field, state0, args, ts=cj.log_times(1e-2, 1.0, 3), **kw)


def test_simulate_refuses_a_state_of_mismatched_dimensions(problem):
    """``y`` of dimension 1 next to ``x`` of dimension 4 used to broadcast silently."""
    _, state, _ = problem
    with pytest.raises(ValueError, match=r"field 'y' has shape \(3, 1\).*'dim' is 4") as err:
        _simulate(problem, state._replace(y=state.y[:, :1]))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"field 'x' must have 2 axes"):
        _simulate(problem, state._replace(x=state.x[0]))


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"rtol": -1e-6}, "rtol"),
        ({"atol": -1.0}, "atol"),
        ({"rtol": float("nan")}, "rtol"),
        ({"rtol": 2.0}, "rtol"),
        ({"rtol": 0.0, "atol": 0.0}, "rtol and atol"),
    ],
)
def test_simulate_refuses_bad_tolerances(problem, kw, name):
    """Negative tolerances used to "succeed"."""
    with pytest.raises(ValueError, match=f"simulate: {name}"):
        _simulate(problem, **kw)


def test_simulate_refuses_tolerances_below_the_state_precision(problem):
    """float32 (x64 off) with the default rtol 1e-12 used to run for minutes to
    max_steps_reached, without a word."""
    _, state, _ = problem
    state32 = jax.tree.map(lambda a: a.astype(jnp.float32), state)
    with pytest.raises(ValueError, match=r"rtol=1e-12 is below .* float32 .* enable float64"):
        _simulate(problem, state32)
    _check_precision(state32, 1e-5, 1e-7)  # tolerances float32 can meet pass
    _check_precision(state, 1e-12, 1e-14)  # the defaults in float64 too


@pytest.mark.slow  # compiling Kvaerno5: ~10 s
def test_simulate_cli_failed_solve_exits_nonzero(capsys):
    """``collapse-jax simulate --max-steps 1`` used to print every metric null and exit 0."""
    code = main(["simulate", "--max-steps", "1", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "max_steps_reached" in lines[0] and "--max-steps" in lines[0]
