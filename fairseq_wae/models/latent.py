"""Latent heads: the one place where the DAE/WAE and the VAE/stochastic WAE encoders differ."""
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

from fairseq_wae.distributed import data_parallel_workers, global_sum
from fairseq_wae.errors import Refusal


def reparameterize(mean: Tensor, logvar: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """z = mu + eps * sigma, eps ~ N(0, I) (Kingma and Welling 2014): a differentiable sample of
    N(mean, diag(exp(logvar))), drawn from ``generator`` (torch's global one when None)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + eps * torch.exp(0.5 * logvar)


class DeterministicLatent(nn.Module):
    """z~ = f(x): a linear map of the encoder state (DAE, eq. 1; WAE, eq. 4)."""

    is_gaussian = False

    def __init__(self, input_size: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.to_z = nn.Linear(input_size, latent_dim)

    def forward(self, h: Tensor, sample: bool, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        return {"z": self.to_z(h)}


class FixedScaleBatchNorm(nn.Module):
    """BN-VAE's batch norm of the posterior means (Zhu et al., ACL 2020, "A Batch Normalized Inference
    Network Keeps the KL Vanishing Away"): mu' = gamma * (mu - batch mean) / sqrt(batch var) + beta,
    with gamma fixed and the shift beta learned, per dimension. Over a batch each dimension's mu'^2 then
    averages gamma^2 + beta^2, so the batch's mean KL(q(z|x) || N(0, I)) is at least 0.5 * latent_dim *
    gamma^2: the posterior cannot collapse onto the prior.

    Without torch's eps: BatchNorm adds eps (1e-5) to the variance, so an encoder whose means spread
    less than sqrt(eps) across the batch escapes the bound, and the KL's gradient (magnified by Adam,
    which divides it by its own size) drives it there (measured on lstm_vae_tiny with the KL alone
    minimised by Adam at lr 0.02, bound 2.88: with eps 1e-5 the batch KL started at 1.37, the means'
    variances being about 1e-5 at initialisation, and fell below 0.001 within 40 steps, as it did from
    2.91 with eps 1e-8; without eps it stayed at 2.88 for 100 steps). The variance is instead clamped at
    float32's smallest normal number, so that a dimension constant over the batch gives 0, not NaN.

    Statistics are computed in float32 whatever the model's precision. A batch of one sentence has no
    variance (torch's BatchNorm refuses it in training): it is normalised with the running statistics,
    as in evaluation, and leaves them unchanged. Each worker (and micro-batch) normalises by its own
    batch, as torch's BatchNorm does without SyncBatchNorm; after every update the running statistics
    become their average over the workers (:meth:`average_running_statistics`), so that every worker
    validates with the statistics the checkpoint keeps."""

    def __init__(self, latent_dim: int, gamma: float, momentum: float = 0.1):
        super().__init__()
        self.gamma, self.momentum = gamma, momentum
        self.shift = nn.Parameter(torch.zeros(latent_dim))
        self.register_buffer("running_mean", torch.zeros(latent_dim))
        self.register_buffer("running_var", torch.ones(latent_dim))

    def forward(self, mean: Tensor) -> Tensor:
        x = mean.float()
        if self.training and x.size(0) > 1:
            batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():  # the running variance is the unbiased one, as torch's BatchNorm keeps it
                unbiased = batch_var * x.size(0) / (x.size(0) - 1)
                self.running_mean.lerp_(batch_mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        else:
            batch_mean, batch_var = self.running_mean.float(), self.running_var.float()
        normalised = (x - batch_mean) * torch.rsqrt(batch_var.clamp_min(torch.finfo(torch.float32).tiny))
        return (self.gamma * normalised + self.shift.float()).to(mean.dtype)

    def average_running_statistics(self) -> None:
        """The running statistics averaged over the data-parallel workers (one all-reduce, nothing read
        on the host); unchanged without a process group."""
        _, workers = data_parallel_workers()
        if workers == 1:
            return
        statistics = global_sum(torch.stack([self.running_mean, self.running_var])) / workers
        self.running_mean.copy_(statistics[0])
        self.running_var.copy_(statistics[1])

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, momentum={self.momentum}"


class GaussianLatent(nn.Module):
    """q(z|x) = N(mu, diag(sigma^2)) with z = mu + eps * sigma (VAE, section 3.1; stochastic WAE); with
    ``bn_posterior_mean`` gamma, mu is batch-normalised at that fixed scale (BN-VAE)."""

    is_gaussian = True

    def __init__(self, input_size: int, latent_dim: int, bn_posterior_mean: Optional[float] = None):
        super().__init__()
        self.latent_dim = latent_dim
        self.to_mean = nn.Linear(input_size, latent_dim)
        self.to_logvar = nn.Linear(input_size, latent_dim)
        self.mean_norm = FixedScaleBatchNorm(latent_dim, bn_posterior_mean) if bn_posterior_mean else None

    def forward(self, h: Tensor, sample: bool, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        mean, logvar = self.to_mean(h), self.to_logvar(h)
        if self.mean_norm is not None:
            mean = self.mean_norm(mean)
        # drawn in float32 whatever the model's precision: the same draws, and exp() cannot overflow
        z = reparameterize(mean.float(), logvar.float(), generator).to(mean.dtype) if sample else mean
        return {"z": z, "mean": mean, "logvar": logvar}


LATENT_HEADS = {"deterministic": DeterministicLatent, "gaussian": GaussianLatent}


def build_latent_head(cfg, input_size: int) -> nn.Module:
    """The head ``cfg`` names (``--latent-head``, ``--latent-dim``, ``--bn-posterior-mean``) on an encoder
    state of ``input_size``; refuses a BN-VAE option that would be ignored."""
    gamma = getattr(cfg, "bn_posterior_mean", None)
    if gamma is None:
        return LATENT_HEADS[cfg.latent_head](input_size, cfg.latent_dim)
    if cfg.latent_head != "gaussian":
        raise Refusal(f"--bn-posterior-mean normalises a Gaussian head's posterior mean: add --latent-head gaussian "
                      f"(or a *_vae_* arch); this model's head is {cfg.latent_head}")
    if not gamma > 0:
        raise Refusal(f"--bn-posterior-mean (BN-VAE's fixed scale gamma) must be > 0, got {gamma}; Zhu et al. use "
                      "0.3 to 0.9")
    return GaussianLatent(input_size, cfg.latent_dim, bn_posterior_mean=gamma)
