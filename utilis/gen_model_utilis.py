"""The Bayesian-network generative model: known factors fitted, the unknown one learned, p(y|x) by Bayes.

Write the joint distribution as a Bayesian network over the component c, the output y and the
input x, following how the data is generated:

.. math::
    p(x, y, c) = p(c)\\, p(y \\mid c)\\, p(x \\mid y, c)   \\qquad \\text{(linear, sinusoid)}

    p(x, y, c) = p(c)\\, p(y \\mid c)\\, p(x \\mid c)      \\qquad \\text{(camera relocalisation)}

p(c) is categorical and p(y | c) Gaussian or uniform: their forms are known, so they are fitted by
maximum likelihood. The form of p(x | y, c) is not known, so a neural network predicts the mean and
the scale of a Gaussian over x from y and the one-hot c. Any conditional then follows by Bayes'
rule; the one wanted here is

.. math::
    \\log p(y \\mid x) = \\operatorname{logsumexp}_c [\\log p(c) + \\log p(y \\mid c)
    + \\log p(x \\mid y, c)] - \\log p(x),

with log p(x) from the trapezoidal rule over a dense y grid (in closed form when x does not depend
on y). Without component labels, the whole joint (p(c), p(y|c) and the network) is trained by
gradient on log p(x, y) with c summed out: a mixture trained by gradient.

Example:
    >>> from generate_dataset import linear_mixture
    >>> data = linear_mixture(n_samples=900, seed=0)
    >>> model = GenerativeModel.for_dataset(data)
    >>> history = model.fit(data.x_train, data.y_train, data.c_train, progress=False, epochs=5)
    >>> model.log_prob(data.y_test, data.x_test).shape
    (90,)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from torch.nn import functional as F

from utilis.networks import NetworkDensity, Standardiser, check_fit_data, logsumexp, mlp
from utilis.numerics import (
    log_gaussian_mixture,
    log_gaussian_posterior,
    log_trapezoid,
    logsumexp_last,
    normal_logpdf,
    sample_categorical,
    sample_from_grid,
)
from utilis.protocol import as_generator, broadcast_query, check_count, check_positive, finite_array
from utilis.training import History, TrainingSettings, train

__all__ = [
    "X_PARENTS",
    "Y_FAMILIES",
    "GaussianY",
    "GenerativeModel",
    "UniformCellsY",
    "XFromC",
    "XFromYAndC",
    "XParents",
]


def _combine(histories: list[History]) -> History:
    """One history for an ensemble: losses averaged over its networks epoch by epoch (as far as all
    ran), the times added up."""
    epochs = min(len(h.val_loss) for h in histories)
    combined = History(
        train_loss=list(np.mean([h.train_loss[:epochs] for h in histories], axis=0)),
        val_loss=list(np.mean([h.val_loss[:epochs] for h in histories], axis=0)),
        best_epoch=int(np.argmin(np.mean([h.val_loss[:epochs] for h in histories], axis=0))),
        stopped_early=all(h.stopped_early for h in histories),
        seconds=sum(h.seconds for h in histories),
        val_index=histories[0].val_index,
    )
    return combined


def _log_cell_density(y: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """log p(y | c) of the uniform family, for y of shape (..., 1): shape (..., K).

    ``cells`` (K, 5) holds, per cell, the lowest and highest training y (a, b), the gap below and above
    it and its count n. A uniform's edge is known only to lie beyond its data, so the density is the
    posterior predictive over where the edge is: flat on [a, b]; across a gap to a neighbouring
    cell, a linear ramp (the edge is anywhere in the gap, and the neighbour's ramp rises as this one
    falls, so together they stay flat); past the outermost data (gap < 0), the tail
    (1 + d / (b - a))^-(n + 1) of a uniform whose end is unknown after n points: finite everywhere.
    """
    a, b, gap_below, gap_above, n = cells.T
    length = b - a
    tail = length / n  # the mass of (1 + d / L)^-(n+1) over d > 0
    mass = length + np.where(gap_below > 0, gap_below / 2, tail) + np.where(gap_above > 0, gap_above / 2, tail)
    below, above = a - y, y - b  # > 0 outside the data

    def side(distance: np.ndarray, gap: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # overflow: far out, density 0
            ramp = np.log(np.clip(1 - distance / np.where(gap > 0, gap, 1.0), 0.0, 1.0))
            return np.where(gap > 0, ramp, -(n + 1) * np.log1p(np.maximum(distance, 0) / length))

    log_f = np.where(below > 0, side(below, gap_below), np.where(above > 0, side(above, gap_above), 0.0))
    return log_f - np.log(mass)


def _sample_cells(cells: np.ndarray, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One y from p(y | c) of the uniform family for each c, by choosing a piece by its mass."""
    a, b, gap_below, gap_above, n = (column[c] for column in cells.T)
    length = b - a
    below_mass = np.where(gap_below > 0, gap_below / 2, length / n)
    above_mass = np.where(gap_above > 0, gap_above / 2, length / n)
    u, v = rng.random(c.shape), rng.random(c.shape)
    pick = u * (length + below_mass + above_mass)
    core = a + v * length
    # A ramp falling over a gap g is a triangle: distance g (1 - sqrt(v)); a tail is Lomax: L ((1-v)^(-1/n) - 1).
    ramp_or_tail = lambda gap: np.where(gap > 0, gap * (1 - np.sqrt(v)), length * ((1 - v) ** (-1 / n) - 1))
    return np.where(
        pick < length,
        core,
        np.where(pick < length + below_mass, a - ramp_or_tail(gap_below), b + ramp_or_tail(gap_above)),
    )


class GaussianY:
    """p(y | c) = N(y; mean_c, sd_c^2), fitted by maximum likelihood, or trained by gradient without labels.

    Parameters per component: (mean, raw), with sd = softplus(raw) + ``SD_FLOOR``, so a gradient step
    never makes an sd negative or zero.
    """

    name = "gaussian"
    n_params = 2
    learnable = True
    SD_FLOOR = 1e-3

    def fit(self, y: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
        mean = np.array([y[c == i].mean() for i in range(k)])
        sd = np.maximum([y[c == i].std() for i in range(k)], 2 * self.SD_FLOOR)
        return np.stack([mean, np.log(np.expm1(sd - self.SD_FLOOR))], axis=1)

    def start(self, y: np.ndarray, k: int) -> np.ndarray:
        """Where training without labels begins: means at evenly spaced quantiles of y, sds a K-th of its spread."""
        mean = np.quantile(y, (np.arange(k) + 0.5) / k)
        return np.stack([mean, np.full(k, np.log(np.expm1(max(y.std() / k - self.SD_FLOOR, 1e-6))))], axis=1)

    def mean_sd(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return params[:, 0], np.logaddexp(0.0, params[:, 1]) + self.SD_FLOOR

    def log_prob(self, y: np.ndarray, params: np.ndarray) -> np.ndarray:
        """log p(y | c) for y of shape (..., 1): shape (..., K)."""
        return normal_logpdf(y, *self.mean_sd(params))

    def log_prob_torch(self, y: Tensor, params: Tensor) -> Tensor:
        """log p(y | c) for y (n,), differentiable in ``params``: (n, K)."""
        sd = F.softplus(params[:, 1]) + self.SD_FLOOR
        return torch.distributions.Normal(params[:, 0], sd).log_prob(y.double()[:, None])

    def sample(self, c: np.ndarray, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean, sd = self.mean_sd(params)
        return mean[c] + sd[c] * rng.standard_normal(c.shape)

    def span(self, params: np.ndarray) -> tuple[float, float]:
        """An interval holding all of p(y)'s mass (nine sds past every mean)."""
        mean, sd = self.mean_sd(params)
        return float((mean - 9 * sd).min()), float((mean + 9 * sd).max())


class UniformCellsY:
    """p(y | c) uniform over a cell whose edges are known only to lie beyond its data (see ``_log_cell_density``).

    Parameters per component: the lowest and highest training y (a, b), the gap to the neighbouring
    cell below and above (-1: outermost, a decaying tail instead), and the count n.
    """

    name = "uniform"
    n_params = 5
    learnable = False

    def fit(self, y: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
        a = np.array([y[c == i].min() for i in range(k)])
        b = np.array([y[c == i].max() for i in range(k)])
        if np.any(b <= a):
            raise ValueError("every uniform cell needs training points at two different y")
        gap_below, gap_above = np.full(k, -1.0), np.full(k, -1.0)  # -1: outermost, a decaying tail
        order = np.argsort(a)
        for lower, upper in zip(order[:-1], order[1:]):  # a gap of 0: the cells overlap, hard edges
            gap_above[lower] = gap_below[upper] = max(a[upper] - b[lower], 0.0)
        return np.stack([a, b, gap_below, gap_above, np.bincount(c, minlength=k).astype(float)], axis=1)

    def log_prob(self, y: np.ndarray, params: np.ndarray) -> np.ndarray:
        return _log_cell_density(y, params)

    def sample(self, c: np.ndarray, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _sample_cells(params, c, rng)

    def span(self, params: np.ndarray) -> tuple[float, float]:
        """An interval holding all but e^-40 of each cell's tail mass."""
        tail = (params[:, 1] - params[:, 0]) / params[:, 4]
        return float((params[:, 0] - 40 * tail).min()), float((params[:, 1] + 40 * tail).max())


Y_FAMILIES = {"gaussian": GaussianY(), "uniform": UniformCellsY()}
"""The families of p(y | c) a generative model can have, by name."""


class XParents:
    """The parents of x in the Bayesian network, and what follows from them: whether the network for
    p(x | parents) sees y (:attr:`sees_y`), the network's arrows (:attr:`edges`), its factorisation
    (:attr:`formula`), and how Bayes' rule sums y out to give p(y | x) (:meth:`given_x`,
    :meth:`log_prob`, :meth:`sample`, :meth:`log_marginal_x`, each for a fitted :class:`GenerativeModel`).

    Stateless: one instance of each kind, in :data:`X_PARENTS` by name; two are equal when of one kind.
    """

    name: ClassVar[str]
    sees_y: ClassVar[bool]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    @property
    def edges(self) -> list[tuple[str, str]]:
        """The Bayesian network's arrows, parent -> child."""
        return [("c", "y"), ("c", "x")] + ([("y", "x")] if self.sees_y else [])

    @property
    def formula(self) -> str:
        """The joint's factorisation, in LaTeX."""
        return r"p(x, y, c) = p(c)\, p(y \mid c)\, p(x \mid " + ("y, c" if self.sees_y else "c") + ")"

    def given_x(self, model: GenerativeModel, x: np.ndarray) -> tuple[np.ndarray]:
        """What :meth:`log_prob` and :meth:`sample` need of each x, computed once per distinct x."""
        raise NotImplementedError

    def log_prob(self, model: GenerativeModel, y: np.ndarray, x: np.ndarray, given: np.ndarray) -> np.ndarray:
        """log p(y | x), the broadcast shape of y and x."""
        raise NotImplementedError

    def sample(
        self, model: GenerativeModel, x: np.ndarray, n: int, rng: np.random.Generator, given: np.ndarray
    ) -> np.ndarray:
        """n draws of y from p(y | x) for each x: (n, len(x))."""
        raise NotImplementedError

    def log_marginal_x(self, model: GenerativeModel, x: np.ndarray) -> np.ndarray:
        """log p(x), the shape of x."""
        raise NotImplementedError


class XFromYAndC(XParents):
    """x depends on y and c (linear, sinusoid): p(x, y, c) = p(c) p(y | c) p(x | y, c).

    Bayes' rule: log p(y | x) = log p(x, y) - log p(x), with p(x) = ∫ p(x, y) dy by the trapezoidal
    rule on the model's quadrature grid (:meth:`GenerativeModel.quadrature_grid`); samples by the
    inverse CDF of p(x, y) over that grid.
    """

    name = "y,c"
    sees_y = True

    def given_x(self, model, x):
        return (model._log_marginal_x(x),)

    def log_prob(self, model, y, x, given):
        # Where p(x) underflows (|x| beyond ~1e150 data widths) so does p(x, y) at every float64 y: -inf.
        with np.errstate(invalid="ignore"):
            return np.where(np.isneginf(given), -np.inf, model._log_joint(x, y) - given)

    def sample(self, model, x, n, rng, given):
        nodes = model.quadrature_grid()
        mean, sd = model._x_params(nodes)  # (nodes, M K): the networks once, for every x
        log_prior = model._log_weights(nodes)
        out = np.empty((n, len(x)))
        u = rng.random((n, len(x)))
        rows = max(1, 2**20 // len(nodes))
        for start in range(0, len(x), rows):
            log_joint = log_gaussian_mixture(x[start : start + rows, None], log_prior, mean, sd)  # (rows, nodes)
            for i, row in enumerate(log_joint, start):
                out[:, i] = sample_from_grid(row, nodes, u[:, i])
        return out

    def log_marginal_x(self, model, x):
        nodes = model.quadrature_grid()
        unique, inverse = np.unique(x, return_inverse=True)
        mean, sd = model._x_params(nodes)  # (nodes, M K), once for every x
        log_prior = model._log_weights(nodes)
        out = np.empty(len(unique))
        rows = max(1, 2**20 // len(nodes))
        for start in range(0, len(unique), rows):
            chunk = unique[start : start + rows]
            log_joint = log_gaussian_mixture(chunk[:, None], log_prior, mean, sd)  # (chunk, nodes)
            out[start : start + rows] = log_trapezoid(log_joint, nodes[1] - nodes[0])
        return out[inverse].reshape(x.shape)


class XFromC(XParents):
    """x depends on c alone (camera relocalisation): p(x, y, c) = p(c) p(y | c) p(x | c).

    y has no edge into x, so summing y out is exact: p(y | x) = Σ_c p(c | x) p(y | c), with
    p(c | x) ∝ p(c) p(x | c) exact however far x lies; samples draw c from p(c | x), then y from p(y | c).
    """

    name = "c"
    sees_y = False

    def given_x(self, model, x):
        return (model._log_pc_given_x(x),)

    def log_prob(self, model, y, x, given):
        log_py = np.tile(model.y_family.log_prob(y[..., None], model.y_given_c), len(model.networks))
        return logsumexp_last(given + log_py)

    def sample(self, model, x, n, rng, given):
        c = sample_categorical(given, n, rng) % model.n_components  # (n, len(x)): a (network, c) pair
        return model.y_family.sample(c, model.y_given_c, rng)

    def log_marginal_x(self, model, x):
        mean, sd = model._x_params(np.empty(0))
        return log_gaussian_mixture(x[..., None], model._log_mc(), mean, sd)[..., 0]


X_PARENTS = {parents.name: parents for parents in (XFromYAndC(), XFromC())}
"""The parents x can have in a generative model, by name: "y,c" or "c"."""


def _y_family(y_family: str | GaussianY | UniformCellsY) -> GaussianY | UniformCellsY:
    """The family of p(y | c) named (or given) by ``y_family``."""
    if isinstance(y_family, (GaussianY, UniformCellsY)):
        return y_family
    if not isinstance(y_family, str) or y_family not in Y_FAMILIES:
        raise ValueError(f"y_family must be one of {sorted(Y_FAMILIES)}, got {y_family!r}")
    return Y_FAMILIES[y_family]


def _x_parents(x_parents: str | XParents) -> XParents:
    """The parents of x named (or given) by ``x_parents``."""
    if isinstance(x_parents, XParents):
        return x_parents
    if not isinstance(x_parents, str) or x_parents not in X_PARENTS:
        raise ValueError(f"x_parents must be 'y,c' or 'c' (or an XParents), got {x_parents!r}")
    return X_PARENTS[x_parents]


class XNetwork(nn.Module):
    """One network for p(x | y, c) (or p(x | c)): a Gaussian over x whose mean and scale an MLP predicts.

    Inputs are y (z-scored) and the one-hot c; a per-component linear path a_c y + b_c runs beside
    the MLP, so the MLP learns how x departs from a line. ``forward(inputs)``, inputs (n, 2) holding
    y and c, returns the ``Normal`` over x that the shared training loop scores.
    """

    def __init__(self, n_components: int, x_parents: XParents | str, hidden: int, depth: int, min_scale: float):
        super().__init__()
        self.n_components, self.x_parents, self.min_scale = n_components, _x_parents(x_parents), min_scale
        self.scaling = Standardiser()
        with_y = self.x_parents.sees_y
        self.net = mlp(n_components + int(with_y), 2, hidden, depth)
        self.line_slope = nn.Parameter(torch.zeros(n_components)) if with_y else None
        self.line_offset = nn.Parameter(torch.zeros(n_components)) if with_y else None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The linear path starts flat (the MLP's layers reset themselves)."""
        if self.line_slope is not None:
            self.line_slope.zero_()
            self.line_offset.zero_()

    def x_given(self, y: Tensor, c: Tensor) -> torch.distributions.Normal:
        """p(x | y, c) for tensors y (n,) and integer c (n,): a Normal over x, float32."""
        features = F.one_hot(c.long(), self.n_components).float()
        if self.x_parents.sees_y:
            features = torch.cat([self.scaling.z_y(y)[:, None], features], dim=1)
        loc, raw_scale = (t.contiguous() for t in self.net(features).unbind(-1))  # strided views are slow
        if self.x_parents.sees_y:
            loc = loc + self.line_slope[c.long()] * features[:, 0] + self.line_offset[c.long()]
        scale = F.softplus(raw_scale) + self.min_scale
        x_mean, x_sd = self.scaling.x_mean.float(), self.scaling.x_sd.float()
        return torch.distributions.Normal(x_mean + x_sd * loc, x_sd * scale)

    def forward(self, inputs: Tensor) -> torch.distributions.Normal:
        return self.x_given(inputs[:, 0], inputs[:, 1])

    @torch.no_grad()
    def start_at_least_squares(self, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> None:
        """Start at each component's linear-Gaussian fit: the least-squares line of x on y (the linear
        path) and the residual spread (the scale), with the MLP's output zeroed, so that training
        spends the MLP on how x departs from a line, not on finding the line."""
        if not self.x_parents.sees_y:
            return
        scaling = self.scaling
        x_z = (x - scaling.x_mean.item()) / scaling.x_sd.item()
        y_z = (y - scaling.y_mean.item()) / scaling.y_sd.item()
        slopes, offsets, spreads = [], [], []
        for i in range(self.n_components):
            design = np.stack([y_z[c == i], np.ones(np.sum(c == i))], axis=1)
            (slope, offset), *_ = np.linalg.lstsq(design, x_z[c == i], rcond=None)
            slopes.append(slope)
            offsets.append(offset)
            spreads.append(np.std(x_z[c == i] - design @ [slope, offset]))
        self.line_slope.copy_(torch.tensor(slopes))
        self.line_offset.copy_(torch.tensor(offsets))
        last = self.net[-1]
        last.weight.zero_()
        spread = max(float(np.mean(spreads)) - self.min_scale, 1e-6)
        last.bias.copy_(torch.tensor([0.0, float(np.log(np.expm1(spread)))]))


class GenerativeModel(NetworkDensity):
    """p(x, y, c) = p(c) p(y | c) p(x | parents), with p(x | parents) a Gaussian from a neural network.

    Args:
        n_components: K, the number of values of c.
        y_family: "gaussian" or "uniform": the form of p(y | c), fitted by maximum likelihood. Uniform
            cells have edges known only to lie beyond their data, and are integrated over where
            those edges can be: neighbouring cells meet with complementary ramps across the gap
            between their data, and the outermost decay past it, so every y has a finite density
            (see ``_log_cell_density``).
        x_parents: "y,c" (x depends on y and c) or "c" (x depends on c only, as in camera
            relocalisation).
        hidden, depth: width and number of hidden layers of the network for p(x | parents).
        min_scale: floor on the network's scale of x, in units of the training data's standard
            deviation of x, so no component can collapse to a spike.
        quadrature_oversample: y nodes per narrowest peak of p(x | y, c) as a function of y when
            computing p(x); the step is set from the trained network (see :meth:`quadrature_grid`).
        n_networks: M networks trained independently (different initial weights and batch order) whose
            Gaussians are averaged: p(x | y, c) = 1/M sum_m N(x; mean_m, sd_m^2), a deep ensemble.
            Where data is scarce the members disagree and the mixture widens; this helps most on small
            data sets, at M times the training cost. Labelled training only.

    The network z-scores its inputs and outputs with the training data's statistics.
    """

    def __init__(
        self,
        n_components: int,
        y_family: str | GaussianY | UniformCellsY = "gaussian",
        x_parents: str | XParents = "y,c",
        hidden: int = 64,
        depth: int = 3,
        min_scale: float = 1e-3,
        quadrature_oversample: float = 2.0,
        n_networks: int = 1,
    ):
        super().__init__()
        self.n_components = k = check_count(n_components, "n_components")
        self.y_family, self.x_parents = _y_family(y_family), _x_parents(x_parents)
        hidden, depth = check_count(hidden, "hidden"), check_count(depth, "depth")
        self.min_scale = check_positive(min_scale, "min_scale")
        self.quadrature_oversample = check_positive(quadrature_oversample, "quadrature_oversample")
        # p(c) = softmax(c_logits) and p(y | c): fitted in closed form with labels, trained without.
        self.c_logits = nn.Parameter(torch.zeros(k, dtype=torch.float64))
        y_params = torch.zeros(k, self.y_family.n_params, dtype=torch.float64)
        if self.y_family.learnable:
            self.y_params = nn.Parameter(y_params)
        else:
            self.register_buffer("y_params", y_params)
        n_networks = check_count(n_networks, "n_networks")
        self.networks = nn.ModuleList(
            XNetwork(k, self.x_parents, hidden, depth, self.min_scale) for _ in range(n_networks)
        )
        self._quadrature: np.ndarray | None = None
        self.register_load_state_dict_post_hook(GenerativeModel._forget_quadrature)

    @staticmethod
    def _forget_quadrature(module: GenerativeModel, incompatible_keys) -> None:
        """Loaded weights make a new p(x, y): the quadrature grid is set again from them when needed."""
        module._quadrature = None

    @classmethod
    def for_dataset(cls, data, **kwargs) -> GenerativeModel:
        """The model whose Bayesian network is the one ``data`` declares (``data.y_family``,
        ``data.x_parents``), with as many components as it has. The planar datasets' networks are
        :class:`utilis.gen_model_plane.PlanarGenerativeModel`'s: they are refused here, saying so."""
        if data.x_dim != 1 or data.y_space.dim != 1:
            raise ValueError(
                f"GenerativeModel serves datasets with a scalar x and a scalar y; {data.name} has x of "
                f"dimension {data.x_dim} and y in {data.y_space!r}: for it, "
                "utilis.gen_model_plane.PlanarGenerativeModel.for_dataset(data)"
            )
        network = {"y_family": data.y_family, "x_parents": data.x_parents}
        return cls(data.n_components, **{**network, **kwargs})

    # ---- the factors ----------------------------------------------------------------------------
    def x_given(self, y: Tensor, c: Tensor, member: int = 0) -> torch.distributions.Normal:
        """p(x | y, c) (or p(x | c)) of one member network, for tensors y (n,) and integer c (n,)."""
        return self.networks[member].x_given(y, c)

    def _log_joint_torch(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) = logsumexp_c [...] for paired 1-D tensors, differentiable (for unlabelled training)."""
        n, k = len(y), self.n_components
        c = torch.arange(k, device=y.device).repeat(n)
        log_px = self.x_given(y.repeat_interleave(k), c).log_prob(x.float().repeat_interleave(k)).view(n, k)
        log_py = self.y_family.log_prob_torch(y, self.y_params)
        return logsumexp(torch.log_softmax(self.c_logits, 0) + log_py + log_px.double(), dim=1)

    # ---- fitting --------------------------------------------------------------------------------
    training_defaults = TrainingSettings(lr=7e-3, batch_size=None, epochs=80, patience=30)
    """80 epochs on the shared cosine schedule: the least-squares start leaves the network little to learn
    (``benchmarks/bench_generative.py``)."""

    def fit(
        self, x: ArrayLike, y: ArrayLike, c: ArrayLike | None = None, *, seed: int | None = 0, **train_kwargs
    ) -> History:
        """Fit the model to training points; ``c`` the component labels, or None to learn without them.

        With labels, p(c) and p(y | c) are fitted in closed form (maximum likelihood) and the network
        for p(x | parents) by the shared training loop on its Gaussian negative log-likelihood. Without,
        everything is trained together on -log p(x, y), c summed out (Gaussian p(y | c) only).
        Initial weights come from ``seed``; ``train_kwargs`` override ``training_defaults`` and set the
        run's options (:meth:`utilis.networks.NetworkDensity.fit`). Returns the training
        :class:`~utilis.training.History` (for an ensemble, its members' averaged).
        """
        return self._fit(x, y, seed=seed, train_kwargs=train_kwargs, c=c)

    def _check_fit_data(self, x: ArrayLike, y: ArrayLike, c: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, dict]:
        x, y = check_fit_data(x, y)
        if c is None:
            if not self.y_family.learnable:
                raise ValueError("training without labels needs y_family='gaussian' (uniform cells have no gradient)")
            if len(self.networks) != 1:
                raise ValueError(f"training without labels needs n_networks=1, got {len(self.networks)}")
        else:
            c = self._check_labels(c, len(x))
        return x, y, {"c": c}

    def _description(self, c: np.ndarray | None) -> str:
        return "p(x | parents)" if c is not None else "p(x, y), no labels"

    def _set_scaling(self, x: np.ndarray, y: np.ndarray, c: np.ndarray | None) -> None:
        for network in self.networks:
            network.scaling.fit(x, y)
        self._quadrature = None

    @torch.no_grad()
    def _initialise(self, x: np.ndarray, y: np.ndarray, c: np.ndarray | None) -> None:
        """With labels: p(c) and p(y | c) by maximum likelihood, each network at its least-squares start
        (:meth:`XNetwork.start_at_least_squares`). Without: p(c) uniform, p(y | c) spread over y."""
        k = self.n_components
        if c is None:
            self.c_logits.zero_()
            self.y_params.copy_(torch.from_numpy(self.y_family.start(y, k)))
            return
        self.c_logits.copy_(torch.from_numpy(np.log(np.bincount(c, minlength=k) / len(c))))
        self.y_params.copy_(torch.from_numpy(self.y_family.fit(y, c, k)))
        for network in self.networks:
            network.start_at_least_squares(x, y, c)

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        seed: int | None,
        settings: TrainingSettings,
        options: dict,
        c: np.ndarray | None,
    ) -> History:
        """With labels, each network alone on its Gaussian negative log-likelihood of x given (y, c),
        member m from seed + m; without, the whole joint on -log p(x, y)."""
        kwargs = settings.as_kwargs() | options
        if c is None:

            def loss(model: GenerativeModel, inputs: Tensor, target: Tensor) -> Tensor:
                return -model._log_joint_torch(target, inputs[:, 0]).mean()

            return train(self, np.stack([y, np.zeros_like(y)], 1), x, loss=loss, seed=seed, **kwargs)
        inputs = np.stack([y, c.astype(np.float64)], axis=1)
        histories = []
        for m, network in enumerate(self.networks):
            histories.append(train(network, inputs, x, seed=None if seed is None else seed + m, **kwargs))
        self.to(self.networks[0].scaling.x_mean.device)  # where training put the networks
        return histories[0] if len(histories) == 1 else _combine(histories)

    def _check_labels(self, c: ArrayLike, n: int) -> np.ndarray:
        c = np.asarray(c)
        if c.ndim == 2 and c.shape[1] == 1:
            c = c[:, 0]
        if c.shape != (n,) or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"c must hold one integer label per point, got dtype {c.dtype} and shape {c.shape}")
        if c.min() < 0 or c.max() >= self.n_components:
            raise ValueError(f"c must lie in 0..{self.n_components - 1}, got values from {c.min()} to {c.max()}")
        counts = np.bincount(c, minlength=self.n_components)
        if counts.min() < 2:
            raise ValueError(f"every component needs at least 2 labelled points, got counts {counts.tolist()}")
        return c

    @property
    def edges(self) -> list[tuple[str, str]]:
        """The Bayesian network's arrows, parent -> child."""
        return self.x_parents.edges

    @property
    def factorisation(self) -> str:
        """The joint's factorisation, in LaTeX."""
        return self.x_parents.formula

    @property
    def log_pc(self) -> np.ndarray:
        """log p(c), shape (K,)."""
        return torch.log_softmax(self.c_logits.detach(), 0).cpu().numpy()

    @property
    def y_given_c(self) -> np.ndarray:
        """The fitted parameters of p(y | c), one row per component (see the family's docstring)."""
        return self.y_params.detach().cpu().numpy()

    def x_mean_sd(self, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of p(x | y, c) for every component at each y: two arrays y.shape + (K,).

        With several networks these are the mean and sd of their mixture.
        """
        y = finite_array(y, "y")
        self._check_ready()
        shape, m = (*y.shape, self.n_components), len(self.networks)
        mean, sd = (np.broadcast_to(v, (*y.shape, m * self.n_components)) for v in self._x_params(y))
        mean, sd = mean.reshape((*y.shape, m, self.n_components)), sd.reshape((*y.shape, m, self.n_components))
        mixture_mean = mean.mean(axis=-2)
        mixture_sd = np.sqrt(np.maximum((sd**2 + mean**2).mean(axis=-2) - mixture_mean**2, 0.0))
        return np.broadcast_to(mixture_mean, shape).copy(), np.broadcast_to(mixture_sd, shape).copy()

    def component_posterior(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """p(c | x, y) ∝ p(c) p(y | c) p(x | y, c) at each point: the responsibilities, shape (n, K).

        ``x`` and ``y`` are 1-D arrays of one length. Without labels, this says which of the model's
        free components took each point (its members' densities averaged, for an ensemble).
        """
        x, y = check_fit_data(x, y)
        self._check_ready()
        m, k = len(self.networks), self.n_components
        mean, sd = (np.broadcast_to(v, (len(y), m * k)) for v in self._x_params(y))
        terms = self._log_weights(y) + normal_logpdf(x[:, None], mean, sd)  # (n, M K), network-major
        terms = logsumexp_last(terms.reshape(len(y), m, k).swapaxes(1, 2))  # (n, K): members summed
        return np.exp(terms - logsumexp_last(terms)[:, None])

    # ---- the densities, in numpy ----------------------------------------------------------------
    @torch.no_grad()
    def _x_params(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of x for every (network, component) pair at each y, network-major: shapes
        y.shape + (M K,), or (M K,) when x does not depend on y."""
        k = self.n_components
        if not self.x_parents.sees_y:  # one evaluation per component, whatever y
            y_flat, c = torch.zeros(k, device=self.device), torch.arange(k, device=self.device)
            shape: tuple[int, ...] = (k,)
        else:
            flat = self._as_tensor(np.ravel(y))
            y_flat, c = flat.repeat_interleave(k), torch.arange(k, device=self.device).repeat(len(flat))
            shape = (*np.shape(y), k)
        means, sds = [], []
        for member in range(len(self.networks)):
            normal = self.x_given(y_flat, c, member)
            means.append(normal.loc.double().cpu().numpy().reshape(shape))
            sds.append(normal.scale.double().cpu().numpy().reshape(shape))
        return np.concatenate(means, axis=-1), np.concatenate(sds, axis=-1)

    def _log_prior_y(self, y: np.ndarray) -> np.ndarray:
        """log p(c) + log p(y | c): shape y.shape + (K,)."""
        return self.log_pc + self.y_family.log_prob(np.asarray(y)[..., None], self.y_given_c)

    def _log_weights(self, y: np.ndarray) -> np.ndarray:
        """log p(c) + log p(y | c) - log M for every (network, component) pair: y.shape + (M K,)."""
        m = len(self.networks)
        return np.tile(self._log_prior_y(y), m) - np.log(m)

    def _log_joint(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        mean, sd = self._x_params(y)
        return log_gaussian_mixture(x, self._log_weights(y), mean, sd)

    def log_joint(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """log p(x, y) with c summed out. ``x`` and ``y`` broadcast; the result has their broadcast shape."""
        y_array, x_array, shape = broadcast_query(y, x)
        self._check_ready()
        return np.broadcast_to(self._log_joint(x_array, y_array), shape).copy()

    def quadrature_grid(self) -> np.ndarray:
        """The y nodes for p(x) = integral of p(x, y) dy: they span p(y) and resolve the network's peaks.

        A peak of p(x | y, c) as a function of y is about sd_c(y) / |d mean_c / dy| wide; the step is
        the narrowest such width over the span of p(y), divided by ``quadrature_oversample``.
        """
        self._check_ready()
        if self._quadrature is None:
            lo, hi = self.y_family.span(self.y_given_c)
            pilot = np.linspace(lo, hi, 8193)
            mean, sd = self._x_params(pilot)
            slope = np.abs(np.gradient(mean, pilot, axis=0))
            # Only where p(y, c) has mass (within e^-30 of its peak): far out, the network's
            # extrapolation may be steep, but nothing there adds to the integral.
            log_prior = self._log_weights(pilot)
            relevant = log_prior > log_prior.max() - 30
            width = np.min((sd / np.maximum(slope, 1e-12))[relevant])
            n_nodes = int(np.clip((hi - lo) / width * self.quadrature_oversample, 2048, 2**16))
            self._quadrature = np.linspace(lo, hi, n_nodes + 1)
        return self._quadrature

    def _log_pc_given_x(self, x: np.ndarray) -> np.ndarray:
        """log p(m, c | x) when x depends on c alone: x.shape + (M K,), exact however far x lies."""
        mean, sd = self._x_params(np.empty(0))
        return log_gaussian_posterior(x, self._log_mc(), mean, sd)

    def _log_mc(self) -> np.ndarray:
        """log p(c) - log M for every (network, component) pair: (M K,)."""
        return np.tile(self.log_pc, len(self.networks)) - np.log(len(self.networks))

    def _log_marginal_x(self, x: np.ndarray) -> np.ndarray:
        return self.x_parents.log_marginal_x(self, x)

    def log_marginal_x(self, x: ArrayLike) -> np.ndarray:
        """log p(x) (by quadrature over y, or in closed form when x does not depend on y)."""
        x = finite_array(x, "x")
        self._check_ready()
        return self._log_marginal_x(x)

    def _given_x(self, x):
        return self.x_parents.given_x(self, x)

    def _log_prob(self, y, x, given):
        """log p(y | x) by Bayes' rule, as the parents of x allow (:class:`XFromC`, :class:`XFromYAndC`)."""
        return self.x_parents.log_prob(self, y, x, given)

    def _sample(self, x, n, rng, given):
        return self.x_parents.sample(self, x, n, rng, given)

    def sample_joint(self, n: int, seed: int | np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
        """Ancestral sampling from the network: c ~ p(c), y ~ p(y | c), x ~ p(x | y, c). Returns (x, y, c)."""
        n, rng = check_count(n, "n"), as_generator(seed)
        self._check_ready()
        c = rng.choice(self.n_components, size=n, p=np.exp(self.log_pc))
        y = self.y_family.sample(c, self.y_given_c, rng)
        width = len(self.networks) * self.n_components
        mean, sd = (np.broadcast_to(v, (n, width)) for v in self._x_params(y))
        column = rng.integers(len(self.networks), size=n) * self.n_components + c  # a network, then c
        rows = np.arange(n)
        return mean[rows, column] + sd[rows, column] * rng.standard_normal(n), y, c
