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
