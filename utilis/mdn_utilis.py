"""The mixture density network (Bishop, Pattern Recognition and Machine Learning, section 5.6).

An MLP maps x to the parameters of a mixture of K Gaussians over y:

.. math::
    p(y \\mid x) = \\sum_{k=1}^K \\pi_k(x)\\, \\mathcal{N}(y; \\mu_k(x), \\sigma_k(x)^2),
    \\qquad \\pi(x) = \\operatorname{softmax}(a(x)),
    \\quad \\sigma_k(x) = \\operatorname{softplus}(s_k(x)) + \\sigma_{\\min}

trained by the negative log-likelihood. For a vector y in R^d (``y_dim = d``) the components carry full
covariances, N(y; mu_k(x), L_k(x) L_k(x)^T), through a Cholesky factor whose diagonal is a softplus plus
the floor and whose strictly lower entries are free (the form
``torch.distributions.MultivariateNormal(scale_tril=...)`` takes); x may be a vector too (``x_dim``).
``forward(x)`` returns a
``torch.distributions.MixtureSameFamily`` (:class:`utilis.networks.GaussianMixture`), so the loss
is ``-model(x).log_prob(y).mean()`` as for every model here. Inputs and outputs are z-scored inside
the model with the training data's statistics; the scales have a floor so no component collapses
onto a point; the means start spread over the quantiles of y, not on top of each other.

Example:
    >>> from generate_dataset import inverted_sinusoid_mixture, robot_arm
    >>> data = inverted_sinusoid_mixture(n_samples=500, seed=0)
    >>> mdn = MDN(n_components=4)
    >>> history = mdn.fit(data.x_train, data.y_train, progress=False, epochs=3)
    >>> mdn.sample(data.x_test[:5], 10).shape
    (10, 5)
    >>> arm = robot_arm(n_samples=500, seed=0)
    >>> planar = MDN(n_components=4, x_dim=arm.x_dim, y_dim=arm.y_space.dim)
    >>> history = planar.fit(arm.x_train, arm.y_train, progress=False, epochs=3)
    >>> planar.sample(arm.x_test[:5], 10).shape
    (10, 5, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.cluster import KMeans
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal
from torch.nn import functional as F

from utilis.density import find_modes
from utilis.mixtures import GaussianMixtureDensity
from utilis.networks import GaussianMixture, NetworkDensity, Standardiser, logsumexp, mlp
from utilis.protocol import check_count, check_inputs, check_positive, finite_array
from utilis.spaces import Euclidean
from utilis.training import TrainingSettings

__all__ = ["MDN", "MixtureParameters", "MultivariateGaussianMixture"]


class MixtureParameters(NamedTuple):
    """pi_k(x), mu_k(x), sigma_k(x) for a batch of x, as numpy arrays of shape (len(x), K); for a vector
    y, the means are (len(x), K, d) and ``scales`` the Cholesky factors of the covariances, (len(x), K, d, d)."""

    weights: np.ndarray
    means: np.ndarray
    scales: np.ndarray


class MultivariateGaussianMixture(MixtureSameFamily):
    """sum_k w_k N(y; mu_k, L_k L_k^T) over a vector y: a ``MixtureSameFamily`` of ``MultivariateNormal``
    whose sum over the components is :func:`utilis.networks.logsumexp`, as :class:`~utilis.networks.GaussianMixture`
    does for a scalar y. ``logits`` (..., K), ``means`` (..., K, d), ``scale_tril`` (..., K, d, d)."""

    def __init__(self, logits: Tensor, means: Tensor, scale_tril: Tensor):
        mixing = Categorical(logits=logits, validate_args=False)
        components = MultivariateNormal(means, scale_tril=scale_tril, validate_args=False)
        super().__init__(mixing, components, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(y) for y (..., d) broadcasting against the batch shape."""
        log_prob_y = self.component_distribution.log_prob(value.unsqueeze(-2))
        log_weights = torch.log_softmax(self.mixture_distribution.logits, dim=-1)
        return logsumexp(log_prob_y + log_weights, dim=-1)


class MDN(NetworkDensity, GaussianMixtureDensity):
    """A mixture density network over y given x: scalars, or vectors of ``x_dim`` and ``y_dim`` entries.

    Args:
        n_components: K, the number of Gaussians. The default, 20, is where the gap stops improving on
            the camera set, whose flat cells each need several Gaussians (mdn_model.ipynb sweeps K).
        hidden, depth: width and number of hidden layers of the MLP.
        min_scale: floor on every sigma_k (for a vector y, on each diagonal entry of the Cholesky factor,
            in z-scored units), in units of the training data's standard deviation of y (of each axis).
        x_dim, y_dim: the dimensions of x and y. A network's layers depend on them, so they are set here,
            not learned from the data: a fresh ``MDN(x_dim=..., y_dim=...)`` takes a saved state dict.
    """

    def __init__(
        self,
        n_components: int = 20,
        hidden: int = 64,
        depth: int = 3,
        min_scale: float = 1e-3,
        x_dim: int = 1,
        y_dim: int = 1,
    ):
        super().__init__()
        self.n_components = check_count(n_components, "n_components")
        self.min_scale = check_positive(min_scale, "min_scale")
        self.x_dim, self.y_space = check_count(x_dim, "x_dim"), Euclidean(check_count(y_dim, "y_dim"))
        self.scaling = Standardiser(self.x_dim, self.y_dim)
        # outputs: K mixing logits, K d means, and per component d raw scales (one, for a scalar y) and,
        # for a vector y, the d (d - 1) / 2 free entries below the Cholesky factor's diagonal
        d = self.y_dim
        outputs = self.n_components * (1 + d + d * (d + 1) // 2)
        self.net = mlp(self.x_dim, outputs, check_count(hidden, "hidden"), check_count(depth, "depth"))

    def _check_fit_data(self, x: ArrayLike, y: ArrayLike, **extra) -> tuple[np.ndarray, np.ndarray, dict]:
        try:
            return super()._check_fit_data(x, y, **extra)
        except ValueError as error:
            if "single column" not in str(error):
                raise
            raise ValueError(f"{error}; for vectors build MDN(x_dim=..., y_dim=...)") from error

    def _split_vector(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixing logits (n, K), means (n, K, d) and Cholesky factors (n, K, d, d), in y's own units."""
        k, d = self.n_components, self.y_dim
        out = self.net(self.scaling.z_rows(x))
        logits, means, raw = out.split([k, k * d, k * d * (d + 1) // 2], dim=-1)
        y_mean, y_sd = self.scaling.y_mean.float(), self.scaling.y_sd.float()
        means = y_mean + y_sd * means.reshape(-1, k, d)
        raw = raw.reshape(-1, k, d * (d + 1) // 2)
        rows, columns = torch.tril_indices(d, d, device=raw.device)
        tril = raw.new_zeros(raw.shape[0], k, d, d)
        tril[..., rows, columns] = raw
        diagonal = F.softplus(torch.diagonal(tril, dim1=-2, dim2=-1)) + self.min_scale  # (n, K, d) > 0
        tril = torch.tril(tril, diagonal=-1) + torch.diag_embed(diagonal)
        return logits.contiguous(), means, y_sd[:, None] * tril  # diag(sd) L_z: the factor in y's units

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixing logits, means and scales of y (in y's own units), each (n, K), for x of shape (n,) or
        (n, x_dim); for a vector y, :meth:`_split_vector`'s."""
        if self.y_dim > 1:
            return self._split_vector(x)
        # (n, K) each, made contiguous: elementwise ops on strided views take torch's slow path
        logits, means, raw = (t.contiguous() for t in self.net(self.scaling.z_rows(x)).chunk(3, dim=-1))
        y_mean, y_sd = self.scaling.y_mean.float(), self.scaling.y_sd.float()
        return logits, y_mean + y_sd * means, y_sd * (F.softplus(raw) + self.min_scale)

    def forward(self, x: Tensor) -> GaussianMixture | MultivariateGaussianMixture:
        """p(y | x) for a batch of x (n,) or (n, x_dim): a ``MixtureSameFamily`` of K ``Normal`` (of K
        ``MultivariateNormal`` for a vector y) with batch shape (n,)."""
        if self.y_dim > 1:
            return MultivariateGaussianMixture(*self._split(x))
        return GaussianMixture(*self._split(x))

    # ---- fitting --------------------------------------------------------------------------------
    training_defaults = TrainingSettings(lr=1e-2, batch_size=None, epochs=100, patience=30)
    """A budget of 100 epochs on the shared cosine schedule: as good as 400 epochs of a step size halved
    on plateaus (``benchmarks/bench_mdn.py``)."""

    def _description(self) -> str:
        return f"MDN, K={self.n_components}"

    def _initialise(self, x: np.ndarray, y: np.ndarray) -> None:
        if self.y_dim > 1:
            self._spread_components_in_space(y)
        else:
            self._spread_components(y)

    @torch.no_grad()
    def _spread_components_in_space(self, y: np.ndarray) -> None:
        """For a vector y: the K means start at the centres of a K-means clustering of the z-scored y
        (seeded, one start: a spread over the data as the quantiles give on a line), equal weights, each
        axis' scale a K^(1/d)-th of its spread, no correlation."""
        k, d = self.n_components, self.y_dim
        y_z = (y - self.scaling.y_mean.numpy()) / self.scaling.y_sd.numpy()
        centres = (
            KMeans(k, n_init=1, random_state=0).fit(y_z).cluster_centers_
            if len(y_z) >= k
            else y_z[np.arange(k) % len(y_z)]
        )
        head = self.net[-1]
        head.weight.mul_(0.1)  # the start barely depends on x, so the spread is what training begins from
        head.bias[:k] = 0.0
        head.bias[k : k + k * d] = torch.as_tensor(centres.ravel(), dtype=head.bias.dtype)
        rows, columns = torch.tril_indices(d, d)
        start = torch.where(rows == columns, float(np.log(np.expm1(max(k ** (-1 / d) - self.min_scale, 1e-3)))), 0.0)
        head.bias[k + k * d :] = start.repeat(k).to(head.bias.dtype)

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
        """pi_k(x), mu_k(x), sigma_k(x) for each x (a scalar or 1-D array, or rows (m, x_dim)): three arrays
        (len(x), K), float64; for a vector y the means (len(x), K, d) and the Cholesky factors (len(x), K, d, d)."""
        x = check_inputs(x, "x", self.x_dim)
        self._check_ready()
        log_weights, means, scales = self._given_x(x)
        return MixtureParameters(np.exp(log_weights), means, scales)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The single point prediction most users want: the mean of the highest-weight component, (m,) or (m, d)."""
        weights, means, _ = self.mixture(x)
        return means[np.arange(len(means)), weights.argmax(axis=1)]

    def modes(self, x: ArrayLike, y_grid: ArrayLike, min_mass: float = 0.05) -> list[np.ndarray]:
        """All modes of p(y | x) for each x (peaks holding ``min_mass``, see :func:`utilis.density.find_modes`)."""
        if (self.x_dim, self.y_dim) != (1, 1):
            raise ValueError(
                "MDN.modes searches a 1-D grid of y at a scalar x; for vectors use utilis.density.log_prob_on_grid "
                "and the space's mode finding (y_space.find_modes)"
            )
        x = check_inputs(x)
        y = finite_array(y_grid, "y_grid")
        log_p = self.log_prob(y[:, None], x[None, :])
        return [find_modes(log_p[:, i], y, min_mass) for i in range(len(x))]
