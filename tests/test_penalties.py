import itertools
import math
from functools import partial

import pytest
import torch

from fairseq_wae.penalties import (
    AUTHORS_IMQ_SCALES,
    gaussian_kl,
    imq_kernel,
    mmd_unbiased,
    rbf_kernel,
    squared_distances,
    variance_kl,
)


def brute_force_mmd(x, y, k):
    """Eq. (3) with the 2/N^2 cross term, one pair at a time."""
    n = len(x)
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in itertools.product(range(n), repeat=2) if i != j)
    cross = sum(k(x[i], y[j]) for i, j in itertools.product(range(n), repeat=2))
    return within / (n * (n - 1)) - 2 * cross / n**2


def brute_imq(a, b, dim, scales, c_per_dim):
    d2 = float(((a - b) ** 2).sum())
    return sum(c_per_dim * dim * s / (c_per_dim * dim * s + d2) for s in scales)


@pytest.mark.parametrize("n", [2, 3, 7, 16])
@pytest.mark.parametrize("scales,c_per_dim", [((1.0,), 2.0), (AUTHORS_IMQ_SCALES, 4.0)])
def test_imq_mmd_matches_brute_force(n, scales, c_per_dim):
    torch.manual_seed(n)
    x, y = torch.randn(n, 5, dtype=torch.float64), torch.randn(n, 5, dtype=torch.float64) + 0.3
    kernel = partial(imq_kernel, latent_dim=5, scales=scales, c_base_per_dim=c_per_dim)
    expected = brute_force_mmd(x, y, lambda a, b: brute_imq(a, b, 5, scales, c_per_dim))
    assert mmd_unbiased(x, y, kernel).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n", [2, 5, 12])
def test_rbf_mmd_matches_brute_force(n):
    torch.manual_seed(n)
    x, y = torch.randn(n, 4, dtype=torch.float64), 2 * torch.randn(n, 4, dtype=torch.float64)
    pooled = torch.cat([x, y])
    d2 = [float(((a - b) ** 2).sum()) for i, a in enumerate(pooled) for j, b in enumerate(pooled) if i != j]
    bandwidth = torch.tensor(d2, dtype=torch.float64).median().item()  # torch's median: the lower middle value, as in rbf_kernel
    expected = brute_force_mmd(x, y, lambda a, b: math.exp(-float(((a - b) ** 2).sum()) / bandwidth))
    assert mmd_unbiased(x, y, rbf_kernel).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_near_zero_for_same_distribution_and_positive_when_shifted(kernel):
    k = rbf_kernel if kernel == "rbf" else partial(imq_kernel, latent_dim=8, scales=(1.0,), c_base_per_dim=2.0)
    torch.manual_seed(0)
    same = mmd_unbiased(torch.randn(500, 8), torch.randn(500, 8), k).item()
    shifted = mmd_unbiased(torch.randn(500, 8) + 1.0, torch.randn(500, 8), k).item()
    assert abs(same) < 0.01
    assert shifted > 0.05
    assert shifted > 20 * abs(same)


def test_mmd_refuses_a_single_code():
    with pytest.raises(ValueError, match="at least 2|>= 2"):
        mmd_unbiased(torch.randn(1, 3), torch.randn(1, 3), rbf_kernel)


def test_squared_distances_have_finite_gradients_at_zero():
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64)
    x[3] = x[1]  # two codes at one point: zero distances off the diagonal too
    x.requires_grad_(True)
    d2 = squared_distances(x, x)
    brute = torch.tensor([[float(((a - b) ** 2).sum()) for b in x.detach()] for a in x.detach()], dtype=torch.float64)
    assert torch.allclose(d2, brute, atol=1e-12)
    d2.sum().backward()
    # sum_ij ||x_i - x_j||^2 is a polynomial: its gradient at x_i is 4 (n x_i - sum_j x_j), zero distances or not
    n = len(x)
    assert torch.allclose(x.grad, 4 * (n * x.detach() - x.detach().sum(0)), atol=1e-12)


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mean, logvar = torch.tensor([0.5, -1.0, 0.0]), torch.tensor([0.2, -0.7, 1.1])
    std = torch.exp(0.5 * logvar)
    z = mean + std * torch.randn(400000, 3)
    log_q = torch.distributions.Normal(mean, std).log_prob(z)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    monte_carlo = (log_q - log_p).mean(0)
    assert torch.allclose(gaussian_kl(mean, logvar), monte_carlo, atol=0.01)
    assert gaussian_kl(torch.zeros(3), torch.zeros(3)).sum().item() == 0.0


def test_variance_kl_is_kl_to_unit_variance_at_the_same_mean():
    mean, logvar = torch.randn(6, 4), torch.randn(6, 4)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(mean, torch.ones_like(mean))
    assert torch.allclose(variance_kl(logvar), torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-5)
