"""Latent heads: the one place where the DAE/WAE and the VAE/stochastic WAE encoders differ."""
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor


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


class GaussianLatent(nn.Module):
    """q(z|x) = N(mu, diag(sigma^2)) with z = mu + eps * sigma (VAE, section 3.1; stochastic WAE)."""

    is_gaussian = True

    def __init__(self, input_size: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.to_mean = nn.Linear(input_size, latent_dim)
        self.to_logvar = nn.Linear(input_size, latent_dim)

    def forward(self, h: Tensor, sample: bool, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        mean, logvar = self.to_mean(h), self.to_logvar(h)
        # drawn in float32 whatever the model's precision: the same draws, and exp() cannot overflow
        z = reparameterize(mean.float(), logvar.float(), generator).to(mean.dtype) if sample else mean
        return {"z": z, "mean": mean, "logvar": logvar}


LATENT_HEADS = {"deterministic": DeterministicLatent, "gaussian": GaussianLatent}


def build_latent_head(kind: str, input_size: int, latent_dim: int) -> nn.Module:
    return LATENT_HEADS[kind](input_size, latent_dim)
