"""Paths between two codes, for walking the latent space from one sentence to another (the Python
interface's ``interpolate``, and fairseq-wae-interpolate)."""
import torch
from torch import Tensor


def lerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Linear interpolation (1 - t) a + t b."""
    return (1 - t) * a + t * b


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation along the great circle from a to b (White 2016); linear when parallel."""
    cos = torch.clamp((a @ b) / (a.norm() * b.norm()), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        return lerp(a, b, t)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
