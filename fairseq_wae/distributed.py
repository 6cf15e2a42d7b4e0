"""Data-parallel helpers."""
from typing import List, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def gather_with_local_grad(x: Tensor) -> Tensor:
    """Concatenates the rows of ``x`` from every data-parallel worker, in rank order.

    Gradients flow to this worker's own rows only; the other workers' rows are constants here, and
    their own copies of this computation carry their gradients. Workers may hold different numbers
    of rows. Without a process group, returns ``x``.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.size(0)], dtype=torch.long, device=x.device))
    sizes = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(sizes),) + x.shape[1:])
    padded[: x.size(0)] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [part[:size] for part, size in zip(parts, sizes)]
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def global_sums(values: Sequence[float], device=None) -> List[float]:
    """Each value summed over the data-parallel workers (the values themselves without a process group)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return totals.tolist()


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """``x`` in the forward pass; ``factor`` times its gradient in the backward pass."""
    return x.detach() + (x - x.detach()) * factor
