"""What every network model repeats: the MLP stack, z-scoring, fit-input checks, seeded starts, and
the two pieces of arithmetic their losses share (a log-sum-exp and a Gaussian mixture's log-density).

:class:`NetworkDensity` is the checked base of :mod:`utilis.protocol` for ``nn.Module`` models: it
refuses to answer before :meth:`fit` (a ``fitted`` flag kept in the state dict, so a loaded model
answers), and re-initialises the weights from the fit's seed without touching torch's global
generator, so the same ``fit(..., seed=s)`` gives the same weights byte for byte on the CPU.

Example:
    >>> import torch
    >>> net = mlp(inputs=1, outputs=2, hidden=8, depth=2)
    >>> net(torch.zeros(5, 1)).shape
    torch.Size([5, 2])
    >>> check_fit_data([[1.0], [2.0], [3.0]], [0.0, 1.0, 2.0])[0].shape  # an (n, 1) column is fine
    (3,)
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily, Normal

from utilis.protocol import CheckedDensity, NotFittedError, check_count, finite_array, x_dim_of, y_space_of
from utilis.training import History, Loss, TrainingSettings, default_batch_size, nll_loss, train

__all__ = [
    "NEGLIGIBLE",
    "RUN_OPTIONS",
    "Z_LIMIT",
    "GaussianMixture",
    "NetworkDensity",
    "Standardiser",
    "check_fit_data",
    "check_fit_rows",
    "check_paired",
    "default_batch_size",
    "fourier_features",
    "logsumexp",
    "mlp",
]

Z_LIMIT = 1e6
"""Network inputs are clipped at this many training standard deviations from the training mean. A
float32 network fed 1e300 overflows to inf and then NaN; what it says a million sds out is
extrapolation either way, and past the clip it says the same as at the clip."""


NEGLIGIBLE = 80.0
"""A term more than this many nats below the largest of a sum adds less than e^-80 = 1.8e-35 of it:
below the rounding of float32 (6e-8) and float64 (1.1e-16) by nineteen orders and more."""


def logsumexp(values: Tensor, dim: int) -> Tensor:
    """``torch.logsumexp(values, dim)``, with every term more than :data:`NEGLIGIBLE` nats below the
    largest raised to that floor first.

    The value is torch's to rounding (the raised terms stay below the sum's last bit, for up to 1e18
    terms; bit for bit the same in every test and training here); the raised terms get no gradient
    instead of one under e^-80. What it buys is time on the CPU, where many terms lie far down:
    torch's vectorised ``exp`` takes a slow path on arguments below about -88 in float32 (near -708 in
    float64), whose results are subnormal, and a trained mixture's far components, or an energy's far
    grid nodes, put most terms there. It pays where most terms are that far down (the MDN's loss, the
    energy model on the linear set's needle-thin peaks); where few are (the energy model on the camera
    set), the extra maximum and clamp over the grid can cost more than they save.
    ``benchmarks/bench_speed.py --what step`` measures both. Where the largest term is so large that
    subtracting 80 does not change it (beyond 2^31 in float32), nothing is raised. -inf, +inf, NaN and
    an empty ``dim`` come out as from torch's.
    """
    if values.shape[dim] == 0:
        return torch.logsumexp(values, dim)
    top = values.detach().amax(dim, keepdim=True)
    floor = top - NEGLIGIBLE
    floor = torch.where(floor < top, floor, -math.inf)  # (-inf, NaN, or too large to tell 80 apart)
    return torch.logsumexp(values.clamp(min=floor), dim)  # a tie at the floor keeps its gradient


class GaussianMixture(MixtureSameFamily):
    """sum_k w_k N(y; mu_k, sigma_k^2): a ``MixtureSameFamily`` of ``Normal`` whose ``log_prob`` is
    torch's, operation for operation, but for the sum over the components, which is :func:`logsumexp`
    (the same values, without the slow ``exp``). Sampling, mean and variance are torch's.

    Args:
        logits: the mixing weights' logits, (..., K) (normalised by ``Categorical``).
        means, scales: (..., K). Valid by construction where it is built; not checked (the check
            would cost a visible share of every training step).
    """

    def __init__(self, logits: Tensor, means: Tensor, scales: Tensor):
        mixing = Categorical(logits=logits, validate_args=False)
        super().__init__(mixing, Normal(means, scales, validate_args=False), validate_args=False)

    def expand(self, batch_shape, _instance=None) -> GaussianMixture:
        return super().expand(batch_shape, _instance=self._get_checked_instance(GaussianMixture, _instance))

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(y) for y broadcasting against the batch shape."""
        log_prob_y = self.component_distribution.log_prob(value.unsqueeze(-1))
        log_weights = torch.log_softmax(self.mixture_distribution.logits, dim=-1)
        return logsumexp(log_prob_y + log_weights, dim=-1)


def fourier_features(z: Tensor, frequencies: Tensor) -> Tensor:
    """Rows z (n, d) beside the sine and cosine of each coordinate at each frequency: (n, d (1 + 2F)), so that
    an MLP can follow a function that changes as fast as the highest frequency (Tancik et al., 2020)."""
    angles = (z[:, :, None] * frequencies.to(z.dtype)).reshape(len(z), -1)
    return torch.cat([z, torch.sin(angles), torch.cos(angles)], dim=1)


def mlp(inputs: int, outputs: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` SiLU units, then a linear layer to ``outputs``."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inputs if i == 0 else hidden, hidden), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, outputs))


class Standardiser(nn.Module):
    """The training data's means and standard deviations of x and y, kept as buffers (in the state dict).

    A scalar variable keeps scalar statistics; a vector one (``x_dim`` or ``y_dim`` above 1) one per axis,
    shape (d,), so that z-scoring is per axis, as ``Euclidean.standardise`` does it."""

    def __init__(self, x_dim: int = 1, y_dim: int = 1):
        super().__init__()
        x_dim, y_dim = check_count(x_dim, "x_dim"), check_count(y_dim, "y_dim")
        for name, value, dim in (
            ("x_mean", 0.0, x_dim),
            ("x_sd", 1.0, x_dim),
            ("y_mean", 0.0, y_dim),
            ("y_sd", 1.0, y_dim),
        ):
            self.register_buffer(name, torch.full(() if dim == 1 else (dim,), value, dtype=torch.float64))

    @torch.no_grad()
    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Set the statistics from training data, (n,) or (n, d) (a constant axis keeps a standard deviation of 1)."""
        for prefix, values in (("x", x), ("y", y)):
            mean, sd = getattr(self, f"{prefix}_mean"), getattr(self, f"{prefix}_sd")
            if mean.ndim == 0:
                mean.fill_(float(values.mean()))
                sd.fill_(float(values.std() or 1.0))
                continue
            columns = [np.ascontiguousarray(column) for column in values.reshape(len(values), -1).T]
            mean.copy_(torch.as_tensor([column.mean() for column in columns], dtype=torch.float64))
            sd.copy_(torch.as_tensor([column.std() or 1.0 for column in columns], dtype=torch.float64))

    def z_x(self, x: Tensor) -> Tensor:
        """(x - mean) / sd as float32, clipped at +-``Z_LIMIT``."""
        return ((x.double() - self.x_mean) / self.x_sd).clamp(-Z_LIMIT, Z_LIMIT).float()

    def z_rows(self, x: Tensor) -> Tensor:
        """x z-scored as an MLP takes it, (n, x_dim) float32, from a batch of x (n,) (a scalar x) or (n, x_dim);
        ``ValueError`` for a batch of another shape."""
        scalar = self.x_mean.ndim == 0
        if x.ndim != (1 if scalar else 2) or (not scalar and x.shape[1] != len(self.x_mean)):
            shape = "(n,)" if scalar else f"(n, {len(self.x_mean)})"
            raise ValueError(f"x must be a tensor of inputs of shape {shape}, got shape {tuple(x.shape)}")
        z = self.z_x(x)
        return z[:, None] if scalar else z

    def z_y(self, y: Tensor) -> Tensor:
        """(y - mean) / sd as float32, clipped at +-``Z_LIMIT``."""
        return ((y.double() - self.y_mean) / self.y_sd).clamp(-Z_LIMIT, Z_LIMIT).float()


def check_paired(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training inputs and targets of one length, at least 2."""
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of points, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"fitting needs at least 2 points, got {len(x)}")
    return x, y


def check_fit_data(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Training inputs and targets as two 1-D float64 arrays of one length >= 2.

    Each may be 1-D or a single column (n, 1); anything wider is refused rather than flattened.
    """
    arrays = []
    for name, values in (("x", x), ("y", y)):
        array = finite_array(values, name)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D or a single column (n, 1), got shape {array.shape}: "
                "this model serves a scalar x and a scalar y"
            )
        arrays.append(array)
    return check_paired(*arrays)


def check_fit_rows(x: ArrayLike, y: ArrayLike, x_dim: int = 1, y_dim: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Training inputs and targets for a model of ``x_dim`` and ``y_dim``: a scalar as a 1-D array (n,) (a
    single column accepted, as :func:`check_fit_data` takes it), a vector as rows (n, d); one length >= 2."""
    if (x_dim, y_dim) == (1, 1):
        return check_fit_data(x, y)
    arrays = []
    for name, values, dim in (("x", x, x_dim), ("y", y, y_dim)):
        array = finite_array(values, name)
        if dim == 1 and array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.shape[1:] != (() if dim == 1 else (dim,)):
            expected = "(n,)" if dim == 1 else f"(n, {dim})"
            raise ValueError(f"{name} must have shape {expected} for this model ({name}_dim={dim}), got {array.shape}")
        arrays.append(array)
    return check_paired(*arrays)


RUN_OPTIONS = ("device", "progress", "description", "cpu_threads")
"""The keywords of :func:`utilis.training.train` that say where a run happens and how it reports, not what
it trains: a model's ``fit`` takes them beside its :class:`~utilis.training.TrainingSettings`."""


class NetworkDensity(CheckedDensity, nn.Module):
    """The checked base for ``nn.Module`` models: not-fitted refusal, seeded starts, device, float64 out,
    and the one :meth:`fit` every network model runs.

    :meth:`fit` is one sequence that a model configures instead of copying:

    1. check the data (:meth:`_check_fit_data`) and resolve the training settings
       (:meth:`training_settings_for`: the class's ``training_defaults`` under the caller's overrides),
       so that a bad argument is refused before anything is reset;
    2. draw the start from the seed (:meth:`_start_fit`);
    3. set the scaling from the data (:meth:`_set_scaling`: the ``Standardiser`` called ``scaling``);
    4. the model's own start (:meth:`_initialise`: nothing by default);
    5. train (:meth:`_train`: the shared loop on :meth:`_loss`, the negative log-likelihood by default);
    6. what the model does with the trained network (:meth:`_after_training`: nothing by default);
    7. finish (:meth:`_finish_fit`: mark fitted, eval mode).

    A model whose ``fit`` takes more than (x, y) (the generative model's labels c) passes them on to
    :meth:`_fit` as keywords, and every hook receives them as keywords. The settings the last fit used
    are ``training_settings``.
    """

    training_defaults: ClassVar[TrainingSettings] = TrainingSettings()
    """The model's training settings when the caller overrides none (``batch_size`` None: the default rule)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fitted", torch.tensor(False))
        self.training_settings: TrainingSettings | None = None

    @property
    def device(self) -> torch.device:
        return self.fitted.device

    def _check_ready(self) -> None:
        if not bool(self.fitted):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x, y) first")

    def _as_tensor(self, values: np.ndarray) -> Tensor:
        """A float64 numpy array as a tensor on the model's device (float64: z-scoring clips it first)."""
        array = np.ascontiguousarray(values).reshape(np.shape(values))  # ascontiguousarray makes a scalar 1-D
        return torch.as_tensor(array, dtype=torch.float64, device=self.device)

    # ---- fitting: the sequence ------------------------------------------------------------------
    def fit(self, x: ArrayLike, y: ArrayLike, *, seed: int | None = 0, **train_kwargs) -> History:
        """Draw initial weights from ``seed``, set the z-scoring from (x, y), start the model where it
        starts, and train it by the shared loop (:func:`utilis.training.train`).

        ``train_kwargs`` are :class:`~utilis.training.TrainingSettings` overriding the model's
        ``training_defaults`` (epochs, lr, batch_size, patience...) and the run's options (device,
        progress, description, cpu_threads). The settings used are kept as ``training_settings``.
        Returns the training :class:`~utilis.training.History`.
        """
        return self._fit(x, y, seed=seed, train_kwargs=train_kwargs)

    def _fit(self, x: ArrayLike, y: ArrayLike, *, seed: int | None, train_kwargs: dict, **extra) -> History:
        """The fit sequence (see the class's docstring); ``extra`` reaches every hook as keywords."""
        x, y, extra = self._check_fit_data(x, y, **extra)
        settings, options = self._settings_and_options(len(x), train_kwargs, self._description(**extra))
        self._start_fit(seed)
        self.training_settings = settings
        self._set_scaling(x, y, **extra)
        self._initialise(x, y, **extra)
        history = self._train(x, y, seed=seed, settings=settings, options=options, **extra)
        self._after_training(x, y, history, seed=seed, train_kwargs=train_kwargs, **extra)
        self._finish_fit()
        return history

    def training_settings_for(self, n_points: int, **overrides) -> TrainingSettings:
        """The settings a fit on ``n_points`` points (validation split included) trains with: the
        class's ``training_defaults`` with ``overrides`` on top, the batch size resolved."""
        return dataclasses.replace(self.training_defaults, **overrides).resolved(n_points)

    def _settings_and_options(
        self, n_points: int, train_kwargs: dict, description: str, defaults: TrainingSettings | None = None
    ) -> tuple[TrainingSettings, dict]:
        """``train_kwargs`` parted into the training settings (resolved over ``defaults``, the class's
        by default) and the run's options (``description`` unless the caller gives one)."""
        names = TrainingSettings.names()
        unknown = set(train_kwargs) - names - set(RUN_OPTIONS)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.fit got unexpected keyword arguments {sorted(unknown)}: it takes the training "
                f"settings {sorted(names)} and the run's options {list(RUN_OPTIONS)}"
            )
        overrides = {key: value for key, value in train_kwargs.items() if key in names}
        options = {"description": description} | {k: v for k, v in train_kwargs.items() if k not in names}
        if defaults is None:
            return self.training_settings_for(n_points, **overrides), options
        return dataclasses.replace(defaults, **overrides).resolved(n_points), options

    # ---- fitting: the hooks ---------------------------------------------------------------------
    def _check_fit_data(self, x: ArrayLike, y: ArrayLike, **extra) -> tuple[np.ndarray, np.ndarray, dict]:
        """The training points checked against the model's dimensions (:func:`check_fit_rows`), and the
        extra arguments checked."""
        if extra:
            raise TypeError(f"{type(self).__name__}.fit takes no {', '.join(extra)}")
        return (*check_fit_rows(x, y, x_dim_of(self), y_space_of(self).dim), extra)

    def _description(self, **extra) -> str:
        """What the progress report calls this training."""
        return type(self).__name__

    def _start_fit(self, seed: int | None) -> None:
        """Forget any earlier fit and draw fresh initial weights: from ``seed`` in a forked generator
        (torch's global generator is left as it was), or from fresh entropy when ``seed`` is None."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
        seed = check_count(seed, "seed", minimum=0)  # before anything is reset
        self.to("cpu")  # initialise on the CPU, so the weights are the same whatever the device
        with torch.random.fork_rng(devices=[]):
            # the CPU generator alone: torch.manual_seed would reseed every CUDA device as well
            torch.default_generator.manual_seed(seed)
            for module in self.modules():
                if module is not self and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.fitted.fill_(False)

    def _set_scaling(self, x: np.ndarray, y: np.ndarray, **extra) -> None:
        """The z-scoring from the training data."""
        self.scaling.fit(x, y)

    def _initialise(self, x: np.ndarray, y: np.ndarray, **extra) -> None:
        """Where the model starts beyond its drawn weights (a spread of components, a fit of the marginal)."""

    def _loss(self, seed: int | None) -> Loss:
        """The training loss ``loss(model, x_batch, y_batch)``: the negative log-likelihood unless the model
        trains on another."""
        return nll_loss

    def _train(
        self, x: np.ndarray, y: np.ndarray, *, seed: int | None, settings: TrainingSettings, options: dict, **extra
    ) -> History:
        """Train by the shared loop on :meth:`_loss`."""
        return train(self, x, y, loss=self._loss(seed), seed=seed, **settings.as_kwargs(), **options)

    def _after_training(
        self, x: np.ndarray, y: np.ndarray, history: History, *, seed: int | None, train_kwargs: dict, **extra
    ) -> None:
        """What the model sets from the trained network before it counts as fitted (nothing by default)."""

    def _finish_fit(self) -> None:
        self.fitted.fill_(True)
        self.eval()
