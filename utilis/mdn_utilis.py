"""The mixture density network (Bishop, Pattern Recognition and Machine Learning, section 5.6).

An MLP maps x to the parameters of a mixture of K Gaussians over y:

.. math::
    p(y \\mid x) = \\sum_{k=1}^K \\pi_k(x)\\, \\mathcal{N}(y; \\mu_k(x), \\sigma_k(x)^2),
    \\qquad \\pi(x) = \\operatorname{softmax}(a(x)),
    \\quad \\sigma_k(x) = \\operatorname{softplus}(s_k(x)) + \\sigma_{\\min}

trained by the negative log-likelihood. ``forward(x)`` returns a
``torch.distributions.MixtureSameFamily`` (:class:`utilis.networks.GaussianMixture`), so the loss
is ``-model(x).log_prob(y).mean()`` as for every model here. Inputs and outputs are z-scored inside
the model with the training data's statistics; the scales have a floor so no component collapses
onto a point; the means start spread over the quantiles of y, not on top of each other.

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
from torch import Tensor
from torch.nn import functional as F

from utilis.density import find_modes
from utilis.mixtures import GaussianMixtureDensity
from utilis.networks import GaussianMixture, NetworkDensity, Standardiser, mlp
from utilis.protocol import check_count, check_inputs, check_positive, finite_array
from utilis.training import TrainingSettings

__all__ = ["MDN", "MixtureParameters"]


class MixtureParameters(NamedTuple):
    """pi_k(x), mu_k(x), sigma_k(x) for a batch of x, as numpy arrays of shape (len(x), K)."""

    weights: np.ndarray
    means: np.ndarray
    scales: np.ndarray


class MDN(NetworkDensity, GaussianMixtureDensity):
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
        self.min_scale = check_positive(min_scale, "min_scale")
        self.scaling = Standardiser()
        # outputs: K mixing logits, K means, K raw scales
        self.net = mlp(1, 3 * self.n_components, check_count(hidden, "hidden"), check_count(depth, "depth"))

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixing logits, means and scales of y (in y's own units), each (n, K), for x of shape (n,)."""
        if x.ndim != 1:
            raise ValueError(f"x must be a 1-D tensor of inputs, got shape {tuple(x.shape)}")
        # (n, K) each, made contiguous: elementwise ops on strided views take torch's slow path
        logits, means, raw = (t.contiguous() for t in self.net(self.scaling.z_x(x)[:, None]).chunk(3, dim=-1))
        y_mean, y_sd = self.scaling.y_mean.float(), self.scaling.y_sd.float()
        return logits, y_mean + y_sd * means, y_sd * (F.softplus(raw) + self.min_scale)

    def forward(self, x: Tensor) -> GaussianMixture:
        """p(y | x) for a batch of x (n,): a ``MixtureSameFamily`` of K ``Normal`` with batch shape (n,)."""
        return GaussianMixture(*self._split(x))

    # ---- fitting --------------------------------------------------------------------------------
    training_defaults = TrainingSettings(lr=1e-2, batch_size=None, epochs=100, patience=30)
    """A budget of 100 epochs on the shared cosine schedule: as good as 400 epochs of a step size halved
    on plateaus (``benchmarks/bench_mdn.py``)."""

    def _description(self) -> str:
        return f"MDN, K={self.n_components}"

    def _initialise(self, x: np.ndarray, y: np.ndarray) -> None:
        self._spread_components(y)

    @torch.no_grad()
    def _spread_components(self, y: np.ndarray) -> None:
        """Start the K means at evenly spaced quantiles of y, equal weights, scales a K-th of y's spread."""
        k = self.n_components
        y_z = (y - y.mean()) / (y.std() or 1.0)
        head = self.net[-1]
        head.weight.mul_(0.1)  # the start barely depends on x, so the spread is what training begins from
        head.bias[:k] = 0.0
        head.bias[k : 2 * k] = torch.as_tensor(np.quantile(y_z, (np.arange(k) + 0.5) / k), dtype=head.bias.dtype)
        head.bias[2 * k :] = float(np.log(np.expm1(max(1.0 / k - self.min_scale, 1e-3))))

    # ---- the mixture, in numpy ------------------------------------------------------------------
    @torch.no_grad()
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, means, scales = self._split(self._as_tensor(x))
        log_weights = torch.log_softmax(logits.double(), dim=-1)
        return tuple(t.double().cpu().numpy() for t in (log_weights, means, scales))

    def mixture(self, x: ArrayLike) -> MixtureParameters:
        """pi_k(x), mu_k(x), sigma_k(x) for each x (a scalar or 1-D array): three arrays (len(x), K), float64."""
        x = check_inputs(x)
        self._check_ready()
        log_weights, means, scales = self._given_x(x)
        return MixtureParameters(np.exp(log_weights), means, scales)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The single point prediction most users want: the mean of the highest-weight component."""
        weights, means, _ = self.mixture(x)
        return means[np.arange(len(means)), weights.argmax(axis=1)]

    def modes(self, x: ArrayLike, y_grid: ArrayLike, min_mass: float = 0.05) -> list[np.ndarray]:
        """All modes of p(y | x) for each x (peaks holding ``min_mass``, see :func:`utilis.density.find_modes`)."""
        x = check_inputs(x)
        y = finite_array(y_grid, "y_grid")
        log_p = self.log_prob(y[:, None], x[None, :])
        return [find_modes(log_p[:, i], y, min_mass) for i in range(len(x))]
