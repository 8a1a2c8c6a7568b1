"""The single-answer models that one-to-many problems defeat, as densities so the same metrics score them.

- :class:`GaussianRegression`: an MLP trained on squared error learns E[y | x], which on a
  one-to-many problem lies *between* the branches; with the spread of its residuals as a scale it
  becomes a single Gaussian p(y | x) = N(y; f(x), s^2).
- :class:`BinnedClassifier`: a softmax over B bins of y trained by cross-entropy. Read as a histogram
  density, p(y | x) = softmax_b(x) / width_b for y in bin b, it is a real (coarse) model of p(y | x);
  read with argmax (:meth:`BinnedClassifier.predict`) it returns one branch and hides the others.

Both are trained by the shared loop until they converge (a baseline stopped early proves nothing)
and speak the conditional-density protocol.

Example:
    >>> from generate_dataset import linear_mixture
    >>> data = linear_mixture(n_samples=300, seed=0)
    >>> regression = GaussianRegression(hidden=16)
    >>> history = regression.fit(data.x_train, data.y_train, epochs=5, progress=False)
    >>> regression.log_prob(data.y_test, data.x_test).shape
    (30,)
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch.nn import functional as F

from utilis.mixtures import GaussianMixtureDensity, HistogramDensity
from utilis.networks import NetworkDensity, Standardiser, mlp
from utilis.protocol import check_count, check_inputs
from utilis.spaces import Euclidean
from utilis.training import History, TrainingSettings

__all__ = ["BinnedClassifier", "GaussianRegression", "fit_baselines"]


class _SingleNetwork(NetworkDensity):
    """An MLP on z-scored x (a scalar, or a vector of ``x_dim``), and the numpy side of its outputs."""

    def __init__(self, outputs: int, hidden: int, depth: int, x_dim: int = 1, y_dim: int = 1):
        super().__init__()
        self.x_dim, self.y_space = check_count(x_dim, "x_dim"), Euclidean(check_count(y_dim, "y_dim"))
        self.scaling = Standardiser(self.x_dim, self.y_dim)
        self.net = mlp(self.x_dim, outputs, check_count(hidden, "hidden"), check_count(depth, "depth"))

    def features(self, x: Tensor) -> Tensor:
        """The network's outputs for a batch of x (n,) or (n, x_dim): (n, outputs)."""
        return self.net(self.scaling.z_rows(x))

    @torch.no_grad()
    def _outputs(self, x: np.ndarray) -> np.ndarray:
        return self.features(self._as_tensor(x)).double().cpu().numpy()


class GaussianRegression(_SingleNetwork, GaussianMixtureDensity):
    """Squared-error regression f(x) ~ E[y | x], made a density N(y; f(x), s^2) with s its residual spread;
    for a vector y (``y_dim`` > 1), N(y; f(x), S) with S the covariance of the training residuals (kept as
    its Cholesky factor).

    On a one-to-many problem E[y | x] changes fast where the branches' weights change, and the loss
    surface is flat between the branches, so it is trained until its training loss converges: the
    whole cosine budget, monitored on the training loss, long enough that f(x) reaches E[y | x]
    (tested against the truth's E[y | x]).
    """

    def __init__(self, hidden: int = 64, depth: int = 3, x_dim: int = 1, y_dim: int = 1):
        super().__init__(y_dim, hidden, depth, x_dim, y_dim)
        # s, or for a vector y the Cholesky factor of the residuals' covariance
        start = torch.ones(()) if self.y_dim == 1 else torch.eye(self.y_dim)
        self.register_buffer("scale", start.to(torch.float64))

    def mean(self, x: Tensor) -> Tensor:
        """f(x): (n,), or (n, y_dim)."""
        out = self.scaling.y_mean.float() + self.scaling.y_sd.float() * self.features(x)
        return out[:, 0] if self.y_dim == 1 else out

    def forward(self, x: Tensor) -> torch.distributions.Distribution:
        if self.y_dim > 1:
            return torch.distributions.MultivariateNormal(self.mean(x), scale_tril=self.scale.float())
        return torch.distributions.Normal(self.mean(x), self.scale.float())

    # Trained until its training loss converges: a validation split of a few hundred points is too
    # noisy for squared errors across far-apart branches to choose the epoch. The whole cosine budget
    # (patience = epochs): its last epochs, at a small step, are the ones that bring f(x) onto E[y | x].
    training_defaults = TrainingSettings(lr=1e-2, batch_size=None, epochs=100, patience=100, monitor="train")

    def _description(self) -> str:
        return "MSE regression"

    def _loss(self, seed: int | None):
        return GaussianRegression._squared_error

    def _squared_error(self, x: Tensor, y: Tensor) -> Tensor:
        """The mean squared error of f(x), in z-units of y (the training loss; summed over y's axes)."""
        z_y = self.scaling.z_y(y)
        if self.y_dim == 1:
            return (self.features(x)[:, 0] - z_y).square().mean()
        return (self.features(x) - z_y).square().sum(-1).mean()

    def _after_training(self, x: np.ndarray, y: np.ndarray, history: History, **_) -> None:
        """The scale s: the spread of the training residuals y - f(x); for a vector y the Cholesky factor
        of their covariance (about zero, as the Gaussian's is; its eigenvalues floored at 1e-12 of the
        largest, so that a residual exactly collinear keeps a factor)."""
        residuals = y - self._given_x(x)[1][:, 0]
        if self.y_dim == 1:
            self.scale.fill_(float(np.std(residuals)) or 1.0)
            return
        covariance = residuals.T @ residuals / len(residuals)
        values, vectors = np.linalg.eigh(covariance)
        values = np.maximum(values, 1e-12 * max(values.max(), 1e-300))
        self.scale.copy_(torch.as_tensor(np.linalg.cholesky((vectors * values) @ vectors.T)))

    def predict(self, x: ArrayLike) -> np.ndarray:
        """f(x): the squared-error prediction, (m,) or (m, y_dim), for x a scalar or 1-D (rows (m, x_dim))."""
        x = check_inputs(x, "x", self.x_dim)
        self._check_ready()
        return self._given_x(x)[1][:, 0]

    def _given_x(self, x):
        y_mean, y_sd = self.scaling.y_mean.numpy(), self.scaling.y_sd.numpy()
        if self.y_dim == 1:
            mean = y_mean.item() + y_sd.item() * self._outputs(x)  # (m, 1)
            return np.zeros_like(mean), mean, np.full_like(mean, self.scale.item())
        mean = (y_mean + y_sd * self._outputs(x))[:, None, :]  # (m, 1, d)
        tril = np.broadcast_to(self.scale.numpy(), (len(x), 1, self.y_dim, self.y_dim))
        return np.zeros((len(x), 1)), mean, tril


class BinnedClassifier(_SingleNetwork, HistogramDensity):
    """A softmax over bins of y: a histogram density, or with argmax a single answer.

    The bins span the training y widened by ``margin`` of its range on each side; p(y | x) is 0
    (log -inf) outside them. For y in the plane (``y_dim=2``) the cells are the product of ``n_bins``
    bins on each axis, ``n_bins``^2 classes numbered in C order; beyond the plane the classes would grow
    as ``n_bins``^d (50^3 = 125,000 outputs a point), and the model refuses ``y_dim`` > 2.
    """

    def __init__(
        self, n_bins: int = 50, hidden: int = 64, depth: int = 3, margin: float = 0.1, x_dim: int = 1, y_dim: int = 1
    ):
        self.n_bins = check_count(n_bins, "n_bins", minimum=2)
        if check_count(y_dim, "y_dim") > 2:
            raise ValueError(
                f"y_dim must be 1 or 2 for a softmax over bins, got {y_dim}: its n_bins^y_dim classes "
                f"({self.n_bins}^{y_dim} = {self.n_bins**y_dim:,}) grow out of reach beyond the plane"
            )
        super().__init__(self.n_bins**y_dim, hidden, depth, x_dim, y_dim)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < np.inf:
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        self.margin = float(margin)
        edges = torch.linspace(0.0, 1.0, self.n_bins + 1, dtype=torch.float64)
        self.register_buffer("edges", edges if y_dim == 1 else edges.repeat(y_dim, 1))  # (B + 1,) or (d, B + 1)

    @property
    def bin_edges(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """The B + 1 edges of the bins; in the plane, a pair of them, one per axis."""
        edges = self.edges.cpu().numpy()
        return edges if self.y_dim == 1 else tuple(edges)

    @staticmethod
    def edges_for(y: ArrayLike, n_bins: int = 50, margin: float = 0.1) -> np.ndarray | tuple[np.ndarray, ...]:
        """The ``n_bins + 1`` edges a fit on training outputs ``y`` sets: equal bins over y's range widened
        by ``margin`` of it on each side (for rows (n, d) of a vector y, a tuple of such edges, one per axis).
        What :class:`~utilis.oracles.BinnedTruth` needs to stand beside a softmax over bins without training one."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2) or not len(y) or not np.isfinite(y).all():
            raise ValueError(f"y must be a non-empty array (n,) or (n, d) of finite outputs, got shape {y.shape}")
        n_bins = check_count(n_bins, "n_bins", minimum=2)
        if y.ndim == 2:
            return tuple(BinnedClassifier.edges_for(np.ascontiguousarray(column), n_bins, margin) for column in y.T)
        span = y.max() - y.min() or 1.0
        lo, hi = y.min() - margin * span, y.max() + margin * span
        return torch.linspace(lo, hi, n_bins + 1, dtype=torch.float64).numpy()

    def forward(self, x: Tensor) -> torch.distributions.Categorical:
        """p(bin | x): a ``Categorical`` over the bins (the cells, in the plane)."""
        return torch.distributions.Categorical(logits=self.features(x))

    training_defaults = TrainingSettings(lr=5e-3, batch_size=None, epochs=100, patience=20)

    def _description(self) -> str:
        cells = "" if self.y_dim == 1 else f" a side ({self.n_bins**self.y_dim} cells)"
        return f"softmax over {self.n_bins} bins{cells}"

    def _initialise(self, x: np.ndarray, y: np.ndarray) -> None:
        """The bins: ``n_bins`` equal ones over the training y widened by ``margin`` of its range on each side."""
        edges = self.edges_for(y, self.n_bins, self.margin)
        self.edges.copy_(torch.from_numpy(np.asarray(edges)))

    def cells(self, y: np.ndarray) -> np.ndarray:
        """The bin (the cell, numbered in C order, in the plane) of each training output, clipped to the
        outermost: (n,) integers."""
        def bin_of(values, edges):
            return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, self.n_bins - 1)

        if self.y_dim == 1:
            return bin_of(y, self.bin_edges)
        per_axis = tuple(bin_of(y[:, i], edges) for i, edges in enumerate(self.bin_edges))
        return np.ravel_multi_index(per_axis, (self.n_bins,) * self.y_dim)

    def _train(self, x: np.ndarray, y: np.ndarray, **kwargs) -> History:
        """Train on the cross-entropy of each point's bin."""
        return super()._train(x, self.cells(y).astype(np.float64), **kwargs)

    def _loss(self, seed: int | None):
        return BinnedClassifier._cross_entropy

    def _cross_entropy(self, x: Tensor, bins: Tensor) -> Tensor:
        return F.cross_entropy(self.features(x), bins.long())

    def _given_x(self, x):
        logits = self._outputs(x)
        return (logits - np.logaddexp.reduce(logits, axis=1, keepdims=True),)

    def probabilities(self, x: ArrayLike) -> np.ndarray:
        """p(bin | x) for a scalar or 1-D x (rows (m, x_dim) of a vector x): shape (len(x), n_bins^y_dim)."""
        x = check_inputs(x, "x", self.x_dim)
        self._check_ready()
        return np.exp(self._given_x(x)[0])

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The argmax reading: the centre of the most probable bin (cell), one branch per x: (m,) or (m, y_dim)."""
        best = self.probabilities(x).argmax(axis=1)
        if self.y_dim == 1:
            edges = self.bin_edges
            return 0.5 * (edges[best] + edges[best + 1])
        per_axis = np.unravel_index(best, (self.n_bins,) * self.y_dim)  # best is 1-D: unravel_index is exact
        return np.stack([0.5 * (e[b] + e[b + 1]) for e, b in zip(self.bin_edges, per_axis)], axis=-1)


def fit_baselines(data, *, seed: int | None = 0, n_bins: int = 50, **train_kwargs) -> dict[str, NetworkDensity]:
    """Both single-answer baselines fitted on a dataset's training points, labelled as the notebooks
    show them: {"MSE regression": GaussianRegression, "bins (histogram)": BinnedClassifier}."""
    models = {"MSE regression": GaussianRegression(), "bins (histogram)": BinnedClassifier(n_bins=n_bins)}
    for model in models.values():
        model.fit(data.x_train, data.y_train, seed=seed, **train_kwargs)
    return models
