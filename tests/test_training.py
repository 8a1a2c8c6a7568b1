"""The shared training loop: known optimum, exact repeats, early stopping, NaN and bad arguments."""

import numpy as np
import pytest
import torch
from torch import nn

from utilis.training import History, nll_loss, pick_device, train


class LinearGaussian(nn.Module):
    """y | x ~ N(a x + b, exp(log_sd)^2): its maximum-likelihood optimum is least squares."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.log_sd = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.distributions.Normal(self.linear(x[:, None])[:, 0], self.log_sd.exp())


def line_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    return x, 2.0 * x + 1.0 + 0.3 * rng.standard_normal(n)


def test_reaches_the_known_optimum():
    # Full batches, and a validation half big enough that its best epoch is the training optimum.
    x, y = line_data(10_000)
    torch.manual_seed(0)
    model = LinearGaussian()
    history = train(
        model,
        x,
        y,
        epochs=600,
        lr=0.02,
        batch_size=len(x),
        val_fraction=0.5,
        patience=600,
        progress=False,
        seed=0,
        schedule="constant",
    )
    # The maximum-likelihood answer on the training split: least squares and the residual spread.
    keep = np.setdiff1d(np.arange(len(x)), history.val_index)
    design = np.stack([x[keep], np.ones(len(keep))], axis=1)
    (slope, offset), *_ = np.linalg.lstsq(design, y[keep], rcond=None)
    sd = np.std(y[keep] - design @ [slope, offset])
    assert model.linear.weight.item() == pytest.approx(slope, abs=0.01)
    assert model.linear.bias.item() == pytest.approx(offset, abs=0.01)
    assert model.log_sd.exp().item() == pytest.approx(sd, rel=0.02)
    assert history.train_loss[-1] < history.train_loss[0]


def test_same_seed_same_run():
    x, y = line_data(500)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = LinearGaussian()
        history = train(model, x, y, epochs=15, lr=0.01, progress=False, seed=3)
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0].train_loss == runs[1][0].train_loss and runs[0][0].val_loss == runs[1][0].val_loss
    for a, b in zip(runs[0][1], runs[1][1]):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    other = train(LinearGaussian(), x, y, epochs=15, lr=0.01, progress=False, seed=4)
    assert other.train_loss != runs[0][0].train_loss


def test_early_stopping_restores_the_best_weights():
    # Few points and a big step: the validation loss bounces, so the last epoch is not the best.
    x, y = line_data(60, seed=2)
    torch.manual_seed(0)
    model = LinearGaussian()
    history = train(model, x, y, epochs=200, lr=0.5, batch_size=8, patience=5, progress=False, seed=0)
    assert isinstance(history, History) and history.stopped_early
    assert len(history.val_loss) == history.best_epoch + 6
    with torch.no_grad():
        index = torch.as_tensor(history.val_index)
        val = nll_loss(
            model, torch.as_tensor(x, dtype=torch.float32)[index], torch.as_tensor(y, dtype=torch.float32)[index]
        )
    assert val.item() == pytest.approx(min(history.val_loss), rel=1e-6)
    assert not model.training


def test_monitoring_the_training_loss_keeps_its_best_epoch():
    # The same bouncing run as above, but the training loss decides: the kept epoch is its minimum.
    x, y = line_data(60, seed=2)
    torch.manual_seed(0)
    history = train(
        LinearGaussian(), x, y, epochs=60, lr=0.5, batch_size=8, patience=5, monitor="train", progress=False
    )
    assert history.best_epoch == int(np.argmin(history.train_loss))
    assert len(history.train_loss) == history.best_epoch + 6 or len(history.train_loss) == 60


def test_min_epochs_holds_off_early_stopping():
    x, y = line_data(60, seed=2)
    torch.manual_seed(0)
    history = train(LinearGaussian(), x, y, epochs=200, lr=0.5, batch_size=8, patience=5, min_epochs=80, progress=False)
    assert len(history.val_loss) >= 80
    with pytest.raises(ValueError, match="min_epochs"):
        train(LinearGaussian(), x, y, min_epochs=-1, progress=False)


def test_gradient_clipping_bounds_the_step():
    x, y = line_data(100)
    x, y = x, 1e4 * y  # huge gradients
    torch.manual_seed(0)
    model = LinearGaussian()
    before = model.linear.weight.item()
    train(model, x, y, epochs=1, lr=1.0, batch_size=100, clip_norm=1e-3, val_fraction=0.5, progress=False)
    assert abs(model.linear.weight.item() - before) <= 1.0 + 1e-6  # Adam's first step is at most lr


def test_nan_loss_raises():
    x, y = line_data(100)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train(LinearGaussian(), x, y, loss=lambda m, xb, yb: nll_loss(m, xb, yb) * torch.nan, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"patience": 0}, "patience"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"monitor": "test"}, "monitor must be 'val' or 'train'"),
        ({"schedule": "step"}, "schedule must be"),
        ({"schedule": "plateau"}, "needs lr_patience"),
        ({"lr_patience": 5}, "lr_patience=5 is for schedule='plateau'"),
        ({"warmup": 1.0}, "warmup must be"),
        ({"cpu_threads": 0}, "cpu_threads must be >= 1"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    x, y = line_data(50)
    with pytest.raises(ValueError, match=message):
        train(LinearGaussian(), x, y, progress=False, **kwargs)


def test_bad_data_raise():
    with pytest.raises(ValueError, match="same number of points"):
        train(LinearGaussian(), np.zeros(10), np.zeros(9), progress=False)
    with pytest.raises(ValueError, match="y must be finite"):
        train(LinearGaussian(), np.zeros(10), np.full(10, np.nan), progress=False)
    with pytest.raises(ValueError, match="leaves no training points"):
        train(LinearGaussian(), np.zeros(1), np.zeros(1), progress=False)


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cosine_schedule_warms_up_then_decays():
    from utilis.training import _cosine

    optimiser = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = _cosine(optimiser, total_steps=100, warmup=0.1)
    rates = []
    for _ in range(100):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # then never up again
    assert rates[-1] == pytest.approx(0.01, abs=1e-3)


def test_training_threads_are_restored():
    x, y = line_data(100)
    before = torch.get_num_threads()
    train(LinearGaussian(), x, y, epochs=2, cpu_threads=1, progress=False)
    assert torch.get_num_threads() == before


def test_a_loss_of_shape_one_is_a_scalar():
    x, y = line_data(100)
    history = train(LinearGaussian(), x, y, epochs=2, progress=False, loss=lambda m, xb, yb: nll_loss(m, xb, yb)[None])
    assert len(history.train_loss) == 2 and np.isfinite(history.train_loss).all()


def test_progress_off_a_terminal_is_one_closing_line(capsys):
    x, y = line_data(100)
    train(LinearGaussian(), x, y, epochs=3, description="a line", progress=True)
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("a line: 3 epochs in ") and "kept epoch" in out
    assert "\r" not in out + err and "it/s" not in err  # no bar redrawn into a saved notebook


def test_settings_defaults_are_trains_own():
    import inspect

    from utilis.training import TrainingSettings

    signature = inspect.signature(train).parameters
    for name, value in TrainingSettings().as_kwargs().items():
        assert signature[name].default == value, name
    assert TrainingSettings.names() < set(signature)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"patience": 0}, "patience"),
        ({"monitor": "test"}, "monitor must be 'val' or 'train'"),
        ({"schedule": "plateau"}, "needs lr_patience"),
    ],
)
def test_settings_are_checked_when_made(kwargs, message):
    from utilis.training import TrainingSettings

    with pytest.raises(ValueError, match=message):
        TrainingSettings(**kwargs)


def test_settings_resolve_the_default_batch_rule_and_change_nothing_else():
    from dataclasses import replace

    from utilis.training import TrainingSettings, default_batch_size

    settings = TrainingSettings(lr=1e-2, batch_size=None, epochs=7, patience=None)
    for n in (50, 900, 100_000):
        assert settings.resolved(n) == replace(settings, batch_size=default_batch_size(n))
    assert [default_batch_size(n) for n in (50, 900, 100_000)] == [32, 90, 512]
    fixed = TrainingSettings(batch_size=64)
    assert fixed.resolved(10_000) is fixed
    with pytest.raises(TypeError):
        replace(fixed, learning_rate=1.0)  # a name that is no setting


def test_settings_as_keywords_are_the_same_run():
    from utilis.training import TrainingSettings

    x, y = line_data(300)
    settings = TrainingSettings(epochs=6, lr=0.02, batch_size=None, patience=3).resolved(len(x))
    torch.manual_seed(0)
    first, second = LinearGaussian(), LinearGaussian()
    second.load_state_dict(first.state_dict())
    a = train(first, x, y, progress=False, seed=1, **settings.as_kwargs())
    b = train(second, x, y, progress=False, seed=1, epochs=6, lr=0.02, batch_size=32, patience=3)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), second.state_dict().values()))


def test_no_patience_runs_the_whole_budget_and_keeps_its_best_epoch():
    x, y = line_data(200)
    stopped = train(LinearGaussian(), x, y, epochs=60, lr=0.5, batch_size=8, patience=1, progress=False, seed=0)
    assert stopped.stopped_early and len(stopped.val_loss) < 60
    model = LinearGaussian()
    history = train(model, x, y, epochs=60, lr=0.5, batch_size=8, patience=None, progress=False, seed=0)
    assert not history.stopped_early and len(history.val_loss) == 60
    assert history.best_epoch == int(np.argmin(history.val_loss))


def test_a_non_finite_loss_restores_the_best_weights():
    x, y = line_data(100)  # 90 training points: 3 batches of 32 an epoch
    steps = []

    def loss(m, xb, yb):  # finite through the first epoch, then NaN
        if m.training:
            steps.append(1)
        return nll_loss(m, xb, yb) * (torch.nan if len(steps) > 3 else 1.0)

    torch.manual_seed(0)
    model, reference = LinearGaussian(), LinearGaussian()
    reference.load_state_dict(model.state_dict())
    settings = {"batch_size": 32, "schedule": "constant", "progress": False, "seed": 0}
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 1"):
        train(model, x, y, loss=loss, epochs=5, **settings)
    train(reference, x, y, epochs=1, **settings)  # the same first epoch, alone
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), reference.state_dict().values()))
