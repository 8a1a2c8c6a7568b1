"""The one training loop every model in the repository uses.

Adam on minibatches, a validation split, early stopping that restores the best weights, gradient
clipping, progress (a tqdm bar in a terminal, one closing line in a notebook; off with
``progress=False``), a seed that makes a run repeat exactly on the CPU, and a device choice (CUDA
where present, else the CPU).

The default loss is the negative log-likelihood of a model whose ``forward(x)`` returns a
``torch.distributions.Distribution`` over y: ``-model(x).log_prob(y).mean()``.

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
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn
from tqdm.std import tqdm

from utilis.protocol import check_count, check_positive

__all__ = ["History", "nll_loss", "pick_device", "train"]

Loss = Callable[[nn.Module, Tensor, Tensor], Tensor]


def nll_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood of a model whose ``forward(x)`` returns a distribution over y."""
    return -model(x).log_prob(y).mean()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else CUDA where it is present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    """Adam, fused into one kernel per step where torch offers it (CPU and CUDA): a third of a small
    network's step time was the optimiser's per-tensor Python."""
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


def train(
    model: nn.Module,
    x: ArrayLike | Tensor,
    y: ArrayLike | Tensor,
    *,
    loss: Loss = nll_loss,
    epochs: int = 200,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    val_fraction: float = 0.1,
    patience: int = 20,
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
        batch_size, lr, weight_decay: minibatch size, Adam's step size and weight decay.
        val_fraction: share of the points held out to choose the epoch (0 < val_fraction < 1).
        patience: stop after this many epochs without a better validation loss.
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
            thread costs more in synchronisation than it gives (measured 1.5 against 2.3 ms a step
            for the MDN at 256 points a batch on 2 cores). None leaves torch's setting alone.
        seed: seeds the split and the batch order (a ``torch.Generator`` of its own; nothing global),
            so on the CPU the same seed and the same initial weights give the same run. The models'
            ``fit`` also draws their initial weights from it (:class:`utilis.networks.NetworkDensity`).
        device: "cpu", "cuda", ...; None picks CUDA where present.
        progress: report progress: a tqdm bar where stderr is a terminal; elsewhere (a notebook, a
            log) one line with the final state at the end, which a saved notebook shows as it is
            (a live bar would be saved as a widget, or as its every redraw).

    Returns:
        The :class:`History` of losses per epoch.

    Raises:
        FloatingPointError: if the training loss becomes NaN or infinite.
    """
    epochs, batch_size, patience = (
        check_count(epochs, "epochs"),
        check_count(batch_size, "batch_size"),
        check_count(patience, "patience"),
    )
    min_epochs = check_count(min_epochs, "min_epochs", minimum=0)
    lr = check_positive(lr, "lr")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if clip_norm is not None:
        clip_norm = check_positive(clip_norm, "clip_norm")
    if cpu_threads is not None:
        cpu_threads = check_count(cpu_threads, "cpu_threads")
    if monitor not in ("val", "train"):
        raise ValueError(f"monitor must be 'val' or 'train', got {monitor!r}")
    if schedule not in ("cosine", "plateau", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'plateau' or 'constant', got {schedule!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a number in [0, 1), got {warmup!r}")
    if schedule == "plateau" and lr_patience is None:
        raise ValueError("schedule='plateau' needs lr_patience, the epochs without improvement before halving")
    if schedule != "plateau" and lr_patience is not None:
        raise ValueError(f"lr_patience={lr_patience} is for schedule='plateau'; the schedule is {schedule!r}")
    if lr_patience is not None:
        lr_patience = check_count(lr_patience, "lr_patience")
    x_all, y_all = _as_tensor(x, "x"), _as_tensor(y, "y")
    if x_all.shape[0] != y_all.shape[0]:
        raise ValueError(f"x and y must hold the same number of points, got {x_all.shape[0]} and {y_all.shape[0]}")
    n = x_all.shape[0]
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction} leaves no training points out of {n}")

    device = pick_device(device)
    generator = torch.Generator()
    if seed is not None:
        seed = check_count(seed, "seed", minimum=0)
    if seed is None:
        generator.seed()  # fresh entropy for this generator alone; torch's global one is not touched
    else:
        generator.manual_seed(seed)
    permutation = torch.randperm(n, generator=generator)
    val_index, train_index = permutation[:n_val], permutation[n_val:]
    x_train, y_train = x_all[train_index].to(device), y_all[train_index].to(device)
    x_val, y_val = x_all[val_index].to(device), y_all[val_index].to(device)

    with _cpu_threads(cpu_threads if device.type == "cpu" else None):
        model.to(device)
        # listed once, for Adam and the clipping: model.parameters() walks the module tree, 6% of a small model's step
        trained = [p for p in model.parameters() if p.requires_grad]
        optimiser = _adam(trained, lr, weight_decay, device)
        steps_per_epoch = -(-len(x_train) // batch_size)
        per_step = _cosine(optimiser, epochs * steps_per_epoch, warmup) if schedule == "cosine" else None
        per_epoch = None
        if schedule == "plateau":
            per_epoch = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=lr_patience)
        history = History(val_index=val_index.numpy())
        best_state, best = _copy_state(model), math.inf
        start = time.perf_counter()
        # On the CPU a check costs nothing; on a GPU it would wait for the device at every batch,
        # so there the epoch's summed loss is checked instead (a non-finite batch makes it non-finite).
        check_each_batch = device.type == "cpu"
        live = progress and sys.stderr.isatty()
        bar = tqdm(range(epochs), desc=description, disable=not live, leave=True)
        for epoch in bar:
            model.train()
            order = torch.randperm(len(x_train), generator=generator).to(device)
            # one gather an epoch, then each batch a view (a gather per batch cost 4% of the MDN's step)
            x_order, y_order = x_train[order], y_train[order]
            total = torch.zeros((), device=device)  # summed on the device: no host sync per batch
            for x_batch, y_batch in zip(x_order.split(batch_size), y_order.split(batch_size)):
                optimiser.zero_grad(set_to_none=True)
                value = loss(model, x_batch, y_batch)
                if check_each_batch and not torch.isfinite(value):
                    bar.close()
                    model.load_state_dict(best_state)
                    raise FloatingPointError(
                        f"the training loss became {value.item()} at epoch {epoch} (the best weights so far are "
                        "restored): lower lr, check the data's scale, or floor the model's scales"
                    )
                value.backward()
                if clip_norm is not None:
                    nn.utils.clip_grad_norm_(trained, clip_norm)
                optimiser.step()
                if per_step is not None:
                    per_step.step()
                total += value.detach().reshape(()) * len(x_batch)  # a scalar, also from a loss of shape (1,)
            train_loss = total.item() / len(x_train)
            model.eval()
            with torch.no_grad():
                val = loss(model, x_val, y_val).item()
            if not (math.isfinite(train_loss) and math.isfinite(val)):
                bar.close()
                model.load_state_dict(best_state)
                which = "training" if not math.isfinite(train_loss) else "validation"
                raise FloatingPointError(
                    f"the {which} loss became {train_loss if which == 'training' else val} at epoch {epoch} "
                    "(the best weights so far are restored): lower lr, check the data's scale, or floor the model's "
                    "scales"
                )
            history.train_loss.append(train_loss)
            history.val_loss.append(val)
            decisive = val if monitor == "val" else train_loss
            if per_epoch is not None:
                per_epoch.step(decisive)
            if decisive < best:
                best, history.best_epoch = decisive, epoch
                best_state = _copy_state(model)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val:.4f}", best=f"{best:.4f}", refresh=False)
            if epoch - history.best_epoch >= patience and epoch + 1 >= min_epochs:
                history.stopped_early = True
                break
        bar.close()
        model.load_state_dict(best_state)
        model.eval()
        history.seconds = time.perf_counter() - start
    if progress and not live:
        stop = ", stopped early" if history.stopped_early else ""
        print(
            f"{description}: {len(history.val_loss)} epochs in {history.seconds:.1f} s{stop}; kept epoch "
            f"{history.best_epoch} ({monitor} loss {best:.4f})"
        )
    return history
