"""Multiple hypotheses trained by winner-takes-all, read as guesses and as a density.

One network gives M hypotheses h_1(x) .. h_M(x) of y and a score s_k(x) for each. Winner-takes-all
(WTA, Guzman-Rivera et al., NeurIPS 2012; Rupprecht et al., ICCV 2017) penalises only the hypothesis
nearest to the target, so the hypotheses spread over the branches of p(y | x) and converge to a
conditional quantiser: each h_k(x) the median of its Voronoi cell (the y nearer to it than to any
other hypothesis) under p(y | x). On z-scored y, with d_k = |y - h_k(x)| (the Euclidean norm for a vector
y in R^d, each axis z-scored) and the winner w = argmin_k d_k, the three losses are

.. math::
    L_{\\mathrm{wta}} = d_w, \\qquad
    L_{\\mathrm{relaxed}} = (1 - \\varepsilon)\\, d_w + \\frac{\\varepsilon}{M - 1} \\sum_{k \\ne w} d_k, \\qquad
    L_{\\mathrm{evolving}} = \\sum_{k \\in \\operatorname{top}_k} d_k

where top_k are the k nearest hypotheses and k halves from M to 1 over the first half of training
(Makansi et al., CVPR 2019), then stays at 1. Plain WTA leaves hypotheses that never win: no gradient
reaches their outputs. The relaxed loss pulls the losers gently towards the data; the evolving one
starts with all of them in play. The distance is absolute, not squared: it is what the best-of-M
error measures, and on the linear set at 20,000 points (seed 0) the squared one stalled at a
best-of-20 error of 0.053, the absolute one reached 0.012. The scores are trained by the
cross-entropy -log softmax(s(x))_w on the network's features, detached, so softmax(s(x))_k estimates
the probability of hypothesis k's cell without pulling the hypotheses.

Read as a density (so it is scored in nats like every model here), the hypotheses carry Gaussian
kernels weighted by their scores (the kernel reading of WTA, Letzelter et al., ICML 2024):

.. math::
    q(y \\mid x) = \\sum_{k=1}^M \\operatorname{softmax}(s(x))_k\\, \\mathcal{N}(y; h_k(x), b^2)

with the bandwidth b chosen after training by the likelihood of the validation split (for a vector y, the
kernels are N(y; h_k(x), diag(b s)^2), s the training sds of y's axes: isotropic in z-scored y, as the
distance WTA trains on). The two-stage
reading (``density="two-stage"``, the default; after Makansi et al.'s mixture density fitting) keeps
the hypotheses as the means and fits a weight correction and a scale per hypothesis and x by
likelihood, starting from the kernel reading (for a vector y, a scale per hypothesis and axis: diagonal
covariances, their axes those of the distance). ``forward(x)`` returns the chosen reading as a
``MixtureSameFamily``; :meth:`MultipleHypotheses.kernel_reading` gives the other as a density of
its own. Measured by ``benchmarks/bench_hypotheses.py`` (20,000 points, 3 seeds), the two-stage
reading is 0.014 / 0.058 / 0.093 nats from the truth on the linear, sinusoid and camera sets, the
kernel reading 0.26 / 0.42 / 0.26.

Example:
    >>> from generate_dataset import inverted_sinusoid_mixture
    >>> data = inverted_sinusoid_mixture(n_samples=300, seed=0)
    >>> model = MultipleHypotheses(n_hypotheses=5, hidden=16)
    >>> history = model.fit(data.x_train, data.y_train, epochs=3, progress=False)
    >>> hypotheses, scores = model.predict(data.x_test[:4])
    >>> hypotheses.shape, scores.shape, model.log_prob(data.y_test, data.x_test).shape
    ((4, 5), (4, 5), (30,))
    >>> from generate_dataset import robot_arm
    >>> arm = robot_arm(n_samples=300, seed=0)
    >>> planar = MultipleHypotheses(n_hypotheses=5, hidden=16, x_dim=arm.x_dim, y_dim=arm.y_space.dim)
    >>> history = planar.fit(arm.x_train, arm.y_train, epochs=3, progress=False)
    >>> planar.predict(arm.x_test[:4])[0].shape
    (4, 5, 2)
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch.nn import functional as F

from utilis.mdn_utilis import MultivariateGaussianMixture
from utilis.metrics import best_of_k_error
from utilis.mixtures import GaussianMixtureDensity
from utilis.networks import GaussianMixture, NetworkDensity, Standardiser, mlp
from utilis.numerics import logsumexp_last
from utilis.protocol import ConditionalDensity, check_count, check_inputs, check_positive, finite_array
from utilis.spaces import Euclidean
from utilis.training import History, TrainingSettings, train

__all__ = [
    "DENSITIES",
    "LOSSES",
    "MultipleHypotheses",
    "best_of_k_errors",
    "evolving_k",
    "hypothesis_loss",
    "voronoi_edges",
]

LOSSES = ("wta", "relaxed", "evolving")
DENSITIES = ("kernel", "two-stage")
BANDWIDTHS = np.geomspace(1e-3, 1.0, 61)
"""Candidate kernel bandwidths, in training standard deviations of y: from a tenth of the linear
set's peak widths to the spread of y itself."""


def evolving_k(step: int, total_steps: int, n_hypotheses: int, evolve: float = 0.5) -> int:
    """How many of the nearest hypotheses the evolving loss penalises at ``step`` of ``total_steps``.

    k starts at M and halves (integer division) at equal intervals over the first ``evolve`` share of
    the steps, reaching 1 there and staying at 1 (plain WTA) for the rest:
    M = 20 gives 20, 10, 5, 2, 1.
    """
    step, total_steps = check_count(step, "step", minimum=0), check_count(total_steps, "total_steps")
    n_hypotheses = check_count(n_hypotheses, "n_hypotheses")
    if isinstance(evolve, bool) or not isinstance(evolve, (int, float)) or not 0 < evolve <= 1:
        raise ValueError(f"evolve must be a number in (0, 1], got {evolve!r}")
    halvings = int(math.floor(math.log2(n_hypotheses)))  # M >> halvings == 1
    if halvings == 0:
        return 1
    stage = math.floor(step / (evolve * total_steps) * halvings)
    return max(1, n_hypotheses >> min(stage, halvings))


def hypothesis_loss(
    y: Tensor,
    hypotheses: Tensor,
    loss: Literal["wta", "relaxed", "evolving"] = "wta",
    *,
    top_k: int = 1,
    epsilon: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """The winner-takes-all loss of each point, and its winner.

    Args:
        y: targets, shape (n,), or (n, d) for a vector y.
        hypotheses: the M guesses for each target, shape (n, M), or (n, M, d); the distance between a
            guess and a target is the absolute difference, for vectors the Euclidean norm.
        loss: "wta" (the winner's absolute error), "relaxed" (1 - ``epsilon`` of it, plus ``epsilon``
            shared among the M - 1 losers' absolute errors) or "evolving" (the ``top_k`` nearest
            hypotheses' absolute errors, summed).

    Returns:
        The loss of each point (n,) and the index of its nearest hypothesis (n,), the winner.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if hypotheses.shape[:1] + hypotheses.shape[2:] != y.shape:
        raise ValueError(
            f"hypotheses must have shape (n, M) for y of shape (n,), or (n, M, d) for y (n, d); got "
            f"{tuple(hypotheses.shape)} for y of shape {tuple(y.shape)}"
        )
    distances = _distances(y, hypotheses)  # (n, M)
    winner_distance, winner = distances.min(dim=1)
    m = hypotheses.shape[1]
    if loss == "wta" or m == 1:
        return winner_distance, winner
    if loss == "relaxed":
        losers = (distances.sum(dim=1) - winner_distance) / (m - 1)
        return (1.0 - epsilon) * winner_distance + epsilon * losers, winner
    nearest = torch.topk(distances, min(check_count(top_k, "top_k"), m), dim=1, largest=False).values
    return nearest.sum(dim=1), winner


def _distances(y, hypotheses):
    """|y - h_k| for each of the M hypotheses (the Euclidean norm for vectors): (n, M), torch or numpy."""
    difference = y[:, None] - hypotheses
    if difference.ndim == 2:
        return abs(difference)
    if isinstance(difference, Tensor):
        return torch.linalg.vector_norm(difference, dim=-1)
    return np.linalg.norm(difference, axis=-1)


def _diagonal(scales):
    """Scales (n, M) as they are; per axis (n, M, d) as the diagonal Cholesky factors (n, M, d, d)."""
    if scales.ndim == 2:
        return scales
    if isinstance(scales, Tensor):
        return torch.diag_embed(scales)
    return scales[..., None] * np.eye(scales.shape[-1])


def voronoi_edges(hypotheses: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The hypotheses of one x sorted, and the M - 1 edges between their Voronoi cells (the midpoints)."""
    ordered = np.sort(finite_array(hypotheses, "hypotheses").ravel())
    return ordered, 0.5 * (ordered[1:] + ordered[:-1])


def _wta_objective(model: MultipleHypotheses, x: Tensor, y: Tensor) -> Tensor:
    return model.objective(x, y)


class MultipleHypotheses(NetworkDensity, GaussianMixtureDensity):
    """M hypotheses of y and a score for each, from one MLP on x, trained by winner-takes-all.

    Args:
        n_hypotheses: M, the number of guesses per x.
        loss: "evolving" (the default), "relaxed" or "wta": see the module's docstring. Measured at
            20,000 points over 3 seeds (benchmarks/bench_hypotheses.py), evolving leaves no hypothesis
            unused and has the lowest best-of-20 error on every dataset (linear / sinusoid / camera:
            0.014 / 0.016 / 1.23, against 0.055 / 0.021 / 1.44 for plain WTA and 0.025 / 0.017 / 1.76
            relaxed); plain WTA's hypotheses give the closer two-stage density (0.008 / 0.029 / 0.070
            nats against 0.014 / 0.058 / 0.093).
        epsilon: the share of the relaxed loss given to the losers (Rupprecht et al. use 0.05).
        density: how the hypotheses are read as a density: "two-stage" (the default: weights and
            scales per hypothesis fitted by likelihood after the hypotheses are trained) or "kernel"
            (Gaussian kernels of one bandwidth at the hypotheses, weighted by the scores), which is
            measured 0.2 to 0.4 nats further from the truth.
        hidden, depth: width and number of hidden layers of the MLP (and of the second stage's).
        min_scale: floor on the two-stage scales, in training standard deviations of y.
        x_dim, y_dim: the dimensions of x and y (the layers depend on them, so they are set here).

    :meth:`fit` trains the hypotheses and scores by WTA, chooses the kernel bandwidth on the validation
    split, and (two-stage) fits the mixture with the hypotheses frozen. It returns the WTA stage's
    history; the second stage's is ``mixture_history``, its settings ``mixture_training_settings``.
    """

    def __init__(
        self,
        n_hypotheses: int = 20,
        loss: Literal["wta", "relaxed", "evolving"] = "evolving",
        epsilon: float = 0.05,
        density: Literal["kernel", "two-stage"] = "two-stage",
        hidden: int = 64,
        depth: int = 3,
        min_scale: float = 1e-3,
        x_dim: int = 1,
        y_dim: int = 1,
    ):
        super().__init__()
        self.x_dim, self.y_space = check_count(x_dim, "x_dim"), Euclidean(check_count(y_dim, "y_dim"))
        self.n_hypotheses = check_count(n_hypotheses, "n_hypotheses")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if density not in DENSITIES:
            raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
        self.epsilon = check_positive(epsilon, "epsilon")
        if self.epsilon >= 1:
            raise ValueError(f"epsilon must be < 1, got {epsilon!r}")
        self.loss, self.density = loss, density
        self.min_scale = check_positive(min_scale, "min_scale")
        hidden, depth = check_count(hidden, "hidden"), check_count(depth, "depth")
        self.scaling = Standardiser(self.x_dim, self.y_dim)
        m, d = self.n_hypotheses, self.y_dim
        # outputs: M hypotheses of d entries (z-scored y), M score logits
        self.net = mlp(self.x_dim, m * d + m, hidden, depth)
        # outputs: M corrections to the score logits, M d raw scales (only for the two-stage reading)
        self.mixture_net = mlp(self.x_dim, m + m * d, hidden, depth) if density == "two-stage" else None
        self.register_buffer("bandwidth", torch.tensor(1.0, dtype=torch.float64))  # in sds of y
        self.mixture_history: History | None = None
        self.mixture_training_settings: TrainingSettings | None = None
        self.step, self.total_steps = 0, 1  # the evolving schedule's progress, counted by objective()

    # ---- the network ----------------------------------------------------------------------------
    def _outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z-scored x (n, x_dim), hypotheses in z-scored y (n, M) or (n, M, d), and score logits (n, M)."""
        z = self.scaling.z_rows(x)
        features, head, m, d = self.net[:-1](z), self.net[-1], self.n_hypotheses, self.y_dim
        hypotheses = F.linear(features, head.weight[: m * d], head.bias[: m * d])  # (n, M d)
        if d > 1:
            hypotheses = hypotheses.reshape(len(z), m, d)
        # The scores read the features without moving them: their cross-entropy, a few nats against
        # hypothesis errors of hundredths, would otherwise shape the features for itself (measured on
        # the sinusoid at 20,000 points: best-of-20 error 0.078 with shared features, 0.030 detached).
        logits = F.linear(features.detach(), head.weight[m * d :], head.bias[m * d :])  # (n, M)
        return z, hypotheses, logits

    def _mixture(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log weights (n, M), means and scales of the density reading, in y's own units: means and scales
        (n, M) for a scalar y; for a vector y means (n, M, d) and diagonal Cholesky factors (n, M, d, d)."""
        z, hypotheses, logits = self._outputs(x)
        y_mean, y_sd = self.scaling.y_mean.float(), self.scaling.y_sd.float()
        if self.mixture_net is None:
            scales = (y_sd * self.bandwidth.float()).expand_as(hypotheses)
        else:
            m = self.n_hypotheses
            correction, raw = self.mixture_net(z).split([m, m * self.y_dim], dim=-1)
            logits = logits.detach() + correction
            scales = y_sd * (F.softplus(raw.reshape(hypotheses.shape)) + self.min_scale)
        return torch.log_softmax(logits, dim=-1), y_mean + y_sd * hypotheses, _diagonal(scales)

    def forward(self, x: Tensor) -> GaussianMixture | MultivariateGaussianMixture:
        """q(y | x) for a batch of x (n,) or (n, x_dim): the kernel (or two-stage) mixture, batch shape (n,)."""
        if self.y_dim > 1:
            return MultivariateGaussianMixture(*self._mixture(x))
        return GaussianMixture(*self._mixture(x))

    def objective(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss of a batch, mean over its points.

        In training mode: the chosen WTA loss plus the scores' cross-entropy, and the evolving
        schedule advances a step. In eval mode (the validation split, which picks the epoch kept):
        the plain WTA error alone, the best-of-M error whatever the loss, so the epochs compare
        however k moves. The cross-entropy is left out there: it is lower when the hypotheses crowd
        together (fewer cells, less to predict), so it would favour the collapsed early epochs.
        """
        _, hypotheses, logits = self._outputs(x)
        y_z = self.scaling.z_y(y)
        if not self.training:
            return hypothesis_loss(y_z, hypotheses, "wta")[0].mean()
        top_k = evolving_k(min(self.step, self.total_steps), self.total_steps, self.n_hypotheses)
        self.step += 1
        per_point, winner = hypothesis_loss(y_z, hypotheses, self.loss, top_k=top_k, epsilon=self.epsilon)
        return per_point.mean() + F.cross_entropy(logits, winner)

    # ---- fitting --------------------------------------------------------------------------------
    # The whole budget runs (patience None): the evolving schedule is laid out over it, and the
    # validation loss only settles once k is 1; the epoch with the best validation loss is kept.
    training_defaults = TrainingSettings(lr=1e-2, batch_size=None, epochs=100, patience=None)
    mixture_training_defaults: ClassVar[TrainingSettings] = TrainingSettings(
        lr=1e-2, batch_size=None, epochs=40, patience=None
    )
    """The second stage's defaults (the two-stage reading); the caller's overrides to ``fit`` apply to both
    stages, and the second stage's settings are ``mixture_training_settings``."""

    def _description(self) -> str:
        return f"hypotheses, M={self.n_hypotheses}, {self.loss}"

    def _loss(self, seed: int | None):
        return _wta_objective

    def _train(self, x: np.ndarray, y: np.ndarray, *, settings: TrainingSettings, **kwargs) -> History:
        """The first stage: hypotheses and scores by WTA (the mixture head frozen), the evolving schedule
        laid out over the budget's steps."""
        n_train = len(x) - max(1, round(len(x) * settings.val_fraction))
        self.step, self.total_steps = 0, settings.epochs * -(-n_train // settings.batch_size)
        if self.mixture_net is not None:
            self.mixture_net.requires_grad_(False)
        return super()._train(x, y, settings=settings, **kwargs)

    def _after_training(
        self, x: np.ndarray, y: np.ndarray, history: History, *, seed: int | None, train_kwargs: dict
    ) -> None:
        """Choose the kernel bandwidth on the validation split, and (two-stage) fit the mixture: its
        history is ``mixture_history``."""
        self._choose_bandwidth(x[history.val_index], y[history.val_index])
        self.mixture_history = self.mixture_training_settings = None
        if self.mixture_net is not None:
            self.mixture_history = self._fit_mixture(x, y, seed, train_kwargs)

    @torch.no_grad()
    def _choose_bandwidth(self, x: np.ndarray, y: np.ndarray) -> None:
        """The kernel bandwidth (of ``BANDWIDTHS``) under which the validation points are most likely: kernels
        N(h_k, b^2 I) in z-scored y, whose log-likelihood differs from that in y's units by a constant."""
        _, hypotheses, logits = self._outputs(self._as_tensor(x))
        log_weights = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
        y_z = (y - self.scaling.y_mean.cpu().numpy()) / self.scaling.y_sd.cpu().numpy()
        squares = _distances(y_z, hypotheses.double().cpu().numpy()) ** 2  # (n, M)
        d = self.y_dim
        likelihood = [
            (logsumexp_last(log_weights - 0.5 * squares / b**2) - d * np.log(b)).mean() for b in BANDWIDTHS
        ]
        self.bandwidth.fill_(float(BANDWIDTHS[int(np.argmax(likelihood))]))

    def _fit_mixture(self, x: np.ndarray, y: np.ndarray, seed: int | None, train_kwargs: dict) -> History:
        """Second stage: hypotheses and scores frozen, a weight correction and a scale per hypothesis
        fitted by likelihood, starting from the kernel reading (the head's output near 0, the scales
        at the bandwidth)."""
        with torch.no_grad():
            head = self.mixture_net[-1]
            head.weight.mul_(0.01)
            head.bias[: self.n_hypotheses] = 0.0
            head.bias[self.n_hypotheses :] = float(np.log(np.expm1(max(float(self.bandwidth) - self.min_scale, 1e-4))))
        self.net.requires_grad_(False)
        self.net.zero_grad(set_to_none=True)  # the first stage's last gradients, which nothing should see now
        self.mixture_net.requires_grad_(True)
        description = f"hypotheses, M={self.n_hypotheses}, mixture fit"
        settings, options = self._settings_and_options(
            len(x), train_kwargs, description, self.mixture_training_defaults
        )
        self.mixture_training_settings = settings
        try:
            return train(self, x, y, seed=seed, **settings.as_kwargs(), **options)
        finally:
            self.net.requires_grad_(True)

    # ---- the two readings, in numpy -------------------------------------------------------------
    @torch.no_grad()
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_weights, means, scales = self._mixture(self._as_tensor(x))
        log_weights = torch.log_softmax(log_weights.double(), dim=-1)  # renormalised in float64
        return tuple(t.double().cpu().numpy() for t in (log_weights, means, scales))

    @property
    def kernel_bandwidth(self) -> float | np.ndarray:
        """The kernel reading's bandwidth b, in y's own units (chosen by validation likelihood in :meth:`fit`):
        a float, or one per axis (d,) for a vector y."""
        bandwidth = float(self.bandwidth) * self.scaling.y_sd.cpu().numpy()
        return float(bandwidth) if self.y_dim == 1 else bandwidth

    def kernel_reading(self) -> GaussianMixtureDensity:
        """The kernel reading of these hypotheses as a density of its own, whatever ``density`` is:
        kernels of the chosen bandwidth at the hypotheses, weighted by the scores."""
        return _KernelReading(self)

    @torch.no_grad()
    def _readout(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hypotheses in y's units, (len(x), M) or (len(x), M, d), and log scores, log softmax(s(x)),
        (len(x), M), for checked x."""
        _, hypotheses, logits = self._outputs(self._as_tensor(x))
        y_mean, y_sd = self.scaling.y_mean.cpu().numpy(), self.scaling.y_sd.cpu().numpy()
        log_scores = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
        return y_mean + y_sd * hypotheses.double().cpu().numpy(), log_scores

    def _checked_pairs(self, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The hypotheses at x and the targets y, one per x: (m, M[, d]) and (m[, d])."""
        hypotheses, _ = self.predict(x)
        y = check_inputs(y, "y", self.y_dim)
        if y.shape != hypotheses.shape[:1] + hypotheses.shape[2:]:
            raise ValueError(f"y must hold one target per x, {len(hypotheses)}, got shape {y.shape}")
        return hypotheses, y

    def predict(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The M hypotheses h_k(x) and their scores softmax(s(x))_k for each x: (len(x), M) each, float64
        (the hypotheses (len(x), M, d) for a vector y)."""
        x = check_inputs(x, "x", self.x_dim)
        self._check_ready()
        hypotheses, log_scores = self._readout(x)
        return hypotheses, np.exp(log_scores)

    def winners(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """The index of the hypothesis nearest to each y (the one WTA trains on it): shape (len(x),)."""
        return _distances(*reversed(self._checked_pairs(x, y))).argmin(axis=1)

    def unused_hypotheses(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """The indices of the hypotheses that are nearest to none of the points (x, y): they never win."""
        return np.setdiff1d(np.arange(self.n_hypotheses), self.winners(x, y))

    def best_of_m_error(self, x: ArrayLike, y: ArrayLike) -> float:
        """The oracle error of the hypotheses themselves: mean over points of min_k |y_i - h_k(x_i)| (the
        Euclidean norm for a vector y)."""
        return float(_distances(*reversed(self._checked_pairs(x, y))).min(axis=1).mean())


class _KernelReading(GaussianMixtureDensity):
    """q(y | x) = sum_k softmax(s(x))_k N(y; h_k(x), b^2) of a fitted :class:`MultipleHypotheses` (per axis,
    diag(b)^2, for a vector y)."""

    def __init__(self, model: MultipleHypotheses):
        self.model = model
        self.x_dim, self.y_space = model.x_dim, model.y_space

    def _check_ready(self) -> None:
        self.model._check_ready()

    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hypotheses, log_scores = self.model._readout(x)
        return log_scores, hypotheses, _diagonal(np.broadcast_to(self.model.kernel_bandwidth, hypotheses.shape))


def best_of_k_errors(
    models: dict[str, ConditionalDensity], x: ArrayLike, y: ArrayLike, k: int = 20, seed: int = 0
) -> dict[str, float]:
    """The best-of-k (oracle) error of each model on the points (x, y): of its own hypotheses for a
    :class:`MultipleHypotheses` with k of them, of k samples (:func:`utilis.metrics.best_of_k_error`)
    for any other density."""
    k = check_count(k, "k")
    return {
        label: model.best_of_m_error(x, y)
        if isinstance(model, MultipleHypotheses) and model.n_hypotheses == k
        else best_of_k_error(model, x, y, k, seed=seed)
        for label, model in models.items()
    }
