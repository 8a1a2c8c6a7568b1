"""The mixture density network (Bishop, Pattern Recognition and Machine Learning, section 5.6).

An MLP maps x to the parameters of a mixture of K Gaussians over y:

.. math::
    p(y \\mid x) = \\sum_{k=1}^K \\pi_k(x)\\, \\mathcal{N}(y; \\mu_k(x), \\sigma_k(x)^2),
    \\qquad \\pi(x) = \\operatorname{softmax}(a(x)),
    \\quad \\sigma_k(x) = \\operatorname{softplus}(s_k(x)) + \\sigma_{\\min}

trained by the negative log-likelihood. ``forward(x)`` returns a
``torch.distributions.MixtureSameFamily``, so the loss is ``-model(x).log_prob(y).mean()`` as for
every model here. Inputs and outputs are z-scored inside the model with the training data's
statistics; the scales have a floor so no component collapses onto a point; the means start spread
over the quantiles of y, not on top of each other.

Example:
    >>> from generate_dataset import inverted_sinusoid_mixture
    >>> data = inverted_sinusoid_mixture(n_samples=500, seed=0)
    >>> mdn = MDN(n_components=4)
    >>> history = mdn.fit(data.x_train, data.y_train, progress=False, epochs=3)
    >>> mdn.sample(data.x_test[:5], 10).shape
    (10, 5)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily, Normal
from torch.nn import functional as F

from utilis.density import log_gaussian_mixture, sample_categorical
from utilis.metrics import find_modes
from utilis.protocol import as_generator, broadcast_query, check_count, check_positive, finite_array
from utilis.training import History, train

__all__ = ["MDN", "MixtureParameters"]


class MixtureParameters(NamedTuple):
    """pi_k(x), mu_k(x), sigma_k(x) for a batch of x, as numpy arrays of shape (len(x), K)."""

    weights: np.ndarray
    means: np.ndarray
    scales: np.ndarray


class MDN(nn.Module):
    """A mixture density network over a scalar y given a scalar x.

    Args:
        n_components: K, the number of Gaussians. The default, 20, is where the gap stops improving on
            the camera set, whose flat cells each need several Gaussians (mdn_model.ipynb sweeps K).
        hidden, depth: width and number of hidden layers of the MLP.
        min_scale: floor on every sigma_k, in units of the training data's standard deviation of y.
    """

    def __init__(self, n_components: int = 20, hidden: int = 64, depth: int = 3, min_scale: float = 1e-3):
        super().__init__()
        self.n_components = check_count(n_components, "n_components")
        hidden, depth = check_count(hidden, "hidden"), check_count(depth, "depth")
        self.min_scale = check_positive(min_scale, "min_scale")
        # z-scoring statistics of the training data: (x mean, x sd, y mean, y sd)
        self.register_buffer("stats", torch.tensor([0.0, 1.0, 0.0, 1.0]))
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(1 if i == 0 else hidden, hidden), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, 3 * self.n_components)  # logits, means, raw scales

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixing logits, means and scales of y (in y's own units), each (n, K), for x of shape (n,)."""
        if x.ndim != 1:
            raise ValueError(f"x must be a 1-D tensor of inputs, got shape {tuple(x.shape)}")
        x_mean, x_sd, y_mean, y_sd = self.stats
        out = self.head(self.body(((x.float() - x_mean) / x_sd)[:, None]))  # (n, 3K)
        logits, means, raw = out.chunk(3, dim=-1)
        return logits, y_mean + y_sd * means, y_sd * (F.softplus(raw) + self.min_scale)

    def forward(self, x: Tensor) -> MixtureSameFamily:
        """p(y | x) for a batch of x (n,): a ``MixtureSameFamily`` of K ``Normal`` with batch shape (n,)."""
        logits, means, scales = self._split(x)
        return MixtureSameFamily(Categorical(logits=logits), Normal(means, scales))

    # ---- fitting --------------------------------------------------------------------------------
    def fit(self, x: ArrayLike, y: ArrayLike, **train_kwargs) -> History:
        """Set the z-scoring from (x, y), spread the components over y, and train by the shared loop.

        ``train_kwargs`` go to :func:`utilis.training.train` (epochs, lr, batch_size, seed, progress...).
        """
        x, y = np.ravel(finite_array(x, "x")), np.ravel(finite_array(y, "y"))
        if x.shape != y.shape or len(x) < 2:
            raise ValueError(f"x and y must be 1-D with the same length >= 2, got {x.shape} and {y.shape}")
        self.stats.copy_(torch.tensor([x.mean(), x.std() or 1.0, y.mean(), y.std() or 1.0]))
        self._spread_components(y)
        settings = {"lr": 3e-3, "batch_size": int(np.clip(len(x) // 20, 32, 512)), "epochs": 400}
        # min_epochs: as the components sharpen, the validation loss first spikes, then recovers.
        settings.update(
            {"patience": 30, "min_epochs": 60, "lr_patience": 8, "description": f"MDN, K={self.n_components}"}
        )
        return train(self, x, y, **{**settings, **train_kwargs})

    @torch.no_grad()
    def _spread_components(self, y: np.ndarray) -> None:
        """Start the K means at evenly spaced quantiles of y, equal weights, scales a K-th of y's spread."""
        k = self.n_components
        y_z = (y - y.mean()) / (y.std() or 1.0)
        weight, bias = self.head.weight, self.head.bias
        weight.mul_(0.1)  # the start barely depends on x, so the spread is what training begins from
        bias[:k] = 0.0
        bias[k : 2 * k] = torch.as_tensor(np.quantile(y_z, (np.arange(k) + 0.5) / k), dtype=bias.dtype)
        bias[2 * k :] = float(np.log(np.expm1(max(1.0 / k - self.min_scale, 1e-3))))

    # ---- the conditional-density protocol, in numpy ---------------------------------------------
    @torch.no_grad()
    def mixture(self, x: ArrayLike) -> MixtureParameters:
        """pi_k(x), mu_k(x), sigma_k(x) for each x: three arrays (len(x), K), float64."""
        x = np.atleast_1d(finite_array(x, "x"))
        if x.ndim != 1:
            raise ValueError(f"x must be a scalar or 1-D array, got shape {x.shape}")
        device = self.stats.device
        logits, means, scales = self._split(torch.as_tensor(x, dtype=torch.float32, device=device))
        weights = torch.softmax(logits.double(), dim=-1)
        return MixtureParameters(*(t.double().cpu().numpy() for t in (weights, means, scales)))

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """log p(y | x), broadcast over ``y`` and ``x`` (the network runs once per distinct x)."""
        y_array, x_array, shape = broadcast_query(y, x)
        unique, inverse = np.unique(x_array, return_inverse=True)
        weights, means, scales = self.mixture(unique)
        with np.errstate(divide="ignore"):
            log_w = np.log(weights)
        index = inverse.reshape(x_array.shape)
        out = log_gaussian_mixture(y_array, log_w[index], means[index], scales[index])
        return np.broadcast_to(out, shape).copy()

    def sample(self, x: ArrayLike, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` draws of y from p(y | x) for each x: shape (n, len(x))."""
        n, rng = check_count(n, "n"), as_generator(seed)
        weights, means, scales = self.mixture(x)
        with np.errstate(divide="ignore"):
            k = sample_categorical(np.log(weights), n, rng)  # (n, m)
        columns = np.arange(len(weights))[None, :]
        return means[columns, k] + scales[columns, k] * rng.standard_normal(k.shape)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The single point prediction most users want: the mean of the highest-weight component."""
        weights, means, _ = self.mixture(x)
        return means[np.arange(len(means)), weights.argmax(axis=1)]

    def modes(self, x: ArrayLike, y_grid: ArrayLike, min_mass: float = 0.05) -> list[np.ndarray]:
        """All modes of p(y | x) for each x (peaks holding ``min_mass``, see :func:`utilis.metrics.find_modes`)."""
        x = np.atleast_1d(finite_array(x, "x"))
        y = finite_array(y_grid, "y_grid")
        log_p = self.log_prob(y[:, None], x[None, :])
        return [find_modes(log_p[:, i], y, min_mass) for i in range(len(x))]
