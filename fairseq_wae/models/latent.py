"""Latent heads: the one place where the DAE/WAE and the VAE/stochastic WAE encoders differ."""
import contextlib
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

from fairseq_wae.distributed import global_sum
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
    as in evaluation.

    Each worker (and micro-batch) normalises by its own batch, as torch's BatchNorm does without
    SyncBatchNorm. The running statistics move once per optimizer step (:meth:`end_update`), from the
    count, sum and sum of squares of every sentence that the update's micro-batches on every worker
    encoded, as a synchronised BatchNorm would gather them: so N workers x ``--update-freq K`` keep the
    statistics of one process x ``--update-freq N*K``, and every worker validates with those the
    checkpoint keeps. The sums are kept in float64, as a plain tensor (not a buffer: ``--fp16`` would
    halve it, and no checkpoint should hold it); the task starts them afresh at the first micro-batch of
    every update, and of every retry of one (:meth:`begin_update`)."""

    def __init__(self, latent_dim: int, gamma: float, momentum: float = 0.1):
        super().__init__()
        self.gamma, self.momentum = gamma, momentum
        self.shift = nn.Parameter(torch.zeros(latent_dim))
        self.register_buffer("running_mean", torch.zeros(latent_dim))
        self.register_buffer("running_var", torch.ones(latent_dim))
        self.update_sums: Optional[Tensor] = None  # [count, sum (latent_dim), sum of squares (latent_dim)]

    def forward(self, mean: Tensor) -> Tensor:
        x = mean.float()
        if self.training:
            with torch.no_grad():
                rows = x.double()
                sums = torch.cat([rows.new_full((1,), rows.size(0)), rows.sum(0), rows.square().sum(0)])
                # a new tensor, not added in place: padding_adds_nothing puts the old one back
                self.update_sums = sums if self.update_sums is None else self.update_sums + sums
        if self.training and x.size(0) > 1:
            batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        else:
            batch_mean, batch_var = self.running_mean.float(), self.running_var.float()
        normalised = (x - batch_mean) * torch.rsqrt(batch_var.clamp_min(torch.finfo(torch.float32).tiny))
        return (self.gamma * normalised + self.shift.float()).to(mean.dtype)

    def begin_update(self) -> None:
        self.update_sums = None

    def end_update(self) -> None:
        """Moves the running statistics once, by the momentum, towards the mean and the unbiased variance of
        every sentence this update encoded on every worker (one all-reduce, nothing read on the host);
        unchanged by an update of fewer than 2 sentences."""
        d = self.running_mean.numel()
        sums = self.update_sums if self.update_sums is not None else \
            torch.zeros(1 + 2 * d, dtype=torch.float64, device=self.running_mean.device)
        self.update_sums = None
        sums = global_sum(sums.to(self.running_mean.device))  # every worker takes part, with zeros if it had none
        count = sums[0]
        batch_mean = sums[1:1 + d] / count.clamp_min(1)
        unbiased = (sums[1 + d:] - count * batch_mean.square()).clamp_min(0) / (count - 1).clamp_min(1)
        moved = count > 1
        for running, statistic in ((self.running_mean, batch_mean), (self.running_var, unbiased)):
            updated = running.double().lerp(statistic, self.momentum)
            running.copy_(torch.where(moved, updated, running.double()))

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, momentum={self.momentum}"


@contextlib.contextmanager
def padding_adds_nothing(model: nn.Module):
    """Within: forwards that add nothing to the update's batch statistics (the weightless padding batch of a
    data-parallel worker out of data, see the task's ``_stand_in_for_padding``)."""
    norms = [module for module in model.modules() if isinstance(module, FixedScaleBatchNorm)]
    before = [norm.update_sums for norm in norms]
    try:
        yield
    finally:
        for norm, sums in zip(norms, before):
            norm.update_sums = sums


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
