"""The generative model in the plane: the planar datasets' Bayesian networks, p(y|x) by Bayes' rule.

The scalar :class:`~utilis.gen_model_utilis.GenerativeModel` writes p(x, y, c) as the data is made;
this is the same idea for a vector x and a y in the plane, with the two networks the planar datasets
declare (``data.x_parents``):

.. math::
    \\text{robot arm (x_parents "y"):}\\quad p(x, y) = p(y)\\, p(x \\mid y), \\qquad
    p(x \\mid y) = \\mathcal N\\big(x;\\, m(y), \\operatorname{diag} s(y)^2\\big),

    \\text{room (x_parents "c"):}\\quad p(x, y, c) = p(c)\\, p(y \\mid c)\\, p(x \\mid c), \\qquad
    p(x \\mid c) = \\mathcal N(x;\\, m_c, s^2 I).

What is known is fitted in closed form: p(y) (or p(y | c)) is uniform on a box, p(c) categorical,
and the room's p(x | c) a Gaussian per tile with one shared isotropic sd, all by maximum likelihood.
What is not known, the robot arm's forward map y -> x and its noise, is learned: a network gives the
mean m(y) and the sds s(y) of a Gaussian over x (an MLP on z-scored y beside a linear path started at
the least-squares line, as the scalar model starts).

A box's edges are known only to lie beyond its data. Along each axis the density is the posterior
predictive of a uniform whose ends are unknown (:func:`utilis.gen_model_utilis._log_cell_density`):
flat over the data's range [a, b], with a tail (1 + d / L)^-(n+1) beyond it (L = b - a, n points),
so no y has density 0 and a test point a hair past the training data costs nats, not infinity. The
box is the product of its two axes. (Neighbouring tiles of the room are not joined by ramps as the
scalar model's cells are: at 18,000 points the gap between two tiles' data is 1/1,100 of a tile.)

Bayes' rule. For the room x depends on c alone, so p(y | x) = sum_c p(c | x) p(y | c) is exact, with
p(c | x) by :func:`utilis.numerics.log_isotropic_posterior` (finite however far x lies). For the
robot arm p(x) = integral of p(y) p(x | y) dy is a 2-D integral, done by the product trapezoidal rule
over the box (:meth:`PlanarGenerativeModel.quadrature_axes`), its end weights corrected to be exact
for cubics (p(x | y) is cut at the box's edges, where the plain rule's error is h^2 / 12 of the slope),
each tail's mass L / n added to the end node's weight (the tails are far narrower than a step, where p(x | y)
is flat). The step along
axis a is the narrowest width of p(x | y) as a function of y_a over the box, min s(y) / |d m / d y_a|,
divided by ``quadrature_oversample`` (2), with at least 128 intervals an axis. With the arm's own
forward map and noise in place of the network, this rule gives the truth's log p(y | x) (whose
integral is placed around the inverse-kinematics solutions) to 1e-5 nats on average and 5e-4 at
worst, where a peak is cut by the box's edge (``tests/test_gen_model_plane.py``).
Samples: a node of that grid by its mass, then a uniform point in its cell.

Example:
    >>> from generate_dataset import robot_arm
    >>> data = robot_arm(n_samples=500, seed=0)
    >>> model = PlanarGenerativeModel.for_dataset(data, hidden=16)
    >>> history = model.fit(data.x_train, data.y_train, epochs=3, progress=False)
    >>> model.log_prob(data.y_test, data.x_test).shape, model.sample(data.x_test[:2], 4).shape
    ((50,), (4, 2, 2))
"""

from __future__ import annotations

import time

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from torch.nn import functional as F

from utilis.gen_model_utilis import _log_cell_density, _sample_cells
from utilis.networks import NetworkDensity, Standardiser, check_fit_rows, mlp
from utilis.numerics import (
    LOG_SQRT_2PI,
    CannotSample,
    log_isotropic_posterior,
    logsumexp_last,
    sample_categorical,
    sample_product_grid,
)
from utilis.protocol import check_count, check_positive
from utilis.spaces import Euclidean
from utilis.training import History, TrainingSettings, train

__all__ = ["PlanarGenerativeModel", "XGivenY"]

_GREGORY = np.array([3 / 8, 7 / 6, 23 / 24])
"""The trapezoidal rule's end weights corrected to be exact for cubics (Press et al., Numerical Recipes, eq.
4.1.14): the density is cut at the box's edges, where the plain rule errs by h^2 / 12 of the slope there."""
_ELEMENTS = 2**22  # x rows times quadrature nodes at once: (rows, nodes) float64 temporaries of 32 MB


def _box_cells(y: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Each component's box, axis by axis, as :func:`_log_cell_density` takes its cells: (2, K, 5), a row
    (a, b, -1, -1, n) per component and axis (-1: no neighbour, a tail on both sides)."""
    cells = np.empty((y.shape[1], k, 5))
    for i in range(k):
        inside = y[c == i]
        if len(inside) < 2 or np.any(np.ptp(inside, axis=0) <= 0):
            raise ValueError(f"component {i} needs training points at two different y along each axis")
        cells[:, i] = np.stack(
            [inside.min(axis=0), inside.max(axis=0), -np.ones(2), -np.ones(2), np.full(2, float(len(inside)))], axis=1
        )
    return cells


def _log_box(y: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """log p(y | c) for y (..., 2) against the boxes ``cells`` (2, K, 5): (..., K)."""
    return sum(_log_cell_density(y[..., axis : axis + 1], cells[axis]) for axis in range(len(cells)))


class XGivenY(nn.Module):
    """p(x | y) = N(x; m(y), diag s(y)^2) for a vector x: an MLP on z-scored y beside a linear path.

    ``forward(y)`` for y (n, 2) returns the distribution over x (n, x_dim) that the shared training loop
    scores (independent normals, summed over x's axes)."""

    def __init__(self, x_dim: int, hidden: int, depth: int, min_scale: float):
        super().__init__()
        self.x_dim, self.min_scale = x_dim, min_scale
        self.scaling = Standardiser(x_dim, 2)
        self.net = mlp(2, 2 * x_dim, hidden, depth)
        self.line = nn.Linear(2, x_dim)

    def forward(self, y: Tensor) -> torch.distributions.Independent:
        z = self.scaling.z_y(y)
        out = self.net(z)
        loc = out[:, : self.x_dim] + self.line(z)
        scale = F.softplus(out[:, self.x_dim :]) + self.min_scale
        x_mean, x_sd = self.scaling.x_mean.float(), self.scaling.x_sd.float()
        return torch.distributions.Independent(torch.distributions.Normal(x_mean + x_sd * loc, x_sd * scale), 1)

    @torch.no_grad()
    def start_at_least_squares(self, x: np.ndarray, y: np.ndarray) -> None:
        """The linear path at the least-squares line of z-scored x on z-scored y, the MLP's output zeroed and
        its scale at the residuals' sd per axis: training spends the MLP on how x departs from a line."""
        scaling = self.scaling
        z_x = (x - scaling.x_mean.numpy()) / scaling.x_sd.numpy()
        z_y = (y - scaling.y_mean.numpy()) / scaling.y_sd.numpy()
        design = np.column_stack([z_y, np.ones(len(z_y))])
        solution, *_ = np.linalg.lstsq(design, z_x, rcond=None)  # (3, x_dim)
        self.line.weight.copy_(torch.from_numpy(solution[:2].T))
        self.line.bias.copy_(torch.from_numpy(solution[2]))
        spread = np.maximum((z_x - design @ solution).std(axis=0) - self.min_scale, 1e-6)
        last = self.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.from_numpy(np.concatenate([np.zeros(self.x_dim), np.log(np.expm1(spread))])))


class PlanarGenerativeModel(NetworkDensity):
    """The Bayesian network of a planar dataset, fitted where the form is known and learned where it is not.

    Args:
        x_parents: "y" (x depends on y alone: the robot arm) or "c" (x depends on the component alone:
            the room, whose labels ``fit`` then needs).
        n_components: K, the values of c (1 for x_parents "y": the box of p(y) is one).
        x_dim: the dimension of x.
        hidden, depth: width and hidden layers of the network for p(x | y) (x_parents "y").
        min_scale: floor on s(y), in sds of the training x (x_parents "y").
        quadrature_oversample: nodes per narrowest width of p(x | y) as a function of y, along each axis.
        min_nodes, max_nodes: at least and at most this many quadrature intervals along an axis.
    """

    y_space = Euclidean(2)
    training_defaults = TrainingSettings(lr=3e-3, batch_size=None, epochs=100, patience=30)
    """100 epochs of the cosine schedule from a step of 3e-3 (``benchmarks/bench_plane.py``)."""

    def __init__(
        self,
        x_parents: str,
        n_components: int = 1,
        x_dim: int = 2,
        *,
        hidden: int = 64,
        depth: int = 3,
        min_scale: float = 1e-3,
        quadrature_oversample: float = 2.0,
        min_nodes: int = 128,
        max_nodes: int = 1024,
    ):
        super().__init__()
        if x_parents not in ("y", "c"):
            raise ValueError(f"x_parents must be 'y' or 'c' for a planar generative model, got {x_parents!r}")
        self.x_parents = x_parents
        self.n_components = check_count(n_components, "n_components")
        if x_parents == "y" and self.n_components != 1:
            raise ValueError(f"x_parents 'y' has one box for p(y): n_components must be 1, got {n_components}")
        self.x_dim = check_count(x_dim, "x_dim")
        self.min_scale = check_positive(min_scale, "min_scale")
        self.quadrature_oversample = check_positive(quadrature_oversample, "quadrature_oversample")
        self.min_nodes = check_count(min_nodes, "min_nodes", minimum=8)
        self.max_nodes = check_count(max_nodes, "max_nodes", minimum=self.min_nodes)
        self.scaling = Standardiser(self.x_dim, 2)
        k = self.n_components
        self.register_buffer("log_pc", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("y_cells", torch.zeros(2, k, 5, dtype=torch.float64))
        self.register_buffer("x_means", torch.zeros(k, self.x_dim, dtype=torch.float64))
        self.register_buffer("x_sd", torch.ones((), dtype=torch.float64))
        self.network = XGivenY(self.x_dim, check_count(hidden, "hidden"), check_count(depth, "depth"), self.min_scale)
        self._quadrature: tuple | None = None
        self.register_load_state_dict_post_hook(PlanarGenerativeModel._forget_quadrature)

    @staticmethod
    def _forget_quadrature(module: PlanarGenerativeModel, incompatible_keys) -> None:
        module._quadrature = None

    @classmethod
    def for_dataset(cls, data, **kwargs) -> PlanarGenerativeModel:
        """The model whose Bayesian network is the one the planar dataset ``data`` declares."""
        if data.y_space != Euclidean(2) or data.x_parents not in ("y", "c"):
            raise ValueError(
                f"PlanarGenerativeModel serves the planar datasets (y in the plane, x_parents 'y' or 'c'); "
                f"{data.name} has y in {data.y_space!r} and x_parents {data.x_parents!r}"
            )
        k = 1 if data.x_parents == "y" else data.n_components
        return cls(data.x_parents, k, data.x_dim, **kwargs)

    @property
    def needs_labels(self) -> bool:
        """Whether ``fit`` needs the component labels c (x_parents "c")."""
        return self.x_parents == "c"

    # ---- fitting --------------------------------------------------------------------------------
    def fit(
        self, x: ArrayLike, y: ArrayLike, c: ArrayLike | None = None, *, seed: int | None = 0, **train_kwargs
    ) -> History:
        """Fit to training points (x (n, x_dim), y (n, 2)) and, for x_parents "c", their labels c (n,).

        x_parents "y": p(y)'s box in closed form, the network for p(x | y) by the shared training loop
        (``train_kwargs`` override ``training_defaults``). x_parents "c": everything in closed form.
        """
        return self._fit(x, y, seed=seed, train_kwargs=train_kwargs, c=c)

    def _check_fit_data(self, x, y, c=None):
        x, y = check_fit_rows(x, y, self.x_dim, 2)
        if self.x_parents == "y":
            if c is not None:
                raise ValueError("x_parents 'y': x depends on y alone and c has no part in the network; fit without c")
            return x, y, {"c": np.zeros(len(x), dtype=np.int64)}
        if c is None:
            raise ValueError("x_parents 'c' needs the component labels: fit(x, y, c)")
        c = np.asarray(c)
        if c.shape != (len(x),) or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"c must hold one integer label per point, got dtype {c.dtype} and shape {c.shape}")
        if c.min() < 0 or c.max() >= self.n_components:
            raise ValueError(f"c must lie in 0..{self.n_components - 1}, got values from {c.min()} to {c.max()}")
        return x, y, {"c": c}

    def _description(self, c) -> str:
        return "p(x | y)"

    def _set_scaling(self, x, y, c) -> None:
        self.scaling.fit(x, y)
        self.network.scaling.fit(x, y)
        self._quadrature = None

    @torch.no_grad()
    def _initialise(self, x, y, c) -> None:
        """p(c), the boxes of p(y | c), and p(x | c) (means and a pooled isotropic sd) by maximum likelihood;
        the network at its least-squares start."""
        k = self.n_components
        counts = np.bincount(c, minlength=k)
        if counts.min() < 2:
            raise ValueError(f"every component needs at least 2 labelled points, got counts {counts.tolist()}")
        self.log_pc.copy_(torch.from_numpy(np.log(counts / len(c))))
        self.y_cells.copy_(torch.from_numpy(_box_cells(y, c, k)))
        means = np.stack([x[c == i].mean(axis=0) for i in range(k)])
        self.x_means.copy_(torch.from_numpy(means))
        self.x_sd.fill_(max(float(np.sqrt(np.mean((x - means[c]) ** 2))), 1e-12))
        if self.x_parents == "y":
            self.network.start_at_least_squares(x, y)

    def _train(self, x, y, *, seed, settings, options, c) -> History:
        if self.x_parents == "c":  # nothing learned by gradient: the closed forms are the fit
            return History(seconds=0.0)
        start = time.perf_counter()
        history = train(self.network, y, x, seed=seed, **settings.as_kwargs(), **options)
        self.to(self.network.scaling.x_mean.device)
        history.seconds = max(history.seconds, time.perf_counter() - start)
        return history

    # ---- the factors, in numpy --------------------------------------------------------------------
    @property
    def cells(self) -> np.ndarray:
        """The boxes of p(y | c): (2, K, 5), per axis and component (a, b, -1, -1, n)."""
        return self.y_cells.cpu().numpy()

    @torch.no_grad()
    def x_mean_sd(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """m(y) and s(y) of p(x | y) at y (..., 2): two arrays y.shape[:-1] + (x_dim,) (x_parents "y")."""
        flat = self._as_tensor(np.asarray(y, dtype=np.float64).reshape(-1, 2))
        normal = self.network(flat).base_dist
        shape = (*np.shape(y)[:-1], self.x_dim)
        return normal.loc.double().cpu().numpy().reshape(shape), normal.scale.double().cpu().numpy().reshape(shape)

    def quadrature_axes(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """The nodes along each axis of the box and their log weights (trapezoidal over [a, b] with Gregory's
        end corrections, a tail's mass L / n added at each end), divided by the box's mass: the product of the
        two rules integrates p(y) f(y) for an f smooth on the scale of a step."""
        self._check_ready()
        if self._quadrature is None:
            boxes = self.cells[:, 0]  # (2, 5): a, b, -, -, n along each axis
            pilot_axes = [np.linspace(a, b, 129) for a, b in boxes[:, :2]]
            mean, sd = self.x_mean_sd(np.stack(np.meshgrid(*pilot_axes, indexing="ij"), axis=-1))  # (129, 129, x_dim)
            axes = []
            for axis, (a, b, _, _, n) in enumerate(boxes):
                slope = np.sqrt((np.gradient(mean, pilot_axes[axis], axis=axis) ** 2).sum(axis=-1))  # |d m / d y_a|
                width = np.min(sd.min(axis=-1) / np.maximum(slope, 1e-12))
                count = np.ceil((b - a) / width * self.quadrature_oversample)
                count = int(np.clip(count, self.min_nodes, self.max_nodes))
                nodes = np.linspace(a, b, count + 1)
                weights = np.full(len(nodes), (b - a) / count)
                weights[:3] *= _GREGORY
                weights[-3:] *= _GREGORY[::-1]
                tail = (b - a) / n  # each side's mass past the data, relative to the flat density's 1
                weights[[0, -1]] += tail
                axes.append((nodes, np.log(weights) - np.log(b - a + 2 * tail)))
            self._quadrature = tuple(axes)
        return self._quadrature

    def _node_params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every quadrature node (N, 2), its log weight (N,), and m, s there (N, x_dim) each."""
        (first, w1), (second, w2) = self.quadrature_axes()
        nodes = np.stack(np.meshgrid(first, second, indexing="ij"), -1).reshape(-1, 2)
        mean, sd = self.x_mean_sd(nodes)
        return nodes, (w1[:, None] + w2[None, :]).ravel(), mean, sd

    @staticmethod
    def _log_normal(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """log N(x; mean, diag sd^2), summed over the last axis; the arrays broadcast."""
        with np.errstate(over="ignore"):
            z = (x - mean) / sd
            return -0.5 * (z * z).sum(-1) - np.log(sd).sum(-1) - x.shape[-1] * LOG_SQRT_2PI

    def _log_joint_nodes(self, x: np.ndarray, params) -> np.ndarray:
        """log p(y_j) w_j + log p(x | y_j) for rows x (m, x_dim) against every node: (m, N)."""
        _, log_w, mean, sd = params
        return log_w + self._log_normal(x[:, None, :], mean[None], sd[None])

    # ---- the protocol ---------------------------------------------------------------------------
    def _given_x(self, x):
        if self.x_parents == "c":  # log p(c | x), exact however far x lies
            log_pc, means = self.log_pc.cpu().numpy(), self.x_means.cpu().numpy()
            return (log_isotropic_posterior(x, log_pc, means, float(self.x_sd)),)
        params = self._node_params()
        rows = max(1, _ELEMENTS // len(params[1]))
        log_px = np.concatenate(
            [logsumexp_last(self._log_joint_nodes(x[i : i + rows], params)) for i in range(0, len(x), rows)]
        )
        return (log_px,)

    def _log_prob(self, y, x, given):
        if self.x_parents == "c":
            return logsumexp_last(given + _log_box(y, self.cells))
        mean, sd = self.x_mean_sd(y)
        log_joint = _log_box(y, self.cells)[..., 0] + self._log_normal(x, mean, sd)
        with np.errstate(invalid="ignore"):  # p(x) underflows (x some 1e150 away): so does p(x, y)
            return np.where(np.isneginf(given), -np.inf, log_joint - given)

    def _sample(self, x, n, rng, given):
        cells = self.cells
        if self.x_parents == "c":
            c = sample_categorical(given, n, rng)  # (n, m)
            return np.stack([_sample_cells(cells[axis], c, rng) for axis in range(2)], axis=-1)
        params = self._node_params()
        axes = tuple(nodes for nodes, _ in self.quadrature_axes())
        out = np.empty((n, len(x), 2))
        for i in range(len(x)):
            try:
                out[:, i] = sample_product_grid(self._log_joint_nodes(x[i : i + 1], params)[0], axes, n, rng)
            except CannotSample as error:
                raise CannotSample(f"{error}: p(x, y) underflows at every quadrature node for x = {x[i]}") from error
        return out
