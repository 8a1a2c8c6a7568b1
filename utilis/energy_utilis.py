"""Energy-based (implicit) model: an energy E(x, y) whose minima over y are the answers.

Implicit behavioural cloning (Florence et al., 2021) learns an energy E(x, y) and answers with
argmin_y E(x, y) instead of a function y = f(x), so several y can be right for one x (LeCun et al.,
2006). For a scalar y the energy is also a density, normalised on a grid of y:

.. math::
    p(y \\mid x) = \\frac{e^{-E(x, y)}}{Z(x)}, \\qquad
    Z(x) = \\int_{y_\\mathrm{lo}}^{y_\\mathrm{hi}} e^{-E(x, y)}\\, dy \\approx \\sum_i w_i\\, e^{-E(x, y_i)},

exact up to the quadrature (the trapezoidal rule, in log-space), and 0 outside [y_lo, y_hi]: the
training data's y range widened by ``margin`` times its width on each side (a quarter by default:
about five component sds beyond the data on the linear set, two to three on the sinusoid, and the
camera's y is bounded; no test point fell outside in any benchmark run, whose gaps would otherwise be
infinite). On a step h the rule's relative error for a Gaussian peak of sd s is about
2 exp(-2 pi^2 s^2 / h^2): 1e-8 at h = s, 1e-2 at h = 2 s (``tests/test_energy_utilis.py``), so the grid
must be about as fine as the narrowest peak the energy makes. The default evaluation grid has 1,024
nodes, a step of 1/1023 of the interval (0.6 sd of the linear set's narrowest true peaks, 0.05 in y),
and a grid twice as fine changes no benchmark gap in its fourth decimal (``benchmarks/bench_energy.py``).

The energy is free-form, a cubic spline in the z-scored y whose R coefficients an MLP computes from x:

.. math::
    E(x, y) = \\sum_{r=1}^{R} c_r(x)\\, B_r(y), \\qquad
    c(x) = \\mathrm{MLP}\\big(x, \\sin \\omega_k x, \\cos \\omega_k x\\big),

with B_r the uniform cubic B-splines on R knots spanning [y_lo, y_hi]: y-features combined with the
MLP's x-features by a product of rank at most ``hidden`` + 1, which approximates any smooth E(x, y)
as R and the MLP grow. A cubic spline holds a parabola exactly, so a Gaussian well of any width can
sit anywhere between knots. Why this form (linear set, 20,000 points, seed 0, 30 epochs unless
said): a network on (x, y) pairs works on (batch x grid nodes x units) tensors, and one layer over
512 x 1,024 x 32 costs as much as many whole MDN training steps: an MLP on (x, y) normalised on a
grid is out of reach of the time budget. In the spline a node costs 4 multiply-adds (a cubic
B-spline touches 4 coefficients), so a batch's normaliser costs about what the MLP on x does.
Fourier features of x (16 frequencies from 1 to 8 radians per sd of x; Tancik et al., 2020) let the
coefficients change as fast along x as the narrow branches move: without them the gap was 0.074 with
256 knots (the branches drawn as staircases, up to 166 nats lost on single points where the data's x
ends), with them 0.018. Fewer knots trade resolution for variance: 256 / 192 / 128 / 96 knots gave
0.018 / 0.015 / 0.011 / 0.011 (512 knots: 0.043); on the camera, whose cells have hard edges, 128 /
96 / 64 knots gave 0.032 / 0.036 / 0.047, and at 900 points (three seeds, all three sets) 128 / 96 /
64 knots gave 0.23 / 0.21 / 0.17 (linear), 0.31 / 0.27 / 0.25 (sinusoid), 0.20 / 0.18 / 0.17
(camera): 96 is the default. More epochs did not help (60: 0.013 against 0.011 with 128 knots): the
gap is variance, not optimisation. Measured over three seeds at 20,000 points
(``benchmarks/bench_energy.py``): 0.0091 / 0.0127 / 0.0397 (linear / sinusoid / camera) by the
likelihood, 0.0095 / 0.0131 / 0.0400 by InfoNCE with 256 counter-examples, the MDN 0.0046 / 0.0304 /
0.0697 in the same run, its training taking about as long.

In the plane (``y_dim=2``) the energy is a tensor-product spline, E(x, y) = sum_rs c_rs(x) B_r(y_1) B_s(y_2),
R x R coefficients from the MLP (R = 32 by default: a knot every 0.18 sd of y on the robot arm), and Z(x)
is the product trapezoidal rule on a 262 x 262 grid, B_1 C B_2^T (exact to 1e-10 nats for a quadratic
energy whose sds are 7 and 10 steps, ``tests/test_energy_utilis.py``). The training grid has 3 nodes a
knot interval and axis (87 x 87 with a fresh shift per axis each step), computed as a convolution of C
with the m^2 kernels B(u_p) B(u_q)^T of 4 x 4: on the robot arm at 20,000 points (seed 0) it gave the
gap that 5 nodes gave, 0.1017, in 130 s instead of 319 s; 48 knots with 2 nodes a knot gave 0.184. A
point's energy gathers the 16 coefficients it touches. The cost of a grid squares with each
dimension, so a y of more than 2 dimensions is refused.

Two objectives (``objective=``):

- ``"likelihood"``: the negative log-likelihood, Z(x) on a training grid of ``n_train_grid`` nodes
  shifted together by a fresh uniform fraction of their step at each training step: an unbiased
  estimate of Z. Its log still underestimates log Z where a well is much narrower than the step
  (Jensen), and training exploits that: with one node a knot interval (128 knots, a step of 4.6 sds of
  the linear set's peaks) it sharpened the wells until the gap on the evaluation grid was 127 nats.
  Six nodes a knot interval by default (a step of about one peak sd) leave no such bias to find.
- ``"infonce"``: InfoNCE (van den Oord et al., 2018) as implicit behavioural cloning trains, each
  point against ``n_negatives`` counter-examples drawn uniformly over [y_lo, y_hi]:

  .. math::
      \\mathcal{L} = -\\log \\frac{e^{-E(x, y)}}{e^{-E(x, y)} + \\sum_{j=1}^{N} e^{-E(x, \\tilde y_j)}}.

  It never computes Z: the counter-examples stand in for it (they push the energy up wherever they
  land on low energy), and as N grows the loss becomes the negative log-likelihood plus a constant,
  its gradient the likelihood's. With few, a narrow peak is seldom hit by one and its width is
  learned poorly. The trained model is read as the same normalised density.

``forward(x, y)`` returns the energy, not a ``torch.distributions.Distribution``: p(y|x) needs Z(x),
which the two objectives estimate differently (a grid, or counter-examples), so each is a loss of
its own, passed to the shared training loop.

Inference: :meth:`EnergyModel.minima` gives the local minima of E over the evaluation grid (each
refined by the parabola through its node and neighbours) as the answers for each x;
:meth:`EnergyModel.predict` the global one as the single answer. Samples come from the inverse CDF on
the evaluation grid (:func:`utilis.numerics.sample_from_grid`).

References:
    Florence, Lynch, Zeng et al., "Implicit Behavioral Cloning", CoRL 2021 (arXiv:2109.00137).
    LeCun, Chopra, Hadsell, Ranzato, Huang, "A Tutorial on Energy-Based Learning", 2006.
    van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018.
    Tancik et al., "Fourier Features Let Networks Learn High Frequency Functions", NeurIPS 2020.

Example:
    >>> from generate_dataset import inverted_sinusoid_mixture
    >>> data = inverted_sinusoid_mixture(n_samples=500, seed=0)
    >>> model = EnergyModel(n_knots=32, hidden=16)
    >>> history = model.fit(data.x_train, data.y_train, epochs=3, progress=False)
    >>> model.log_prob(data.y_test[:5], data.x_test[:5]).shape, model.sample(data.x_test[:5], 10).shape
    ((5,), (10, 5))
    >>> [len(answers) >= 1 for answers in model.minima(data.x_test[:3])]
    [True, True, True]
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import signal
from torch import Tensor
from torch.nn import functional as F

from utilis.networks import NetworkDensity, Standardiser, fourier_features, logsumexp, mlp
from utilis.numerics import log_trapezoid, logsumexp_last, sample_from_grid, sample_product_grid
from utilis.protocol import broadcast_query, check_count, check_inputs, check_positive
from utilis.spaces import Euclidean
from utilis.training import TrainingSettings, seeded_generator

__all__ = ["OBJECTIVES", "EnergyModel", "box_in_z"]

OBJECTIVES = ("likelihood", "infonce")
_ROWS = 512  # inputs x at once on the evaluation grid: (512, 1024) float64 temporaries, 4 MB each
_PLANE_ROWS = 32  # in the plane: (32, 262, 262) float64 temporaries, 18 MB each
_DEFAULTS = {  # by y_dim: the spline's coefficients, and the evaluation and training grids' nodes, per axis
    1: {"n_knots": 96, "n_grid": 1000, "n_train_grid": 500},
    2: {"n_knots": 32, "n_grid": 256, "n_train_grid": 87},
}


def box_in_z(y: np.ndarray, margin: float) -> list[list[float]]:
    """The training y's range widened by ``margin`` of it on each side, in z-scored y: a row [lo, hi] for
    each axis of ``y`` (n,) or (n, d)."""
    rows = []
    for column in y.reshape(len(y), -1).T:
        column = np.ascontiguousarray(column)
        z = (column - column.mean()) / (column.std() or 1.0)
        span = float(z.max() - z.min()) or 1.0
        rows.append([z.min() - margin * span, z.max() + margin * span])
    return rows


def _bspline(u):
    """The four uniform cubic B-spline weights at u in [0, 1] of a knot interval (numpy, torch or float)."""
    v = 1 - u
    return v**3 / 6, (3 * u**3 - 6 * u**2 + 4) / 6, (-3 * u**3 + 3 * u**2 + 3 * u + 1) / 6, u**3 / 6


class EnergyModel(NetworkDensity):
    """An energy E(x, y): a cubic spline in y whose coefficients an MLP computes from x.

    Args:
        objective: "likelihood" (the grid-normalised negative log-likelihood) or "infonce"
            (counter-examples, as implicit behavioural cloning trains).
        n_negatives: counter-examples per training point for "infonce".
        n_knots: R, the spline's coefficients; its knots are (y_hi - y_lo) / (R - 3) apart.
        hidden, depth: width and number of hidden layers of the MLP on x.
        x_frequencies, max_frequency: the MLP sees z-scored x and its sine and cosine at
            ``x_frequencies`` frequencies spaced evenly in log from 1 to ``max_frequency`` (radians per
            sd of x); 0 frequencies: x alone.
        n_grid: nodes of the evaluation grid (the trapezoidal rule for Z, the inverse CDF for samples,
            the minima), rounded up to a whole number per knot interval, plus one: 1,024 by default.
        n_train_grid: nodes of the training grid for "likelihood", rounded up likewise: 558 by default.
        margin: [y_lo, y_hi] is the training data's y range widened by ``margin`` times its width on
            each side; the density is 0 outside it.
    """

    def __init__(
        self,
        objective: Literal["likelihood", "infonce"] = "likelihood",
        *,
        n_negatives: int = 256,
        n_knots: int | None = None,
        hidden: int = 64,
        depth: int = 3,
        x_frequencies: int = 16,
        max_frequency: float = 8.0,
        n_grid: int | None = None,
        n_train_grid: int | None = None,
        margin: float = 0.25,
        x_dim: int = 1,
        y_dim: int = 1,
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be 'likelihood' or 'infonce', got {objective!r}")
        self.x_dim, y_dim = check_count(x_dim, "x_dim"), check_count(y_dim, "y_dim")
        if y_dim > 2:
            raise ValueError(
                f"EnergyModel serves y_dim 1 or 2, got y_dim={y_dim}: it is normalised on a grid of n_grid^y_dim "
                f"nodes for every x (256^{y_dim} = {256**y_dim:,} for y_dim={y_dim}) and its spline has "
                f"n_knots^y_dim coefficients; utilis.embedding_energy.EmbeddingEnergy serves any y_dim"
            )
        self.y_space = Euclidean(y_dim)
        defaults = _DEFAULTS[y_dim]
        self.objective = objective
        self.n_negatives = check_count(n_negatives, "n_negatives")
        self.n_knots = check_count(defaults["n_knots"] if n_knots is None else n_knots, "n_knots", minimum=4)
        self.n_grid = check_count(defaults["n_grid"] if n_grid is None else n_grid, "n_grid", minimum=2)
        train_grid = defaults["n_train_grid"] if n_train_grid is None else n_train_grid
        self.n_train_grid = check_count(train_grid, "n_train_grid", minimum=2)
        self.margin = check_positive(margin, "margin")
        self.scaling = Standardiser(self.x_dim, y_dim)
        # [z_lo, z_hi]: the spline's interval in z-scored y, set by fit from the data (kept in the state dict);
        # one row per axis of y in the plane
        bounds = [-1.0, 1.0] if y_dim == 1 else [[-1.0, 1.0]] * y_dim
        self.register_buffer("z_bounds", torch.tensor(bounds, dtype=torch.float64))
        n_frequencies = check_count(x_frequencies, "x_frequencies", minimum=0)
        top = math.log10(check_positive(max_frequency, "max_frequency"))
        self.register_buffer("frequencies", torch.logspace(0.0, top, n_frequencies))
        inputs = self.x_dim * (1 + 2 * n_frequencies)
        outputs = self.n_knots**y_dim
        self.net = mlp(inputs, outputs, check_count(hidden, "hidden"), check_count(depth, "depth"))

    # ---- the energy, in torch -------------------------------------------------------------------
    @property
    def grid_per_knot(self) -> int:
        """Evaluation nodes per knot interval: ``n_grid`` / (R - 3), rounded up."""
        return -(-self.n_grid // (self.n_knots - 3))

    @property
    def train_grid_per_knot(self) -> int:
        """Training nodes per knot interval: ``n_train_grid`` / (R - 3), rounded up."""
        return -(-self.n_train_grid // (self.n_knots - 3))

    @property
    def axis_bounds(self) -> list[tuple[float, float]]:
        """[z_lo, z_hi] along each axis of y, in z-scored y."""
        return [(lo, hi) for lo, hi in self.z_bounds.reshape(-1, 2).tolist()]

    @property
    def knot_spacings(self) -> tuple[float, ...]:
        """d along each axis of y, in z-scored y: R - 3 knot intervals span [z_lo, z_hi]."""
        return tuple((hi - lo) / (self.n_knots - 3) for lo, hi in self.axis_bounds)

    @property
    def knot_spacing(self) -> float:
        """d, the knot spacing of a scalar y in z-scored y (along the first axis in the plane)."""
        return self.knot_spacings[0]

    def coefficients(self, x: Tensor) -> Tensor:
        """c(x), the spline coefficients for a batch of x (n,) or (n, x_dim): (n, R), or (n, R, R) for y in the
        plane, in the network's dtype."""
        z = self.scaling.z_rows(x).to(self.net[0].weight.dtype)  # (n, x_dim)
        c = self.net(fourier_features(z, self.frequencies))
        return c if self.y_dim == 1 else c.reshape(len(z), self.n_knots, self.n_knots)

    def _basis(self, z: Tensor, axis: int) -> Tensor:
        """The R cubic B-splines along ``axis`` at z-scored y ``z`` (any shape): z.shape + (R,), at most 4
        of them non-zero (beyond [z_lo, z_hi], the end interval's cubics continued)."""
        lo, d = self.axis_bounds[axis][0], self.knot_spacings[axis]
        s = (z - lo) / d
        interval = s.floor().clamp(0, self.n_knots - 4)
        weights = torch.stack(_bspline(s - interval), dim=-1)
        columns = interval.long()[..., None] + torch.arange(4, device=z.device)
        return torch.zeros((*z.shape, self.n_knots), dtype=z.dtype, device=z.device).scatter(-1, columns, weights)

    def _spline_at(self, c: Tensor, z: Tensor) -> Tensor:
        """E at z-scored y in [z_lo, z_hi]: ``c`` (n, R), ``z`` (n,) or (n, m); the shape of ``z``. In the
        plane, ``c`` (n, R, R) and ``z`` (n, 2) or (n, m, 2): the tensor-product spline
        E = sum_rs c_rs B_r(z_1) B_s(z_2), of the shape of ``z`` less its last axis."""
        if self.y_dim == 2:  # the 4 x 4 coefficients each point touches, gathered, weighted and summed
            flat, r, steps = z.reshape(len(c), -1, 2), self.n_knots, torch.arange(4, device=c.device)
            intervals, weights = [], []
            for axis, ((lo, _), d) in enumerate(zip(self.axis_bounds, self.knot_spacings)):
                s = (flat[..., axis] - lo) / d
                interval = s.floor().clamp(0, r - 4)
                intervals.append(interval.long())
                weights.append(torch.stack(_bspline(s - interval), dim=-1))  # (n, m, 4)
            rows = (intervals[0][..., None] + steps)[..., :, None]  # (n, m, 4, 1)
            columns = (intervals[1][..., None] + steps)[..., None, :]  # (n, m, 1, 4)
            picked = c.reshape(len(c), -1).gather(1, (rows * r + columns).reshape(len(c), -1))
            picked = picked.reshape(*flat.shape[:2], 4, 4)
            energy = (picked * weights[0][..., :, None] * weights[1][..., None, :]).sum(dim=(-2, -1))
            return energy.reshape(z.shape[:-1])
        s = (z - self.z_bounds[0].to(z.dtype)) / self.knot_spacing
        interval = s.floor().clamp(0, self.n_knots - 4)
        columns = (interval.long().reshape(len(c), -1, 1) + torch.arange(4, device=c.device)).reshape(len(c), -1)
        picked = c.gather(1, columns).reshape(*z.shape, 4)  # the 4 coefficients each z touches
        return sum(w * picked[..., j] for j, w in enumerate(_bspline((s - interval).to(c.dtype))))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """E(x, y) for paired batches x, y (n,) with y in [y_lo, y_hi]: (n,), in nats."""
        c = self.coefficients(x)
        return self._spline_at(c, self.scaling.z_y(y).to(c.dtype))

    def _log_normaliser(self, c: Tensor, shift: Tensor | float) -> Tensor:
        """log Z(x) in z-scored y by the rectangle rule on the training nodes z_lo + (i + (p + shift) / m) d,
        p < m = ``train_grid_per_knot``, in every knot interval i: for a uniform ``shift`` in [0, 1) an
        unbiased estimate of Z; ``shift`` = 0.5 is the midpoint rule. (n,) for ``c`` (n, R). In the plane
        the product of the two axes' rules, a shift for each, for ``c`` (n, R, R)."""
        m, width = self.train_grid_per_knot, self.n_knots - 3
        if self.y_dim == 2:
            # node (i m + p, j m + q) touches c[i:i+4, j:j+4] with weights B(u_p) B(u_q)^T: a convolution of c
            # with m^2 kernels of 4 x 4, its m^2 channels then shuffled into the m x m grid
            shifts = torch.as_tensor(shift, dtype=c.dtype, device=c.device).expand(2)
            phases = (torch.arange(m, device=c.device, dtype=c.dtype)[:, None] + shifts) / m  # (m, 2)
            first, second = (torch.stack(_bspline(phases[:, axis]), dim=1) for axis in (0, 1))  # (m, 4) each
            kernels = (first[:, None, :, None] * second[None, :, None, :]).reshape(m * m, 1, 4, 4)
            energy = F.pixel_shuffle(F.conv2d(c[:, None], kernels), m)  # (n, 1, (R - 3) m, (R - 3) m)
            cell = math.prod(self.knot_spacings) / m**2
            return logsumexp(-energy.reshape(len(c), -1), dim=1) + math.log(cell)
        phases = ((torch.arange(m, device=c.device) + shift) / m).to(c.dtype)[:, None]  # (m, 1)
        energy = sum(w * c[:, None, j : j + width] for j, w in enumerate(_bspline(phases)))  # (n, m, R - 3)
        return logsumexp(-energy.reshape(len(c), -1), dim=1) + math.log(self.knot_spacing / m)

    # ---- the two objectives -----------------------------------------------------------------
    def likelihood_loss(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-likelihood E(x, y) + log Z(x) in z-scored y, Z on the training nodes shifted
        together by a uniform fraction of their step from ``generator`` (without one, by half a step:
        the midpoint rule, for a steady validation loss)."""
        c = self.coefficients(x)
        shape = () if self.y_dim == 1 else (self.y_dim,)  # a shift for each axis of y
        shift = 0.5 if generator is None else torch.rand(shape, generator=generator).to(c.device)
        return (self._spline_at(c, self.scaling.z_y(y).to(c.dtype)) + self._log_normaliser(c, shift)).mean()

    def infonce_loss(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None, n_negatives: int | None = None
    ) -> Tensor:
        """InfoNCE: each point against ``n_negatives`` (default: the model's) counter-examples drawn
        uniformly over [y_lo, y_hi] (the box in the plane) from ``generator`` (without one, for a steady
        validation loss, fixed ones: the midpoints of ``n_negatives`` equal cells, or in the plane one draw
        from a generator seeded 0)."""
        n = self.n_negatives if n_negatives is None else check_count(n_negatives, "n_negatives")
        c = self.coefficients(x)
        event = () if self.y_dim == 1 else (self.y_dim,)
        if generator is None and self.y_dim == 1:
            u = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).expand(len(c), n)
        elif generator is None:
            u = torch.rand((n, *event), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            u = u.expand(len(c), n, *event)
        else:
            u = torch.rand((len(c), n, *event), generator=generator, dtype=torch.float64)
        z_lo, z_hi = self.z_bounds[..., 0].cpu(), self.z_bounds[..., 1].cpu()
        negatives = self._spline_at(c, (z_lo + (z_hi - z_lo) * u).to(device=c.device, dtype=c.dtype))  # (n, N)
        positive = self._spline_at(c, self.scaling.z_y(y).to(c.dtype))
        logits = -torch.cat([positive[:, None], negatives], dim=1)
        return (logsumexp(logits, dim=1) - logits[:, 0]).mean()

    # ---- fitting --------------------------------------------------------------------------------
    training_defaults = TrainingSettings(lr=1e-2, batch_size=None, epochs=30, patience=10)
    """30 epochs of the cosine schedule from a step of 1e-2 (more were no better: the gap is variance),
    patience 10, and a weight decay of 1 / n set from the data (:meth:`training_settings_for`)."""

    def training_settings_for(self, n_points: int, **overrides) -> TrainingSettings:
        """As for every network, with a weight decay of 1 / ``n_points`` unless overridden: on the mean
        loss it is a standard normal prior on every weight (MAP), which on a few hundred points brings
        the model closer to the truth and on tens of thousands is negligible (``benchmarks/bench_energy.py``)."""
        return super().training_settings_for(n_points, **{"weight_decay": 1.0 / n_points, **overrides})

    def _description(self) -> str:
        return f"energy model, {self.objective}"

    def _initialise(self, x: np.ndarray, y: np.ndarray) -> None:
        """[y_lo, y_hi]: the training y's range widened by ``margin`` of it on each side (in z-scored y),
        along each axis."""
        rows = box_in_z(y, self.margin)
        self.z_bounds.copy_(torch.tensor(rows[0] if self.y_dim == 1 else rows))

    def _loss(self, seed: int | None):
        """The model's objective; in training its random nodes or counter-examples come from a generator
        of the loss's own, seeded from ``seed``, in validation they are fixed."""
        generator = seeded_generator(seed)
        objective = self.likelihood_loss if self.objective == "likelihood" else self.infonce_loss

        def loss(model: EnergyModel, inputs: Tensor, targets: Tensor) -> Tensor:
            return objective(inputs, targets, generator if model.training else None)

        return loss

    # ---- numpy side -------------------------------------------------------------------------------
    @property
    def y_bounds(self) -> tuple[float, float] | tuple[tuple[float, float], ...]:
        """[y_lo, y_hi], the interval outside which the density is 0, in y's own units; in the plane one
        such interval per axis (the box)."""
        means, sds = self.scaling.y_mean.reshape(-1).tolist(), self.scaling.y_sd.reshape(-1).tolist()
        bounds = tuple((m + sd * lo, m + sd * hi) for m, sd, (lo, hi) in zip(means, sds, self.axis_bounds))
        return bounds[0] if self.y_dim == 1 else bounds

    def _z_axes(self) -> list[np.ndarray]:
        """The evaluation grid's nodes along each axis, in z-scored y: ((R - 3) ``grid_per_knot`` + 1,) each."""
        return [np.linspace(lo, hi, (self.n_knots - 3) * self.grid_per_knot + 1) for lo, hi in self.axis_bounds]

    def grid(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """The evaluation grid's nodes in y's own units: ((R - 3) ``grid_per_knot`` + 1,); in the plane,
        those along each axis (the grid is their product)."""
        means, sds = self.scaling.y_mean.reshape(-1).tolist(), self.scaling.y_sd.reshape(-1).tolist()
        axes = tuple(m + sd * z for m, sd, z in zip(means, sds, self._z_axes()))
        return axes[0] if self.y_dim == 1 else axes

    def _grid_bases(self) -> list[np.ndarray]:
        """In the plane, the splines at each axis's evaluation nodes: (G_a, R) float64 each."""
        return [self._basis(torch.from_numpy(z), axis).numpy() for axis, z in enumerate(self._z_axes())]

    def _log_grid_weights(self) -> np.ndarray:
        """In the plane, the log weights of the product trapezoidal rule on the evaluation grid, in z-scored y:
        (G_1, G_2)."""
        logs = []
        for z in self._z_axes():
            weights = np.full(len(z), z[1] - z[0])
            weights[[0, -1]] *= 0.5
            logs.append(np.log(weights))
        return logs[0][:, None] + logs[1][None, :]

    def _grid_energies(self, c: np.ndarray) -> np.ndarray:
        """E on the evaluation grid, in order along y, for coefficients ``c`` (n, R): (n, G), float64; in
        the plane, for ``c`` (n, R, R): (n, G_1, G_2), B_1 C B_2^T."""
        if self.y_dim == 2:
            first, second = self._grid_bases()
            return first @ c @ second.T
        m, width = self.grid_per_knot, self.n_knots - 3
        out = np.empty((len(c), width * m + 1))
        for p in range(m):  # the nodes at phase p / m of every knot interval
            out[:, p:-1:m] = sum(w * c[:, j : j + width] for j, w in enumerate(_bspline(p / m)))
        out[:, -1] = c[:, -4:] @ np.array(_bspline(1.0))  # z_hi, the end of the last interval
        return out

    @torch.no_grad()
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """c(x) (n, R) and log Z(x) (n,) in z-scored y, by the trapezoidal rule on the evaluation grid."""
        c = self.coefficients(self._as_tensor(x)).double().cpu().numpy()
        if self.y_dim == 2:  # the product trapezoidal rule
            log_weights, rows = self._log_grid_weights(), _PLANE_ROWS
            blocks = [
                logsumexp_last((log_weights - self._grid_energies(c[i : i + rows])).reshape(len(c[i : i + rows]), -1))
                for i in range(0, len(c), rows)
            ]
            return c, np.concatenate(blocks) if blocks else np.empty(0)
        step = self.knot_spacing / self.grid_per_knot
        blocks = [log_trapezoid(-self._grid_energies(c[i : i + _ROWS]), step) for i in range(0, len(c), _ROWS)]
        return c, np.concatenate(blocks) if blocks else np.empty(0)

    def _energy(self, y: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """E at y (any shape) for coefficients ``c`` (a shape that broadcasts against y's, then R), and
        whether y is in [y_lo, y_hi] (E is computed at y_lo there, to be masked). In the plane, y (..., 2)
        and ``c`` (..., R, R), and whether y is in the box."""
        if self.y_dim == 2:
            return self._energy_in_plane(y, c)
        y_lo, y_hi = self.y_bounds
        inside = (y >= y_lo) & (y <= y_hi)
        mean, sd = float(self.scaling.y_mean), float(self.scaling.y_sd)
        s = ((np.where(inside, y, y_lo) - mean) / sd - float(self.z_bounds[0])) / self.knot_spacing
        interval = np.clip(np.floor(s), 0, self.n_knots - 4)
        weights = np.stack(_bspline(s - interval), axis=-1)  # y.shape + (4,)
        shape = np.broadcast_shapes(y.shape, c.shape[:-1])
        columns = np.broadcast_to(interval.astype(np.int64)[..., None] + np.arange(4), (*shape, 4))
        picked = np.take_along_axis(np.broadcast_to(c, (*shape, c.shape[-1])), columns, axis=-1)
        return (picked * weights).sum(axis=-1), inside

    def _energy_in_plane(self, y: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bounds = np.array(self.y_bounds)  # (2, 2)
        inside = np.all((y >= bounds[:, 0]) & (y <= bounds[:, 1]), axis=-1)
        mean, sd = self.scaling.y_mean.cpu().numpy(), self.scaling.y_sd.cpu().numpy()
        z = (np.where(inside[..., None], y, bounds[:, 0]) - mean) / sd
        first, second = (self._basis(torch.as_tensor(np.array(z[..., a])), a).numpy() for a in (0, 1))
        return np.einsum("...r,...rs,...s->...", first, c, second), inside

    def _log_prob(self, y: np.ndarray, x: np.ndarray, c: np.ndarray, log_z: np.ndarray) -> np.ndarray:
        energy, inside = self._energy(y, c)
        log_sd = float(torch.log(self.scaling.y_sd).sum())  # y's own units: the Jacobian of the z-scoring
        return np.where(inside, -energy - log_z - log_sd, -np.inf)

    def _sample(self, x: np.ndarray, n: int, rng: np.random.Generator, c: np.ndarray, log_z: np.ndarray):
        if self.y_dim == 2:
            return self._sample_in_plane(x, n, rng, c)
        nodes, u = self.grid(), rng.random((n, len(x)))
        out = np.empty((n, len(x)))
        for start in range(0, len(x), _ROWS):
            for i, energy in enumerate(self._grid_energies(c[start : start + _ROWS]), start):
                out[:, i] = sample_from_grid(-energy, nodes, u[:, i])
        return out

    def _sample_in_plane(self, x: np.ndarray, n: int, rng: np.random.Generator, c: np.ndarray) -> np.ndarray:
        """A node of the evaluation grid by its trapezoidal mass, then a uniform point in the node's cell
        (the half step around it, within the box): draws from the piecewise-constant density that the
        product trapezoidal rule integrates, exact to within half a grid step."""
        axes, log_weights = self.grid(), self._log_grid_weights()
        out = np.empty((n, len(x), 2))
        for start in range(0, len(x), _PLANE_ROWS):
            logits = (log_weights - self._grid_energies(c[start : start + _PLANE_ROWS])).reshape(-1, log_weights.size)
            for i, row in enumerate(logits, start):
                out[:, i] = sample_product_grid(row, axes, n, rng)
        return out

    # ---- inference: the minima ------------------------------------------------------------------
    def energy(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """E(x, y) in nats for arrays that broadcast (float64), +inf outside [y_lo, y_hi].

        E is defined up to a constant for each x: log p(y | x) = -E(x, y) - log Z(x) - log sd(y), with
        Z in z-scored y and sd(y) the training data's.
        """
        self._check_ready()
        y_array, x_array, shape = broadcast_query(y, x, self.y_dim, self.x_dim)
        c, _ = self._given_at(x_array)
        energy, inside = self._energy(y_array, c)
        return np.broadcast_to(np.where(inside, energy, np.inf), shape).copy()

    def minima(self, x: ArrayLike, min_depth: float = 1.0, max_rise: float = 5.0) -> list[np.ndarray]:
        """The answers for each x (a scalar or 1-D array): the local minima of E over y, lowest first.

        A minimum counts if its basin is at least ``min_depth`` nats deep (its prominence: a shallower
        dip, whose density is at most e^min_depth times its rim's, is a ripple) and it lies at most
        ``max_rise`` nats above the global minimum (higher, its density is below e^-max_rise of the
        highest peak's: 1/150 by default); the global minimum always counts. Each is refined by the parabola
        through its grid node and the two beside it.
        """
        self._check_ready()
        if self.y_dim != 1:
            raise ValueError(
                "minima reads the basins of a scalar y's energy along its line; for y in the plane, predict "
                "gives the global minimum"
            )
        x = check_inputs(x)
        min_depth, max_rise = check_positive(min_depth, "min_depth"), check_positive(max_rise, "max_rise")
        nodes, out = self.grid(), []
        with torch.no_grad():
            c = self.coefficients(self._as_tensor(x)).double().cpu().numpy()
        for start in range(0, len(x), _ROWS):
            for energy in self._grid_energies(c[start : start + _ROWS]):
                lowest = int(np.argmin(energy))
                found, _ = signal.find_peaks(-energy, prominence=min_depth)
                found = np.union1d(found[energy[found] <= energy[lowest] + max_rise], [lowest])
                out.append(_refine(energy, nodes, found[np.argsort(energy[found], kind="stable")]))
        return out

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The single answer for each x: the global minimum of E over y, (len(x),); in the plane, the lowest
        node of the evaluation grid, (len(x), 2)."""
        if self.y_dim == 1:
            return np.array([answers[0] for answers in self.minima(x)])
        self._check_ready()
        x = check_inputs(x, "x", self.x_dim)
        with torch.no_grad():
            c = self.coefficients(self._as_tensor(x)).double().cpu().numpy()
        axes, out = self.grid(), np.empty((len(x), 2))
        for start in range(0, len(x), _PLANE_ROWS):
            energies = self._grid_energies(c[start : start + _PLANE_ROWS])
            lowest = energies.reshape(len(energies), -1).argmin(axis=1)
            first, second = np.divmod(lowest, energies.shape[2])
            out[start : start + len(energies)] = np.stack([axes[0][first], axes[1][second]], axis=1)
        return out


def _refine(energy: np.ndarray, nodes: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The vertex of the parabola through each found node and its two neighbours (at an end: the node)."""
    out = nodes[found].astype(np.float64)
    inner = (found > 0) & (found < len(nodes) - 1)
    i = found[inner]
    left, centre, right = energy[i - 1], energy[i], energy[i + 1]
    curvature = left - 2 * centre + right
    offset = 0.5 * (left - right) / np.where(curvature > 0, curvature, np.inf)  # 0 where flat
    out[inner] = nodes[i] + np.clip(offset, -0.5, 0.5) * (nodes[1] - nodes[0])
    return out
