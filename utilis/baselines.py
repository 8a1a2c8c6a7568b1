"""The single-answer models that one-to-many problems defeat, as densities so the same metrics score them.

- :class:`GaussianRegression`: an MLP trained on squared error learns E[y | x], which on a
  one-to-many problem lies *between* the branches; with the spread of its residuals as a scale it
  becomes a single Gaussian p(y | x) = N(y; f(x), s^2).
- :class:`BinnedClassifier`: a softmax over B bins of y trained by cross-entropy. Read as a histogram
  density, p(y | x) = softmax_b(x) / width_b for y in bin b, it is a real (coarse) model of p(y | x);
  read with argmax (:meth:`BinnedClassifier.predict`) it returns one branch and hides the others.

Both are trained by the shared loop and speak the conditional-density protocol.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from torch.nn import functional as F

from utilis.density import normal_logpdf, sample_categorical
from utilis.protocol import as_generator, broadcast_query, check_count, finite_array
from utilis.training import History, train

__all__ = ["BinnedClassifier", "GaussianRegression"]


def _mlp(outputs: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(1 if i == 0 else hidden, hidden), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, outputs))


def _checked(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.ravel(finite_array(x, "x")), np.ravel(finite_array(y, "y"))
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"x and y must be 1-D with the same length >= 2, got {x.shape} and {y.shape}")
    return x, y


class _ZScored(nn.Module):
    """An MLP on z-scored x, with the training data's statistics kept as a buffer."""

    def __init__(self, outputs: int, hidden: int, depth: int):
        super().__init__()
        self.register_buffer("stats", torch.tensor([0.0, 1.0, 0.0, 1.0]))  # x mean, x sd, y mean, y sd
        self.net = _mlp(outputs, check_count(hidden, "hidden"), check_count(depth, "depth"))

    def features(self, x: Tensor) -> Tensor:
        if x.ndim != 1:
            raise ValueError(f"x must be a 1-D tensor of inputs, got shape {tuple(x.shape)}")
        return self.net(((x.float() - self.stats[0]) / self.stats[1])[:, None])

    def set_stats(self, x: np.ndarray, y: np.ndarray) -> None:
        self.stats.copy_(torch.tensor([x.mean(), x.std() or 1.0, y.mean(), y.std() or 1.0]))

    @torch.no_grad()
    def outputs(self, x: ArrayLike) -> np.ndarray:
        x = np.atleast_1d(finite_array(x, "x"))
        return self.features(torch.as_tensor(x, dtype=torch.float32, device=self.stats.device)).double().cpu().numpy()


class GaussianRegression(_ZScored):
    """Squared-error regression f(x) ~ E[y | x], made a density N(y; f(x), s^2) with s its residual spread."""

    def __init__(self, hidden: int = 64, depth: int = 3):
        super().__init__(1, hidden, depth)
        self.register_buffer("scale", torch.ones(()))

    def mean(self, x: Tensor) -> Tensor:
        return self.stats[2] + self.stats[3] * self.features(x)[:, 0]

    def forward(self, x: Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(x), self.scale)

    def fit(self, x: ArrayLike, y: ArrayLike, **train_kwargs) -> History:
        """Train on the mean squared error (in z-units), then set the scale to the residuals' spread."""
        x, y = _checked(x, y)
        self.set_stats(x, y)

        def squared_error(model: GaussianRegression, xb: Tensor, yb: Tensor) -> Tensor:
            return (((model.mean(xb) - yb) / model.stats[3]) ** 2).mean()

        settings = {"lr": 3e-3, "batch_size": int(np.clip(len(x) // 20, 32, 512)), "epochs": 300, "patience": 20}
        settings["description"] = "MSE regression"
        history = train(self, x, y, loss=squared_error, **{**settings, **train_kwargs})
        self.scale.copy_(torch.tensor(float(np.std(y - self.predict(x)))))
        return history

    def predict(self, x: ArrayLike) -> np.ndarray:
        """f(x): the squared-error prediction."""
        return self.stats[2].item() + self.stats[3].item() * self.outputs(x)[:, 0]

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        y_array, x_array, shape = broadcast_query(y, x)
        unique, inverse = np.unique(x_array, return_inverse=True)
        mean = self.predict(unique)[inverse].reshape(x_array.shape)
        return np.broadcast_to(normal_logpdf(y_array, mean, self.scale.item()), shape).copy()

    def sample(self, x: ArrayLike, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        n, rng = check_count(n, "n"), as_generator(seed)
        mean = self.predict(x)
        return mean[None, :] + self.scale.item() * rng.standard_normal((n, len(mean)))


class BinnedClassifier(_ZScored):
    """A softmax over ``n_bins`` bins of y: a histogram density, or with argmax a single answer.

    The bins span the training y widened by ``margin`` of its range on each side; p(y | x) is 0
    (log -inf) outside them.
    """

    def __init__(self, n_bins: int = 50, hidden: int = 64, depth: int = 3, margin: float = 0.1):
        self.n_bins = check_count(n_bins, "n_bins", minimum=2)
        super().__init__(self.n_bins, hidden, depth)
        self.margin = float(margin)
        self.register_buffer("edges", torch.linspace(0.0, 1.0, self.n_bins + 1, dtype=torch.float64))

    def forward(self, x: Tensor) -> torch.distributions.Categorical:
        """p(bin | x): a ``Categorical`` over the bins."""
        return torch.distributions.Categorical(logits=self.features(x))

    def fit(self, x: ArrayLike, y: ArrayLike, **train_kwargs) -> History:
        """Train on the cross-entropy of each point's bin."""
        x, y = _checked(x, y)
        self.set_stats(x, y)
        span = y.max() - y.min()
        self.edges.copy_(torch.linspace(y.min() - self.margin * span, y.max() + self.margin * span, self.n_bins + 1))
        bins = self._bin(y).astype(np.float64)

        def cross_entropy(model: BinnedClassifier, xb: Tensor, bin_b: Tensor) -> Tensor:
            return F.cross_entropy(model.features(xb), bin_b.long())

        settings = {"lr": 3e-3, "batch_size": int(np.clip(len(x) // 20, 32, 512)), "epochs": 300, "patience": 20}
        settings["description"] = f"softmax over {self.n_bins} bins"
        return train(self, x, bins, loss=cross_entropy, **{**settings, **train_kwargs})

    def _bin(self, y: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges.cpu().numpy(), y, side="right") - 1, 0, self.n_bins - 1)

    def probabilities(self, x: ArrayLike) -> np.ndarray:
        """p(bin | x): shape (len(x), n_bins)."""
        logits = self.outputs(x)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The argmax reading: the centre of the most probable bin, one branch per x."""
        edges = self.edges.cpu().numpy()
        best = self.probabilities(x).argmax(axis=1)
        return 0.5 * (edges[best] + edges[best + 1])

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """The histogram density: log p(bin(y) | x) - log width, -inf outside the bins."""
        y_array, x_array, shape = broadcast_query(y, x)
        edges = self.edges.cpu().numpy()
        unique, inverse = np.unique(x_array, return_inverse=True)
        with np.errstate(divide="ignore"):
            log_p = np.log(self.probabilities(unique)) - np.log(np.diff(edges))  # (m, bins)
        index = np.broadcast_to(inverse.reshape(x_array.shape), shape)
        bins = np.broadcast_to(self._bin(y_array), shape)
        inside = (y_array >= edges[0]) & (y_array <= edges[-1])
        return np.where(inside, log_p[index, bins], -np.inf)

    def sample(self, x: ArrayLike, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """n draws of y per x: a bin from p(bin | x), then uniformly within it."""
        n, rng = check_count(n, "n"), as_generator(seed)
        edges = self.edges.cpu().numpy()
        bins = sample_categorical(self.outputs(x), n, rng)  # the logits; (n, len(x))
        return edges[bins] + rng.random(bins.shape) * np.diff(edges)[bins]
