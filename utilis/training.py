"""The one training loop every model in the repository uses.

Adam on minibatches, a validation split, early stopping that restores the best weights, gradient
clipping, progress (a tqdm bar in a terminal, one closing line in a notebook; off with
``progress=False``), a seed that makes a run repeat exactly on the CPU, and a device choice (CUDA
where present, else the CPU).

The default loss is the negative log-likelihood of a model whose ``forward(x)`` returns a
``torch.distributions.Distribution`` over y: ``-model(x).log_prob(y).mean()``.

:class:`TrainingSettings` names what shapes a run (the step size, the batches, the budget, the
stopping rule, the schedule); each model keeps its defaults as a class attribute and the settings of
its last fit on the instance, so a reader can see what a model was trained with without reading its
``fit``. :func:`train` reads in three parts: :func:`_split` (the validation split), :func:`_train_epoch`
(one pass of minibatch steps) and :class:`_EarlyStopping` (the best epoch, its weights, and when to stop).

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Gaussian(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = nn.Linear(1, 2)
    ...     def forward(self, x):
    ...         mean, log_sd = self.net(x[:, None]).unbind(-1)
    ...         return torch.distributions.Normal(mean, log_sd.exp())
    >>> x = torch.linspace(-1, 1, 200)
    >>> history = train(Gaussian(), x, 2 * x, epochs=3, progress=False, seed=0)
    >>> len(history.train_loss)
    3
    >>> TrainingSettings(lr=1e-2, batch_size=None).resolved(n_points=900).batch_size  # the default rule
    90
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from tqdm.std import tqdm

from utilis.protocol import check_count, check_positive

__all__ = ["History", "TrainingSettings", "default_batch_size", "nll_loss", "pick_device", "seeded_generator", "train"]

Loss = Callable[[nn.Module, Tensor, Tensor], Tensor]


def nll_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood of a model whose ``forward(x)`` returns a distribution over y."""
    return -model(x).log_prob(y).mean()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else CUDA where it is present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_batch_size(n: int) -> int:
    """A tenth of the points a batch (about ten steps an epoch), between 32 and 512.

    Chosen with the cosine schedule (``benchmarks/bench_mdn.py``, ``bench_generative.py``): on a few
    hundred points batches of a tenth train the MDN and the generative model as well as batches of a
    twentieth, in half the steps; on tens of thousands, 512 is the size that reaches the gaps of
    smaller batches within the epoch budget.
    """
    return int(np.clip(n // 10, 32, 512))


@dataclass(frozen=True)
class TrainingSettings:
    """The arguments of :func:`train` that shape the trained weights, checked when made.

    The defaults are :func:`train`'s own. Where the run happens and how it reports (``device``,
    ``cpu_threads``, ``progress``, ``description``) are not settings of the training but of the run,
    and are passed to :func:`train` beside them. A model's defaults are its class attribute
    ``training_defaults``; the settings its last ``fit`` used, the caller's overrides and the rules
    below resolved, are ``model.training_settings``.

    Attributes:
        epochs: the most passes over the training split.
        batch_size: points per minibatch; None for :func:`default_batch_size` of the number of points
            (resolved by :meth:`resolved`).
        lr, weight_decay: Adam's step size and weight decay.
        val_fraction: share of the points held out to choose the epoch (0 < val_fraction < 1).
        patience: stop after this many epochs without a better monitored loss; None never stops early
            (the whole budget runs, and its best epoch is kept).
        min_epochs: never stop before this many epochs.
        monitor: "val" or "train", the loss that decides the best epoch, early stopping and the schedule.
        schedule: "cosine", "plateau" or "constant" (see :func:`train`).
        warmup: the share of the steps the cosine schedule warms up over (0 <= warmup < 1).
        lr_patience: epochs without improvement before the "plateau" schedule halves the step size.
        clip_norm: the largest gradient norm (None: no clipping).
    """

    epochs: int = 200
    batch_size: int | None = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    patience: int | None = 20
    min_epochs: int = 0
    monitor: Literal["val", "train"] = "val"
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup: float = 0.05
    lr_patience: int | None = None
    clip_norm: float | None = 10.0

    def __post_init__(self):
        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # frozen: the checked value replaces the given one

        set_("epochs", check_count(self.epochs, "epochs"))
        if self.batch_size is not None:
            set_("batch_size", check_count(self.batch_size, "batch_size"))
        if self.patience is not None:
            set_("patience", check_count(self.patience, "patience"))
        set_("min_epochs", check_count(self.min_epochs, "min_epochs", minimum=0))
        set_("lr", check_positive(self.lr, "lr"))
        decay = self.weight_decay
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0 <= decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {decay!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.clip_norm is not None:
            set_("clip_norm", check_positive(self.clip_norm, "clip_norm"))
        if self.monitor not in ("val", "train"):
            raise ValueError(f"monitor must be 'val' or 'train', got {self.monitor!r}")
        if self.schedule not in ("cosine", "plateau", "constant"):
            raise ValueError(f"schedule must be 'cosine', 'plateau' or 'constant', got {self.schedule!r}")
        warmup = self.warmup
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
            raise ValueError(f"warmup must be a number in [0, 1), got {warmup!r}")
        if self.schedule == "plateau" and self.lr_patience is None:
            raise ValueError("schedule='plateau' needs lr_patience, the epochs without improvement before halving")
        if self.schedule != "plateau" and self.lr_patience is not None:
            raise ValueError(
                f"lr_patience={self.lr_patience} is for schedule='plateau'; the schedule is {self.schedule!r}"
            )
        if self.lr_patience is not None:
            set_("lr_patience", check_count(self.lr_patience, "lr_patience"))

    def resolved(self, n_points: int) -> TrainingSettings:
        """These settings for a training set of ``n_points`` points (validation split included): a
        ``batch_size`` of None becomes :func:`default_batch_size` of it."""
        if self.batch_size is not None:
            return self
        return dataclasses.replace(self, batch_size=default_batch_size(n_points))

    @classmethod
    def names(cls) -> frozenset[str]:
        """The settings' names: the keywords of :func:`train` that belong here."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments of :func:`train`."""
        return {name: getattr(self, name) for name in self.names()}


@dataclass
class History:
    """Loss per epoch on the training and validation splits, and the epoch whose weights were kept.

    ``val_index`` holds the indices of the points that were held out for validation.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    val_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def _as_tensor(values: ArrayLike | Tensor, name: str) -> Tensor:
    tensor = values.detach() if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float32))
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite")
    return tensor.float() if tensor.is_floating_point() else tensor


def _adam(parameters: list[Tensor], lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where torch offers it (CPU and CUDA): on small networks
    the optimiser's per-tensor Python is otherwise a large share of a step."""
    fused = device.type in ("cpu", "cuda") or None
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=fused)


def _cosine(optimiser: torch.optim.Optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` of the steps, then a cosine decay to 1/100 of the step size."""
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


@contextmanager
def _cpu_threads(threads: int | None):
    """torch's intra-op threads set to ``threads`` inside the block (unchanged if None), then restored."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _copy_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's weights and buffers, cloned (a deep copy of the state dict without its Python overhead)."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def seeded_generator(seed: int | None) -> torch.Generator:
    """A generator of the run's own, seeded (fresh entropy when ``seed`` is None); torch's global one is not touched."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(check_count(seed, "seed", minimum=0))
    return generator


class _Split(NamedTuple):
    """The training and validation points on the device, and which points were held out."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    val_index: Tensor


def _split(x: Tensor, y: Tensor, n_val: int, generator: torch.Generator, device: torch.device) -> _Split:
    """A random ``n_val`` of the points held out for validation (the generator's first draw), the rest for training."""
    permutation = torch.randperm(x.shape[0], generator=generator)
    val_index, train_index = permutation[:n_val], permutation[n_val:]
    return _Split(
        x[train_index].to(device),
        y[train_index].to(device),
        x[val_index].to(device),
        y[val_index].to(device),
        val_index,
    )


class _Optimisation(NamedTuple):
    """Adam over the parameters being trained, and the step-size schedule that moves it per step or per epoch."""

    trained: list[Tensor]
    optimiser: torch.optim.Adam
    per_step: torch.optim.lr_scheduler.LambdaLR | None
    per_epoch: torch.optim.lr_scheduler.ReduceLROnPlateau | None


def _optimisation(model: nn.Module, settings: TrainingSettings, n_train: int, device: torch.device) -> _Optimisation:
    # listed once, for Adam and the clipping: model.parameters() walks the module tree at every call
    trained = [p for p in model.parameters() if p.requires_grad]
    optimiser = _adam(trained, settings.lr, settings.weight_decay, device)
    steps_per_epoch = -(-n_train // settings.batch_size)
    per_step = None
    if settings.schedule == "cosine":
        per_step = _cosine(optimiser, settings.epochs * steps_per_epoch, settings.warmup)
    per_epoch = None
    if settings.schedule == "plateau":
        per_epoch = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=settings.lr_patience)
    return _Optimisation(trained, optimiser, per_step, per_epoch)


def _not_finite(which: str, value: float, epoch: int) -> FloatingPointError:
    return FloatingPointError(
        f"the {which} loss became {value} at epoch {epoch} (the best weights so far are restored): lower lr, check "
        "the data's scale, or floor the model's scales"
    )


def _train_epoch(
    model: nn.Module,
    loss: Loss,
    split: _Split,
    settings: TrainingSettings,
    optimisation: _Optimisation,
    generator: torch.Generator,
    epoch: int,
) -> float:
    """One pass over the training split in a fresh random order: a step per minibatch. Returns the
    mean training loss over the epoch's points; raises ``FloatingPointError`` on a non-finite batch loss."""
    model.train()
    device = split.x_train.device
    order = torch.randperm(len(split.x_train), generator=generator).to(device)
    # one gather an epoch, then each batch a view (a gather per batch costs a visible share of a small model's step)
    x_order, y_order = split.x_train[order], split.y_train[order]
    # On the CPU a check costs nothing; on a GPU it would wait for the device at every batch,
    # so there the epoch's summed loss is checked instead (a non-finite batch makes it non-finite).
    check_each_batch = device.type == "cpu"
    optimiser, per_step = optimisation.optimiser, optimisation.per_step
    total = torch.zeros((), device=device)  # summed on the device: no host sync per batch
    for x_batch, y_batch in zip(x_order.split(settings.batch_size), y_order.split(settings.batch_size)):
        optimiser.zero_grad(set_to_none=True)
        value = loss(model, x_batch, y_batch)
        if check_each_batch and not torch.isfinite(value):
            raise _not_finite("training", value.item(), epoch)
        value.backward()
        if settings.clip_norm is not None:
            nn.utils.clip_grad_norm_(optimisation.trained, settings.clip_norm)
        optimiser.step()
        if per_step is not None:
            per_step.step()
        total += value.detach().reshape(()) * len(x_batch)  # a scalar, also from a loss of shape (1,)
    return total.item() / len(split.x_train)


class _EarlyStopping:
    """The bookkeeping of early stopping: the lowest monitored loss so far, its epoch, a copy of its
    weights, and whether ``patience`` epochs have passed without a better one (never before ``min_epochs``)."""

    def __init__(self, model: nn.Module, patience: int | None, min_epochs: int):
        self.model, self.patience, self.min_epochs = model, patience, min_epochs
        self.best, self.best_epoch, self.best_state = math.inf, -1, _copy_state(model)

    def update(self, epoch: int, loss: float) -> None:
        """Keep the model's weights if ``loss`` is the lowest so far."""
        if loss < self.best:
            self.best, self.best_epoch = loss, epoch
            self.best_state = _copy_state(self.model)

    def should_stop(self, epoch: int) -> bool:
        if self.patience is None:
            return False
        return epoch - self.best_epoch >= self.patience and epoch + 1 >= self.min_epochs

    def restore(self) -> None:
        """Load the best weights back into the model."""
        self.model.load_state_dict(self.best_state)


def _fit_loop(
    model: nn.Module,
    loss: Loss,
    split: _Split,
    settings: TrainingSettings,
    generator: torch.Generator,
    bar: tqdm,
) -> tuple[History, _EarlyStopping]:
    """Epochs of training and validation until the budget ends or early stopping; the best weights restored."""
    device = split.x_train.device
    model.to(device)
    optimisation = _optimisation(model, settings, len(split.x_train), device)
    history = History(val_index=split.val_index.numpy())
    stopping = _EarlyStopping(model, settings.patience, settings.min_epochs)
    try:
        for epoch in bar:
            train_loss = _train_epoch(model, loss, split, settings, optimisation, generator, epoch)
            model.eval()
            with torch.no_grad():
                val = loss(model, split.x_val, split.y_val).item()
            if not math.isfinite(train_loss):
                raise _not_finite("training", train_loss, epoch)
            if not math.isfinite(val):
                raise _not_finite("validation", val, epoch)
            history.train_loss.append(train_loss)
            history.val_loss.append(val)
            monitored = val if settings.monitor == "val" else train_loss
            if optimisation.per_epoch is not None:
                optimisation.per_epoch.step(monitored)
            stopping.update(epoch, monitored)
            history.best_epoch = stopping.best_epoch
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val:.4f}", best=f"{stopping.best:.4f}", refresh=False)
            if stopping.should_stop(epoch):
                history.stopped_early = True
                break
    except FloatingPointError:
        bar.close()
        stopping.restore()
        raise
    bar.close()
    stopping.restore()
    model.eval()
    return history, stopping


def train(
    model: nn.Module,
    x: ArrayLike | Tensor,
    y: ArrayLike | Tensor,
    *,
    loss: Loss = nll_loss,
    epochs: int = 200,
    batch_size: int | None = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    val_fraction: float = 0.1,
    patience: int | None = 20,
    min_epochs: int = 0,
    monitor: str = "val",
    schedule: str = "cosine",
    warmup: float = 0.05,
    lr_patience: int | None = None,
    clip_norm: float | None = 10.0,
    cpu_threads: int | None = 1,
    seed: int | None = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "training",
) -> History:
    """Train ``model`` on (x, y) by minibatch Adam, stop early on the validation loss, keep the best weights.

    Args:
        model: an ``nn.Module``; moved to ``device`` and left there, in eval mode, with the weights of
            the epoch with the lowest validation loss.
        x, y: inputs and targets, first axis the points (numpy arrays or tensors).
        loss: ``loss(model, x_batch, y_batch)`` -> scalar tensor; the negative log-likelihood by default.
        epochs: the most passes over the training split.
        batch_size, lr, weight_decay: minibatch size (None: :func:`default_batch_size` of the number of
            points), Adam's step size and weight decay.
        val_fraction: share of the points held out to choose the epoch (0 < val_fraction < 1).
        patience: stop after this many epochs without a better validation loss (None: never stop early).
        monitor: the loss that decides the best epoch, early stopping and the step-size schedule:
            "val" (the default) or "train", for a baseline that must be trained until its training
            loss converges (MSE regression: on a few hundred points the validation split's noise
            would otherwise keep the first epoch, before the fit has reached E[y | x]).
        min_epochs: never stop before this many epochs, so an early transient in the validation
            loss (a mixture sharpening its components, say) is not taken for the end of learning.
        schedule: how the step size moves. "cosine" (the default): a linear warm-up over the first
            ``warmup`` share of the ``epochs`` budget's steps, then a cosine decay to lr / 100 at its
            end, so a budget of a few hundred steps converges. "plateau": halve it after
            ``lr_patience`` epochs without a better monitored loss (``ReduceLROnPlateau``). "constant".
        warmup: the share of the steps the cosine schedule warms up over (0 <= warmup < 1).
        lr_patience: epochs without improvement before the "plateau" schedule halves the step size.
        clip_norm: clip the norm of the gradient of the parameters being trained (those that require
            a gradient when training starts) to this (None: no clipping).
        cpu_threads: torch's intra-op threads while training on the CPU, restored afterwards. One by
            default: the networks here are small, and on batches of a few hundred points a second
            thread costs more in synchronisation than it gives (``benchmarks/bench_speed.py`` times
            training). None leaves torch's setting alone.
        seed: seeds the split and the batch order (a ``torch.Generator`` of its own; nothing global),
            so on the CPU the same seed and the same initial weights give the same run. The models'
            ``fit`` also draws their initial weights from it (:class:`utilis.networks.NetworkDensity`).
        device: "cpu", "cuda", ...; None picks CUDA where present.
        progress: report progress: a tqdm bar where stderr is a terminal; elsewhere (a notebook, a
            log) one line with the final state at the end, which a saved notebook shows as it is
            (a live bar would be saved as a widget, or as its every redraw).

    The arguments from ``epochs`` to ``clip_norm`` are the run's :class:`TrainingSettings`.

    Returns:
        The :class:`History` of losses per epoch.

    Raises:
        FloatingPointError: if the training loss becomes NaN or infinite.
    """
    settings = TrainingSettings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        val_fraction=val_fraction,
        patience=patience,
        min_epochs=min_epochs,
        monitor=monitor,
        schedule=schedule,
        warmup=warmup,
        lr_patience=lr_patience,
        clip_norm=clip_norm,
    )
    if cpu_threads is not None:
        cpu_threads = check_count(cpu_threads, "cpu_threads")
    x_all, y_all = _as_tensor(x, "x"), _as_tensor(y, "y")
    if x_all.shape[0] != y_all.shape[0]:
        raise ValueError(f"x and y must hold the same number of points, got {x_all.shape[0]} and {y_all.shape[0]}")
    n = x_all.shape[0]
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction} leaves no training points out of {n}")
    settings = settings.resolved(n)

    device = pick_device(device)
    generator = seeded_generator(seed)
    split = _split(x_all, y_all, n_val, generator, device)
    live = progress and sys.stderr.isatty()
    with _cpu_threads(cpu_threads if device.type == "cpu" else None):
        start = time.perf_counter()
        bar = tqdm(range(settings.epochs), desc=description, disable=not live, leave=True)
        history, stopping = _fit_loop(model, loss, split, settings, generator, bar)
        history.seconds = time.perf_counter() - start
    if progress and not live:
        stop = ", stopped early" if history.stopped_early else ""
        print(
            f"{description}: {len(history.val_loss)} epochs in {history.seconds:.1f} s{stop}; kept epoch "
            f"{history.best_epoch} ({settings.monitor} loss {stopping.best:.4f})"
        )
    return history
