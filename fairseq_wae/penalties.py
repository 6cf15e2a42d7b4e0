"""The paper's latent penalties, one equation per function.

All functions take batches of latent codes shaped ``(batch, latent_dim)`` and are differentiable.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor

from fairseq_wae.errors import Refusal

#: The authors' multi-scale inverse multiquadratic kernel sums over these multiples of ``C_base``.
AUTHORS_IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: ... of ``C_base = 4 * latent_dim`` (Tolstikhin et al. use 2 d_z for a single C).
AUTHORS_IMQ_C_BASE_PER_DIM = 4.0


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form, per latent dimension.

    The VAE penalty of eq. (2); sum over the last dimension for the per-sentence KL.
    """
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def variance_kl(logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(mu, I)), per sentence.

    The stochastic WAE's penalty (Bahuleyan et al., NAACL 2019): it weighs the variance only, so
    that a Gaussian encoder under an MMD penalty cannot let sigma collapse to 0.
    """
    return 0.5 * (logvar.exp() - 1.0 - logvar).sum(-1)


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise ||x_i - y_j||^2, written so that its gradient is finite at zero distance."""
    xx = x.pow(2).sum(-1, keepdim=True)
    yy = y.pow(2).sum(-1, keepdim=True)
    return (xx + yy.transpose(0, 1) - 2.0 * x @ y.transpose(0, 1)).clamp_min(0.0)


def imq_kernel(sq_dist: Tensor, latent_dim: int, scales: Sequence[float], c_base_per_dim: float,
               pairs: Optional[Tensor] = None) -> Tensor:
    """Inverse multiquadratic kernel k(x, y) = sum_s C_s / (C_s + ||x - y||^2) (section 2.3).

    ``C_s = s * c_base_per_dim * latent_dim``: one scale ``(1.0,)`` with ``c_base_per_dim=2`` is the
    single-C kernel of Tolstikhin et al. (C = 2 d_z for a unit-variance prior); the authors' code sums
    over :data:`AUTHORS_IMQ_SCALES` with ``c_base_per_dim=4``. ``pairs`` is unread: the kernel does not
    depend on the sample.
    """
    c_base = c_base_per_dim * latent_dim
    return sum(c_base * s / (c_base * s + sq_dist) for s in scales)


def rbf_kernel(sq_dist: Tensor, pairs: Optional[Tensor] = None) -> Tensor:
    """Gaussian kernel exp(-||x - y||^2 / h), h the median squared distance over ``pairs`` (a boolean
    matrix of the pairs that count; by default every pair of distinct rows): the median heuristic.

    The bandwidth is treated as a constant: no gradient flows through the median. Of an even count the
    lower middle value is taken, as torch.median does; it is read by sorting, without reading anything
    back to the host.
    """
    if pairs is None:
        pairs = ~torch.eye(sq_dist.size(0), dtype=torch.bool, device=sq_dist.device)
    candidates = torch.where(pairs, sq_dist.detach(), torch.full_like(sq_dist, float("inf")))
    middle = ((pairs.sum() - 1) // 2).clamp_min(0)
    bandwidth = candidates.flatten().sort().values.gather(0, middle.view(1)).squeeze(0)
    return torch.exp(-sq_dist / bandwidth.clamp_min(1e-8))


def mmd_unbiased(z_posterior: Tensor, z_prior: Tensor, kernel) -> Tensor:
    """Unbiased MMD^2 estimate between two equal-size samples, eq. (3).

    MMD = 1/(N(N-1)) sum_{n!=m} k(z_n, z_m) + 1/(N(N-1)) sum_{n!=m} k(z~_n, z~_m)
          - 2/N^2 sum_{n,m} k(z_n, z~_m)

    The paper prints the cross term as 1/N^2; the estimator of Gretton et al. and the authors' code
    use 2/N^2, as here. ``kernel(squared distances, pairs=...)`` maps a matrix of squared distances to
    kernel values; it sees the pooled sample so that a data-dependent bandwidth (RBF) is shared by all
    three terms. Needs N >= 2.
    """
    n = z_posterior.size(0)
    if z_prior.size(0) != n or n < 2:
        raise Refusal(f"MMD needs two samples of equal size >= 2, got {n} and {z_prior.size(0)}")
    pooled = torch.cat([z_posterior, z_prior], dim=0)
    off_diagonal = ~torch.eye(2 * n, dtype=torch.bool, device=pooled.device)
    k = kernel(squared_distances(pooled, pooled), pairs=off_diagonal)
    k_qq, k_pp, k_qp = k[:n, :n], k[n:, n:], k[:n, n:]
    within = (k_qq.sum() - k_qq.diagonal().sum() + k_pp.sum() - k_pp.diagonal().sum()) / (n * (n - 1))
    return within - 2.0 * k_qp.sum() / (n * n)
