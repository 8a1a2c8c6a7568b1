"""An energy model in any dimension of y: two embeddings, trained by InfoNCE, normalised by quasi-Monte Carlo.

Implicit behavioural cloning (Florence et al., 2021) trains an energy E(x, y) with InfoNCE, each
point against counter-examples drawn uniformly over a box of y, which is how it is used where y has
too many dimensions for a grid. :class:`~utilis.energy_utilis.EnergyModel` normalises its spline on a
grid, whose nodes number n^d for each x: it serves y on a line or in the plane. Here the energy is the
inner product of two learned embeddings,

.. math::
    -E(x, y) = \\phi(x)^\\top \\psi(y) + b(y), \\qquad
    p(y \\mid x) = \\frac{e^{-E(x, y)}}{Z(x)} \\text{ on the box } B, \\qquad
    Z(x) = \\int_B e^{-E(x, y)}\\, dy,

φ an MLP on x (with Fourier features of each coordinate, as the grid model's) and ψ, b an MLP on the
z-scored y (with Fourier features of each axis: a narrow peak needs features that change as fast).
The form is the grid model's in another basis (there, ψ is the B-splines and φ their coefficients):
ψ at a set of nodes is computed once for every x, so Z at m inputs over N nodes costs an (m x N x k)
product instead of m N passes of a network over (x, y). The box B is the training y's range widened by
``margin`` of it on each side, along each axis; the density is 0 outside it.

**Training** (InfoNCE, van den Oord et al., 2018): a batch's points against ``n_negatives``
counter-examples ỹ_j drawn uniformly over the box, shared by the batch (one ψ pass for all of them),

.. math::
    \\mathcal{L} = -\\frac{1}{n}\\sum_i \\log
        \\frac{e^{-E(x_i, y_i)}}{e^{-E(x_i, y_i)} + \\sum_j e^{-E(x_i, \\tilde y_j)}}.

For any number of counter-examples the loss is smallest where -E(x, y) = log p(y | x) - log q(y) + c(x)
with q uniform: the energy is the density up to a constant in each x, which Z removes (more
counter-examples lower the variance, not the bias).

**Normalising** (quasi-Monte Carlo): Z(x) = |B| times the mean of e^{-E} over the first N points of a
scrambled Sobol sequence mapped onto the box (``n_nodes`` = N, a power of two; scipy's
``qmc.Sobol``, its seed fixed so that the density is a deterministic function). The rule's error falls
about as N^{-1} for a smooth integrand, faster than Monte Carlo's N^{-1/2}, in any dimension; it needs
nodes as dense as the narrowest peak the energy makes (``tests/test_embedding_energy.py`` compares it
with the product trapezoidal rule in 1 to 3 dimensions).

**Sampling** (rejection, exact): proposals uniform over the box, each accepted with probability
e^{-E - log M(x)}, log M(x) half a nat above the largest -E found: on the normaliser's nodes, then by
climbing (Adam on -E) from the best of them, since a narrow peak's top lies between nodes. Where a
proposal rises above M, M is raised and the draws for that x start again, so that every draw comes from
the density itself. The acceptance rate is Z / (|B| M): about one in 1.6 |B| p_max.

Settings, measured on the planar datasets (seed 0; gap on 20,000 fresh points, training seconds on 2
cores): at 20,000 points, 30 / 50 / 100 epochs from a step of 3e-3 gave 0.045 / 0.043 / 0.048 on the
robot arm (18 / 29 / 56 s) and 0.070 / 0.063 / 0.067 in the room (17 / 27 / 35 s, the last stopped
early); a step of 1e-2 gave 0.058 on the arm. At 900 points a weight decay of 1 / n (the grid model's
prior) doubled the arm's gap (1.10 against 0.51). The normaliser's 2^14 nodes held the trained arm
model's mass within 0.4 % of 1 at each x checked (a product trapezoidal rule of 1,600^2 nodes): about
0.004 nats on a log-density, a tenth of its gap.

References:
    Florence, Lynch, Zeng et al., "Implicit Behavioral Cloning", CoRL 2021 (arXiv:2109.00137).
    van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018.
    Owen, "Scrambling Sobol' and Niederreiter-Xing points", J. Complexity 14, 1998.

Example:
    >>> from generate_dataset import inverted_sinusoid_mixture
    >>> data = inverted_sinusoid_mixture(n_samples=500, seed=0)
    >>> model = EmbeddingEnergy(hidden=16, n_nodes=1024)
    >>> history = model.fit(data.x_train, data.y_train, epochs=3, progress=False)
    >>> model.log_prob(data.y_test[:5], data.x_test[:5]).shape, model.sample(data.x_test[:5], 10).shape
    ((5,), (10, 5))
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import qmc
from torch import Tensor

from utilis.energy_utilis import box_in_z
from utilis.networks import NetworkDensity, Standardiser, fourier_features, logsumexp, mlp
from utilis.numerics import CannotSample
from utilis.protocol import check_count, check_positive
from utilis.spaces import Euclidean
from utilis.training import TrainingSettings, seeded_generator

__all__ = ["EmbeddingEnergy", "default_nodes"]

ENVELOPE_MARGIN = 0.5
"""Nats by which the rejection sampler's bound exceeds the largest -E found on the normaliser's nodes.

A Gaussian peak of sd s whose top lies a distance r from the nearest node rises r^2 / 2 s^2 above it: on
the robot arm (peaks of about 0.08 sd of y, nodes about 0.05 apart in the plane) under 0.1 nat. Each nat
of margin costs a factor e in proposals."""

MIN_ACCEPTANCE = 1e-6
"""The lowest acceptance rate sampling works at: it refuses at once where the rate the normaliser predicts
is lower, and gives up on an input after n / MIN_ACCEPTANCE proposals for n draws."""

_BLOCK = 1 << 22
"""Entries of an (inputs x nodes) block of scores computed at once."""

_NODE_BLOCK = 1 << 14
"""Normaliser nodes whose embeddings are held at once."""

_PROPOSAL_BLOCK = 1 << 17
"""Proposals (of several inputs) passed through ψ at once when sampling."""


def default_nodes(y_dim: int) -> int:
    """The normaliser's default N: 2^14 for y on a line or in the plane, 8 times more for each further
    dimension, at most 2^20. For a Gaussian peak of sd 0.3 on a box 6.5 wide (in z-scored units) the
    error in log Z is 1e-4 nats in 2 dimensions at 2^14, and in 3 dimensions 0.02 at 2^14, 0.004 at 2^16,
    0.0016 at 2^17 (``tests/test_embedding_energy.py``)."""
    return 1 << min(20, 14 + 3 * max(0, y_dim - 2))


class EmbeddingEnergy(NetworkDensity):
    """p(y | x) ∝ exp(φ(x)ᵀψ(y) + b(y)) on a box of y in any dimension, trained by InfoNCE.

    Args:
        n_features: k, the length of the embeddings φ(x) and ψ(y).
        hidden, depth: width and number of hidden layers of each embedding's MLP.
        x_frequencies, max_frequency: φ sees z-scored x and its sine and cosine at ``x_frequencies``
            frequencies spaced evenly in log from 1 to ``max_frequency`` (radians per sd of x).
        y_frequencies, max_y_frequency: the same for ψ and each axis of z-scored y.
        n_negatives: counter-examples per training step, shared by the batch.
        n_nodes: N, the scrambled Sobol points on which Z(x) is computed (a power of two; default
            :func:`default_nodes` of y_dim).
        margin: the box is the training y's range widened by ``margin`` of it on each side, per axis.
        x_dim, y_dim: the dimensions of x and y (any).
    """

    def __init__(
        self,
        *,
        n_features: int = 64,
        hidden: int = 64,
        depth: int = 3,
        x_frequencies: int = 16,
        max_frequency: float = 8.0,
        y_frequencies: int = 16,
        max_y_frequency: float = 16.0,
        n_negatives: int = 1024,
        n_nodes: int | None = None,
        margin: float = 0.25,
        x_dim: int = 1,
        y_dim: int = 1,
    ):
        super().__init__()
        self.x_dim, y_dim = check_count(x_dim, "x_dim"), check_count(y_dim, "y_dim")
        self.y_space = Euclidean(y_dim)
        self.n_features = check_count(n_features, "n_features")
        self.n_negatives = check_count(n_negatives, "n_negatives")
        self.n_nodes = check_count(default_nodes(y_dim) if n_nodes is None else n_nodes, "n_nodes", minimum=2)
        if self.n_nodes & (self.n_nodes - 1):
            raise ValueError(f"n_nodes must be a power of two (a Sobol sequence's balance), got {n_nodes}")
        self.margin = check_positive(margin, "margin")
        self.scaling = Standardiser(self.x_dim, y_dim)
        # the box in z-scored y, one row (lo, hi) an axis, set by fit from the data (kept in the state dict)
        self.register_buffer("z_bounds", torch.tensor([[-1.0, 1.0]] * y_dim, dtype=torch.float64))
        for name, count, top in (
            ("x_frequencies", x_frequencies, max_frequency),
            ("y_frequencies", y_frequencies, max_y_frequency),
        ):
            n_frequencies = check_count(count, name, minimum=0)
            bound = math.log10(check_positive(top, "max_frequency" if name[0] == "x" else "max_y_frequency"))
            self.register_buffer(name.replace("frequencies", "omega"), torch.logspace(0.0, bound, n_frequencies))
        hidden, depth = check_count(hidden, "hidden"), check_count(depth, "depth")
        self.x_net = mlp(self.x_dim * (1 + 2 * len(self.x_omega)), self.n_features, hidden, depth)
        self.y_net = mlp(y_dim * (1 + 2 * len(self.y_omega)), self.n_features + 1, hidden, depth)
        self._nodes: np.ndarray | None = None  # the Sobol points on [0, 1)^d, made when first asked

    # ---- the energy, in torch -------------------------------------------------------------------
    def embed_x(self, x: Tensor) -> Tensor:
        """(φ(x), 1) for a batch of x (n,) or (n, x_dim): (n, k + 1), in the networks' dtype."""
        z = self.scaling.z_rows(x).to(self.x_net[0].weight.dtype)
        phi = self.x_net(fourier_features(z, self.x_omega))
        return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)

    def embed_y(self, z: Tensor) -> Tensor:
        """(ψ(y), b(y)) at z-scored y, rows (n, y_dim): (n, k + 1)."""
        z = z.to(self.y_net[0].weight.dtype)
        return self.y_net(fourier_features(z, self.y_omega))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """E(x, y) for paired batches of x and y inside the box: (n,), in nats (up to a constant in x)."""
        return -(self.embed_x(x) * self.embed_y(self._z_rows(y))).sum(dim=1)

    def _z_rows(self, y: Tensor) -> Tensor:
        return self.scaling.z_y(y).reshape(len(y), self.y_dim)

    def _uniform_in_box(self, u: Tensor) -> Tensor:
        """Points of [0, 1)^d mapped onto the box, in z-scored y."""
        lo, hi = self.z_bounds[:, 0], self.z_bounds[:, 1]
        return (lo + (hi - lo) * u.to(lo)).to(self.x_net[0].weight.dtype)

    def infonce_loss(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """InfoNCE against ``n_negatives`` counter-examples uniform over the box, shared by the batch, from
        ``generator`` (without one, for a steady validation loss, one fixed draw: a generator seeded 0)."""
        generator = generator or torch.Generator().manual_seed(0)
        u = torch.rand((self.n_negatives, self.y_dim), generator=generator, dtype=torch.float64).to(x.device)
        phi = self.embed_x(x)  # (n, k + 1)
        positive = (phi * self.embed_y(self._z_rows(y))).sum(dim=1)  # (n,)
        negatives = phi @ self.embed_y(self._uniform_in_box(u)).T  # (n, N)
        logits = torch.cat([positive[:, None], negatives], dim=1)
        return (logsumexp(logits, dim=1) - positive).mean()

    # ---- fitting --------------------------------------------------------------------------------
    training_defaults = TrainingSettings(lr=3e-3, batch_size=None, epochs=50, patience=20)
    """50 epochs of the cosine schedule from a step of 3e-3, no weight decay (see the module's notes)."""

    def _description(self) -> str:
        return "energy model, embeddings (InfoNCE)"

    def _initialise(self, x: np.ndarray, y: np.ndarray) -> None:
        """The box: the training y's range widened by ``margin`` of it on each side, per axis, in z-scored y."""
        self.z_bounds.copy_(torch.tensor(box_in_z(y, self.margin), dtype=torch.float64))

    def _loss(self, seed: int | None):
        """InfoNCE, its counter-examples in training from a generator of the loss's own seeded from ``seed``,
        in validation one fixed draw."""
        generator = seeded_generator(seed)

        def loss(model: EmbeddingEnergy, inputs: Tensor, targets: Tensor) -> Tensor:
            return model.infonce_loss(inputs, targets, generator if model.training else None)

        return loss

    # ---- numpy side -------------------------------------------------------------------------------
    @property
    def y_bounds(self) -> tuple[tuple[float, float], ...]:
        """The box outside which the density is 0, one (lo, hi) an axis of y, in y's own units."""
        means, sds = self.scaling.y_mean.reshape(-1).tolist(), self.scaling.y_sd.reshape(-1).tolist()
        return tuple((m + sd * lo, m + sd * hi) for m, sd, (lo, hi) in zip(means, sds, self.z_bounds.tolist()))

    @property
    def nodes(self) -> np.ndarray:
        """The normaliser's N scrambled Sobol points on [0, 1)^d (seed 0): (N, y_dim)."""
        if self._nodes is None or self._nodes.shape != (self.n_nodes, self.y_dim):
            sobol = qmc.Sobol(self.y_dim, scramble=True, seed=0)
            self._nodes = sobol.random_base2(int(math.log2(self.n_nodes)))
        return self._nodes

    def _log_volume(self) -> float:
        """log |B| in z-scored y."""
        return float(torch.log(self.z_bounds[:, 1] - self.z_bounds[:, 0]).sum())

    @torch.no_grad()
    def _psi(self, u: np.ndarray) -> Tensor:
        """(ψ, b) at points u of [0, 1)^d mapped onto the box: (len(u), k + 1) float64."""
        return self.embed_y(self._uniform_in_box(torch.as_tensor(u, device=self.device))).double()

    @torch.no_grad()
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(φ(x), 1) (m, k + 1), log Z(x) in z-scored y (m,), the largest score on the nodes (m,) and the node
        where it lies (m, d) in [0, 1)^d.

        The nodes are taken in blocks (ψ of a block computed once for every x), each block's log-sum-exp
        added to the running one, so that memory stays bounded whatever N is."""
        phi = self.embed_x(self._as_tensor(x)).double()
        log_z = torch.full((len(phi),), -math.inf, dtype=phi.dtype, device=phi.device)
        top = log_z.clone()
        nodes = self.nodes
        where = np.zeros((len(phi), self.y_dim))
        for first in range(0, len(nodes), _NODE_BLOCK):
            psi = self._psi(nodes[first : first + _NODE_BLOCK])
            rows = max(1, _BLOCK // len(psi))
            for start in range(0, len(phi), rows):
                scores = phi[start : start + rows] @ psi.T  # (rows, block)
                part = slice(start, start + rows)
                log_z[part] = torch.logaddexp(log_z[part], logsumexp(scores, dim=1))
                best, index = scores.max(dim=1)
                higher = (best > top[part]).cpu().numpy()
                where[part][higher] = nodes[first + index.cpu().numpy()[higher]]
                top[part] = torch.maximum(top[part], best)
        log_z = log_z - math.log(len(nodes)) + self._log_volume()
        return phi.cpu().numpy(), log_z.cpu().numpy(), top.cpu().numpy(), where

    @torch.no_grad()
    def _scores(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """φ(x)ᵀψ(y) + b(y) at z-scored y (..., d) for (φ, 1) (..., k + 1) that broadcast against it."""
        psi = self.embed_y(torch.as_tensor(z.reshape(-1, self.y_dim), device=self.device)).double()
        psi = psi.cpu().numpy().reshape(*z.shape[:-1], -1)
        return np.einsum("...k,...k->...", psi, phi)

    def _log_prob(self, y: np.ndarray, x: np.ndarray, phi: np.ndarray, log_z: np.ndarray, *_) -> np.ndarray:
        y = y.reshape(*y.shape, 1) if self.y_dim == 1 else y
        mean, sd = self.scaling.y_mean.cpu().numpy().reshape(-1), self.scaling.y_sd.cpu().numpy().reshape(-1)
        bounds = self.z_bounds.cpu().numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            z = (y - mean) / sd
        inside = np.all((z >= bounds[:, 0]) & (z <= bounds[:, 1]), axis=-1)
        scores = self._scores(np.where(inside[..., None], z, bounds[:, 0]), phi)
        return np.where(inside, scores - log_z - np.log(sd).sum(), -np.inf)

    def _sample(self, x: np.ndarray, n: int, rng: np.random.Generator, phi, log_z, top, where) -> np.ndarray:
        """Rejection from the box, every input's proposals in one pass of ψ a round (each input its own); the
        bound starts from the highest score found by climbing from the best node."""
        m, log_volume = len(x), self._log_volume()
        log_bound = np.maximum(top, self._climb(phi, where)) + ENVELOPE_MARGIN
        log_rate = log_z - log_volume - log_bound  # the expected acceptance rate, by the normaliser's Z
        hopeless = np.flatnonzero(log_rate < math.log(MIN_ACCEPTANCE))
        if hopeless.size:  # a peak far narrower than the nodes: Z itself is not resolved there
            i = hopeless[0]
            raise CannotSample(
                f"cannot sample: at x = {x[i]} the density's peak is {log_bound[i] - top[i]:.1f} nats above the "
                f"normaliser's nodes (an expected acceptance rate of e^{log_rate[i]:.0f}): it is narrower than "
                f"n_nodes = {self.n_nodes} resolve"
            )
        draws: list[list[np.ndarray]] = [[] for _ in range(m)]
        got, proposed = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
        pending = np.arange(m)
        while pending.size:
            accept = np.exp(np.minimum(0.0, log_z[pending] - log_volume - log_bound[pending]))  # expected rates
            counts = np.clip(np.ceil(1.2 * (n - got[pending]) / np.maximum(accept, 1e-12)), 64, 1 << 16)
            groups = np.cumsum(counts) // _PROPOSAL_BLOCK  # inputs whose proposals share one pass of ψ
            for group in np.unique(groups):
                self._propose(pending[groups == group], counts[groups == group].astype(np.int64),
                              phi, log_bound, draws, got, proposed, rng)  # fmt: skip
            pending = np.flatnonzero(got < n)
            stuck = pending[proposed[pending] > n / MIN_ACCEPTANCE]
            if stuck.size:
                i = stuck[0]
                raise CannotSample(f"cannot sample: {proposed[i]:,} proposals gave {got[i]} of {n} draws at x = {x[i]}")
        u = np.stack([np.concatenate(parts)[:n] for parts in draws], axis=1)  # (n, m, d) in [0, 1)^d
        bounds = np.array(self.y_bounds)  # (d, 2), in y's own units
        out = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * u
        return out if self.y_dim > 1 else out[..., 0]

    def _climb(self, phi: np.ndarray, start: np.ndarray, steps: int = 50) -> np.ndarray:
        """The score after ``steps`` of Adam uphill from ``start`` (m, d) in [0, 1)^d, held inside the box,
        for each input: a peak's top lies between nodes, up to r^2 / 2 s^2 above the nearest one, and a bound
        below it would be raised and the draws begun again, once for each rise a round finds."""
        phi_t = torch.as_tensor(phi, device=self.device)
        u = torch.as_tensor(start, device=self.device).clone().requires_grad_(True)
        optimiser = torch.optim.Adam([u], lr=1.0 / self.n_nodes ** (1.0 / self.y_dim))
        best = torch.full((len(phi),), -math.inf, dtype=phi_t.dtype, device=self.device)
        for _ in range(steps):
            with torch.enable_grad():
                score = (phi_t * self.embed_y(self._uniform_in_box(u)).double()).sum(dim=1)
                best = torch.maximum(best, score.detach())
                optimiser.zero_grad()
                (-score.sum()).backward()
            optimiser.step()
            with torch.no_grad():
                u.clamp_(0.0, 1.0)
        return best.cpu().numpy()

    def _propose(self, inputs, counts, phi, log_bound, draws, got, proposed, rng) -> None:
        """One round for ``inputs``: ``counts`` uniform proposals each, accepted with e^{score - log M}. An
        input whose proposal scores above its bound M gets a bound ``ENVELOPE_MARGIN`` above that score, and its draws
        so far are dropped (they came from the density capped at the old bound)."""
        u = rng.random((int(counts.sum()), self.y_dim))
        owner = np.repeat(inputs, counts)
        scores = self._scores(self._box_z(u), phi[owner])
        keep = np.log(rng.random(len(u))) < scores - log_bound[owner]
        ends = np.cumsum(counts)
        for i, rows in zip(inputs, np.split(np.arange(len(u)), ends[:-1])):
            proposed[i] += len(rows)
            highest = scores[rows].max()
            if highest > log_bound[i]:  # the bound was not one: raise it, and draw again from the start
                log_bound[i], draws[i], got[i] = highest + ENVELOPE_MARGIN, [], 0
                continue
            draws[i].append(u[rows][keep[rows]])
            got[i] += int(keep[rows].sum())

    def _box_z(self, u: np.ndarray) -> np.ndarray:
        bounds = self.z_bounds.cpu().numpy()
        return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * u
