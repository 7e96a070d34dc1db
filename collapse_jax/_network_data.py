"""Real data for the network model (docs/network.md): inputs, labels, a held-out split.

The default data set is scikit-learn's bundled handwritten digits (1797 images of 8 x 8
pixels, 10 classes; shipped inside the scikit-learn wheel, so nothing is downloaded). Any
other data set comes as arrays, ``X`` `(N, D)` and integer ``labels`` `(N,)`, e.g. the
embeddings of one's own model, from Python or from an ``.npz`` file with those two keys.

Every data set is split into a training and a test part (stratified: the same fraction of
every class, drawn by ``split_seed``) and standardised with the training part's mean and
standard deviation per input dimension (a constant dimension is left centred, not divided by
zero). ``balance=True`` first subsamples every class to the size of the smallest, so that the
per-class count `n` of the minimal model is defined (docs/network.md, "Against the minimal
model").

Which training samples are shared (frustrated) is a mask on the data, drawn per seed by
[`with_frustration`][collapse_jax.with_frustration]; the alignment matrix follows from it
([`network_alignment`][collapse_jax.network_alignment]).
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._data import _float_dtype

__all__ = [
    "NetworkData",
    "network_data",
    "digits_data",
    "load_network_npz",
    "network_alignment",
    "with_frustration",
    "DATASETS",
]

#: Bundled data sets by name (nothing to download).
DATASETS = ("digits",)


class NetworkData(eqx.Module):
    """A labelled data set split into training and test parts, standardised.

    Attributes:
        X: training inputs `(N, D)`; labels: their classes `(N,)` in `0..K-1`.
        X_test: test inputs `(N_test, D)`; labels_test: `(N_test,)`.
        shared: which training samples are shared, aligned with every class `(N,)` (all
            ``False`` until [`with_frustration`][collapse_jax.with_frustration]).
        n_classes: `K` (static).
        name: where the data came from (static; ``"digits"`` or a file name).
    """

    X: Float[Array, "samples inputs"]
    labels: Int[Array, " samples"]
    X_test: Float[Array, "test inputs"]
    labels_test: Int[Array, " test"]
    shared: Bool[Array, " samples"]
    n_classes: int = eqx.field(static=True)
    name: str = eqx.field(static=True, default="arrays")

    @property
    def n_samples(self) -> int:
        """Training samples `N`."""
        return int(self.X.shape[0])

    @property
    def n_inputs(self) -> int:
        """Input dimension `D`."""
        return int(self.X.shape[1])

    @property
    def frustration(self) -> Float[Array, ""]:
        """The realised fraction of shared training samples."""
        return jnp.mean(self.shared.astype(self.X.dtype))

    @property
    def class_counts(self) -> np.ndarray:
        """Training samples per class, `(K,)`."""
        return np.bincount(np.asarray(self.labels), minlength=self.n_classes)


def network_data(
    X,
    labels,
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    balance: bool = False,
    name: str = "arrays",
    dtype=None,
) -> NetworkData:
    """A [`NetworkData`][collapse_jax.NetworkData] from arrays: split, standardised.

    Args:
        X: inputs `(N, D)`, finite numbers.
        labels: integer classes `(N,)`; any values (they are renumbered `0..K-1` in sorted
            order), at least two classes, each with at least two samples.
        test_fraction: share of every class held out for testing, in `[0, 1)` (0: no test
            split; the test accuracy is then NaN).
        split_seed: seed of the split and of the balancing subsample.
        balance: subsample every class to the smallest class's size first.
        name: recorded with the data.
        dtype: of the arrays (default float64 when x64 is enabled, else float32).

    Raises:
        ValueError: naming the argument and the value (shape, NaN, too few classes...).
    """
    X = np.asarray(X)
    labels = np.asarray(labels)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"X must be a 2-d array (samples, inputs), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X must be finite, got {X[tuple(bad)]} at row {bad[0]}, column {bad[1]}")
    if labels.ndim != 1 or labels.shape[0] != X.shape[0]:
        raise ValueError(
            f"labels must be a 1-d array with one label per row of X ({X.shape[0]}), "
            f"got shape {labels.shape}"
        )
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    tf = float(test_fraction)
    if not (0.0 <= tf < 1.0):
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    classes, y = np.unique(labels, return_inverse=True)
    K = classes.size
    counts = np.bincount(y, minlength=K)
    if K < 2:
        raise ValueError(f"labels must name at least two classes, got {K} ({classes.tolist()})")
    if counts.min() < 2:
        c = classes[np.argmin(counts)]
        raise ValueError(f"labels: every class needs at least two samples, class {c} has 1")
    rng = np.random.default_rng(int(split_seed))
    train_idx, test_idx = [], []
    keep = counts.min() if balance else None
    for c in range(K):
        idx = rng.permutation(np.flatnonzero(y == c))
        if keep is not None:
            idx = idx[:keep]
        n_test = int(round(tf * idx.size))
        n_test = min(n_test, idx.size - 1)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx = np.sort(np.concatenate(train_idx))
    test_idx = np.sort(np.concatenate(test_idx))
    mean = X[train_idx].mean(axis=0)
    std = X[train_idx].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    dtype = _float_dtype() if dtype is None else dtype

    def prepare(idx):
        return jnp.asarray((X[idx] - mean) / std, dtype), jnp.asarray(y[idx], jnp.int32)

    Xtr, ytr = prepare(train_idx)
    Xte, yte = prepare(test_idx)
    return NetworkData(Xtr, ytr, Xte, yte, jnp.zeros(ytr.shape, bool), int(K), str(name))


def digits_data(**kwargs) -> NetworkData:
    """scikit-learn's bundled handwritten digits (1797 x 64, 10 classes), split and
    standardised by [`network_data`][collapse_jax.network_data] (its keyword arguments)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return network_data(d.data, d.target, name="digits", **kwargs)


def load_network_npz(path, **kwargs) -> NetworkData:
    """A data set from an ``.npz`` file holding ``X`` `(N, D)` and ``labels`` `(N,)`, split and
    standardised by [`network_data`][collapse_jax.network_data] (its keyword arguments).

    Raises:
        ValueError: the file is missing or unreadable, or lacks ``X`` or ``labels``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = list(getattr(f, "files", []))
            arrays = {k: f[k] for k in ("X", "labels") if k in files}
    except Exception as err:
        raise ValueError(f"data file {path!r} is not a readable .npz: {err}") from None
    missing = [k for k in ("X", "labels") if k not in arrays]
    if missing:
        raise ValueError(
            f"data file {path!r} must hold arrays 'X' and 'labels', "
            f"missing {missing} (it has {sorted(files)})"
        )
    X, labels = arrays["X"], arrays["labels"]
    return network_data(X, labels, name=os.path.basename(path), **kwargs)


def with_frustration(data: NetworkData, key, frustration) -> NetworkData:
    """``data`` with a fraction `phi` of its training samples shared (aligned with every class).

    A random order of the training samples is drawn from ``key``; the first `round(phi N)` in
    that order are shared. The same key gives nested sets: every sample shared at a ratio is
    shared at every larger ratio (as in the minimal model, where the shared samples of a
    smaller ratio are among those of a larger one). `phi` may be traced (``vmap`` over ratios);
    a concrete `phi` outside `[0, 1)` is refused.
    """
    try:
        value = float(frustration)
    except Exception:  # traced: checked by the caller
        value = None
    if value is not None and not (0.0 <= value < 1.0):
        raise ValueError(f"frustration must be in [0, 1), got {frustration!r}")
    N = data.labels.shape[0]
    order = jax.random.permutation(key, N)
    rank = jnp.zeros(N, jnp.int32).at[order].set(jnp.arange(N, dtype=jnp.int32))
    shared = rank < jnp.round(jnp.asarray(frustration, data.X.dtype) * N)
    return eqx.tree_at(lambda d: d.shared, data, shared)


def network_alignment(data: NetworkData, *, normalise: bool = True) -> Float[Array, "samples K"]:
    """The alignment matrix of the training set: `A_ic = 1` for every class `c` if sample `i` is
    shared, else `A_ic = [c = c_i]` (its own class).

    With ``normalise`` the matrix is divided by `N`, so the loss is a mean over samples
    (learning rates then do not scale with the size of the data set).
    """
    onehot = jax.nn.one_hot(data.labels, data.n_classes, dtype=data.X.dtype)
    A = jnp.where(data.shared[:, None], jnp.ones_like(onehot), onehot)
    return A / data.labels.shape[0] if normalise else A
