"""The arithmetic the networks' losses share: the log-sum-exp and the Gaussian mixture's log-density."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, MixtureSameFamily, Normal

from utilis.networks import NEGLIGIBLE, GaussianMixture, logsumexp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [0, -1])
def test_logsumexp_is_torchs_to_the_last_bit(dtype, dim):
    # terms spread over thousands of nats, so most are far below their row's largest
    generator = torch.Generator().manual_seed(0)
    values = (-(torch.rand(300, 40, generator=generator, dtype=torch.float64) ** 4) * 5000).to(dtype)
    assert ((values - values.amax(dim, keepdim=True)) < -NEGLIGIBLE).float().mean() > 0.5
    assert torch.equal(logsumexp(values, dim), torch.logsumexp(values, dim))


def test_logsumexp_keeps_torchs_infinities_and_nan():
    inf, nan = float("inf"), float("nan")
    values = torch.tensor(
        [[-inf, -inf, -inf], [0.0, -inf, 1.0], [inf, 0.0, -500.0], [nan, 0.0, 0.0], [-1e4, 0.0, -inf]]
    )
    ours, theirs = logsumexp(values, -1), torch.logsumexp(values, -1)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours[~ours.isnan()], theirs[~theirs.isnan()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_gradient_is_torchs(dtype):
    generator = torch.Generator().manual_seed(1)
    values = (torch.randn(50, 8, generator=generator, dtype=torch.float64) * 60).to(dtype)
    # rows so large that 80 nats are below their spacing: nothing may be raised there (a raised term
    # would tie with the largest and take half its gradient)
    huge = torch.tensor([[-5e9, -5e9 - 1024.0, -5e9 - 4096.0], [3e19, 3e19, 0.0]], dtype=torch.float64).to(dtype)
    for rows in (values, huge):
        ours, theirs = rows.clone().requires_grad_(), rows.clone().requires_grad_()
        logsumexp(ours, -1).sum().backward()
        torch.logsumexp(theirs, -1).sum().backward()
        # the same where a term is within NEGLIGIBLE nats of the largest; below, torch's is under e^-80
        assert torch.allclose(ours.grad, theirs.grad, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-34)
    assert logsumexp(huge, -1)[0] == -5e9


def test_logsumexp_of_nothing_is_minus_infinity():
    empty = torch.zeros(3, 0)
    assert torch.equal(logsumexp(empty, -1), torch.logsumexp(empty, -1))
    assert torch.equal(logsumexp(empty, 0), torch.logsumexp(empty, 0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_mixture_matches_torch_and_scipy(dtype):
    generator = torch.Generator().manual_seed(2)
    n, k = 200, 6
    logits = (torch.randn(n, k, generator=generator, dtype=torch.float64) * 3).to(dtype)
    means = (torch.randn(n, k, generator=generator, dtype=torch.float64) * 5).to(dtype)
    scales = (torch.rand(n, k, generator=generator, dtype=torch.float64) * 2 + 1e-3).to(dtype)
    y = (torch.randn(n, generator=generator, dtype=torch.float64) * 8).to(dtype)  # many far from every component
    ours = GaussianMixture(logits, means, scales)
    general = MixtureSameFamily(Categorical(logits=logits), Normal(means, scales))
    assert torch.equal(ours.log_prob(y), general.log_prob(y))  # to the last bit: trained models stay as they were
    weights = torch.softmax(logits.double(), -1).numpy()
    density = (
        weights * stats.norm.pdf(y.double().numpy()[:, None], means.double().numpy(), scales.double().numpy())
    ).sum(-1)
    finite = density > 1e-300
    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    assert np.allclose(
        ours.log_prob(y).double().numpy()[finite], np.log(density[finite]), rtol=tolerance, atol=tolerance
    )
    # a y grid against a batch of mixtures broadcasts as torch's does, and sampling is torch's
    grid = torch.linspace(-20, 20, 7, dtype=dtype)[:, None]
    assert ours.log_prob(grid).shape == (7, n)
    assert torch.equal(ours.log_prob(grid), general.log_prob(grid))
    assert ours.sample((3,)).shape == (3, n)
    expanded = ours.expand((2, n))
    assert type(expanded) is GaussianMixture and torch.equal(expanded.log_prob(y)[1], ours.log_prob(y))


def test_gaussian_mixture_far_from_every_component_is_finite_with_a_gradient():
    means = torch.zeros(4, 3, requires_grad=True)
    mixture = GaussianMixture(torch.zeros(4, 3), means, torch.full((4, 3), 1e-3))
    log_p = mixture.log_prob(torch.tensor([0.0, 1.0, 10.0, 100.0]))
    assert torch.isfinite(log_p).all() and log_p[-1] < -1e9
    log_p.sum().backward()
    theirs = means.detach().clone().requires_grad_()
    MixtureSameFamily(Categorical(logits=torch.zeros(4, 3)), Normal(theirs, torch.full((4, 3), 1e-3))).log_prob(
        torch.tensor([0.0, 1.0, 10.0, 100.0])
    ).sum().backward()
    assert torch.isfinite(means.grad).all() and torch.equal(means.grad, theirs.grad)


# ---- the one fit: its sequence and the settings it records ----------------------------------------
from dataclasses import replace  # noqa: E402

from torch import nn  # noqa: E402

from generate_dataset import inverted_sinusoid_mixture  # noqa: E402
from utilis.baselines import BinnedClassifier, GaussianRegression  # noqa: E402
from utilis.energy_utilis import EnergyModel  # noqa: E402
from utilis.flow_utilis import FlowMatching, SplineFlow  # noqa: E402
from utilis.gen_model_utilis import GenerativeModel  # noqa: E402
from utilis.hypotheses_utilis import MultipleHypotheses  # noqa: E402
from utilis.mdn_utilis import MDN  # noqa: E402
from utilis.networks import NetworkDensity, Standardiser  # noqa: E402
from utilis.training import TrainingSettings, default_batch_size  # noqa: E402


class Recorder(NetworkDensity):
    """A Gaussian with a learned mean and log-sd, recording the fit's hooks as they run."""

    training_defaults = TrainingSettings(lr=0.05, batch_size=None, epochs=3, patience=None)

    def __init__(self):
        super().__init__()
        self.scaling = Standardiser()
        self.net = nn.Linear(1, 2)
        self.calls = []

    def forward(self, x):
        mean, log_sd = self.net(self.scaling.z_x(x)[:, None]).unbind(-1)
        return torch.distributions.Normal(mean, log_sd.exp())

    def _log_prob(self, y, x):  # the protocol's side is not what these tests are about
        raise NotImplementedError

    def _sample(self, x, n, rng):
        raise NotImplementedError

    def _check_fit_data(self, x, y, **extra):
        self.calls.append("check")
        return super()._check_fit_data(x, y, **extra)

    def _start_fit(self, seed):
        self.calls.append("start")
        super()._start_fit(seed)

    def _set_scaling(self, x, y):
        self.calls.append("scaling")
        super()._set_scaling(x, y)

    def _initialise(self, x, y):
        self.calls.append("initialise")

    def _train(self, x, y, **kwargs):
        self.calls.append("train")
        return super()._train(x, y, **kwargs)

    def _after_training(self, x, y, history, **kwargs):
        self.calls.append("after")
        assert not bool(self.fitted)  # before it counts as fitted

    def _finish_fit(self):
        self.calls.append("finish")
        super()._finish_fit()


def test_fit_runs_the_hooks_in_order_and_records_its_settings():
    x = np.linspace(-1, 1, 200)
    model = Recorder()
    history = model.fit(x, 2 * x, epochs=4, lr=0.01, progress=False)
    assert model.calls == ["check", "start", "scaling", "initialise", "train", "after", "finish"]
    assert model.training_settings == TrainingSettings(lr=0.01, batch_size=32, epochs=4, patience=None)
    assert Recorder.training_defaults.epochs == 3  # the class's defaults are left as they were
    assert len(history.val_loss) == 4 and bool(model.fitted) and not model.training


def test_a_bad_setting_is_refused_before_anything_is_reset():
    x = np.linspace(-1, 1, 200)
    model = Recorder()
    model.fit(x, 2 * x, progress=False)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    for bad in ({"epochs": 0}, {"lr": -1.0}, {"patience": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            model.fit(x, 2 * x, progress=False, **bad)
    with pytest.raises(TypeError):
        model.fit(x, 2 * x, progress=False, learning_rate=0.1)  # neither a setting nor a run option
    with pytest.raises(TypeError, match="takes no c"):
        model._fit(x, 2 * x, seed=0, train_kwargs={}, c=None)
    assert bool(model.fitted) and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


SMALL = {
    "mdn": lambda: MDN(n_components=3, hidden=8),
    "regression": lambda: GaussianRegression(hidden=8),
    "bins": lambda: BinnedClassifier(n_bins=10, hidden=8),
    "spline-flow": lambda: SplineFlow(bins=4, hidden=8),
    "flow-matching": lambda: FlowMatching(hidden=8),
    "hypotheses": lambda: MultipleHypotheses(n_hypotheses=3, hidden=8),
    "energy": lambda: EnergyModel(n_knots=16, hidden=8),
    "generative": lambda: GenerativeModel(2, hidden=8),
}


@pytest.mark.parametrize("name", SMALL)
def test_every_model_records_its_defaults_under_the_callers_overrides(name):
    data = inverted_sinusoid_mixture(n_samples=300, seed=0)
    model = SMALL[name]()
    assert model.training_settings is None
    labels = (data.c_train,) if isinstance(model, GenerativeModel) else ()
    model.fit(data.x_train, data.y_train, *labels, epochs=2, lr=3e-3, progress=False)
    n = len(data.x_train)
    expected = replace(type(model).training_defaults, epochs=2, lr=3e-3, batch_size=default_batch_size(n))
    if isinstance(model, EnergyModel):
        expected = replace(expected, weight_decay=1.0 / n)  # its rule, from the data
    assert model.training_settings == expected
    assert model.training_settings_for(n, epochs=2, lr=3e-3) == expected


def test_class_defaults_are_the_documented_literals():
    # the values each fit used before they were recorded: changing one changes every trained model
    defaults = {
        MDN: (1e-2, 100, 30),
        GaussianRegression: (1e-2, 100, 100),
        BinnedClassifier: (5e-3, 100, 20),
        SplineFlow: (1e-2, 200, 40),
        FlowMatching: (2e-2, 200, None),  # every epoch runs: its validation loss stalls and falls again
        MultipleHypotheses: (1e-2, 100, None),
        EnergyModel: (1e-2, 30, 10),
        GenerativeModel: (7e-3, 80, 30),
    }
    for cls, (lr, epochs, patience) in defaults.items():
        settings = cls.training_defaults
        assert (settings.lr, settings.epochs, settings.patience, settings.batch_size) == (lr, epochs, patience, None)
    assert GaussianRegression.training_defaults.monitor == "train"
    assert MultipleHypotheses.mixture_training_defaults == TrainingSettings(
        lr=1e-2, batch_size=None, epochs=40, patience=None
    )


def test_energy_weight_decay_is_one_over_n_unless_overridden():
    model = EnergyModel(n_knots=16, hidden=8)
    assert model.training_settings_for(400).weight_decay == 1 / 400
    assert model.training_settings_for(400, weight_decay=0.0).weight_decay == 0.0


def test_hypotheses_record_both_stages_and_overrides_reach_both():
    data = inverted_sinusoid_mixture(n_samples=300, seed=0)
    model = MultipleHypotheses(n_hypotheses=3, hidden=8)
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=40, progress=False)
    assert model.training_settings == replace(MultipleHypotheses.training_defaults, epochs=2, batch_size=40)
    assert model.mixture_training_settings == replace(
        MultipleHypotheses.mixture_training_defaults, epochs=2, batch_size=40
    )
    assert len(model.mixture_history.val_loss) == 2
    kernel = MultipleHypotheses(n_hypotheses=3, hidden=8, density="kernel")
    kernel.fit(data.x_train, data.y_train, epochs=2, progress=False)
    assert kernel.mixture_training_settings is None and kernel.mixture_history is None
