"""Data-parallel helpers."""
from typing import List, Sequence, Tuple

import torch
import torch.distributed as dist
from fairseq.distributed import utils as distributed_utils
from torch import Tensor



def data_parallel_workers() -> Tuple[int, int]:
    """(this worker's rank, the number of data-parallel workers), as fairseq counts them; (0, 1) without a
    process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return distributed_utils.get_data_parallel_rank(), distributed_utils.get_data_parallel_world_size()


def _parallel() -> bool:
    return data_parallel_workers()[1] > 1


#: a CPU group over the same workers, for the row counts a gather needs first (made on the first gather,
#: which every worker reaches together: a collective; the default group where it is gloo already)
_COUNT_GROUP = []


def _count_group():
    if not _COUNT_GROUP:
        _COUNT_GROUP.append(None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo"))
    return _COUNT_GROUP[0]


def gather_rows(x: Tensor) -> Tensor:
    """The rows of ``x`` from every data-parallel worker, in rank order, as one tensor of their real rows.

    Each worker's row count is a host integer (a shape): the counts are gathered first over a CPU group,
    so no value is read back from the device; then every worker's rows are padded to the largest count of
    this call, gathered, and the padding dropped. Gradients flow to this worker's own rows only; the other
    workers' rows are constants here, and their own copies of this computation carry their gradients.
    Without a process group, ``x`` itself.
    """
    if not _parallel():
        return x
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([x.size(0)]), group=_count_group())
    counts = torch.cat(counts).tolist()
    padded = torch.cat([x.detach(), x.new_zeros((max(counts) - x.size(0),) + x.shape[1:])])
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    rank = dist.get_rank()
    return torch.cat([x if r == rank else part[:count] for r, (part, count) in enumerate(zip(parts, counts))])


def global_sum(x: Tensor) -> Tensor:
    """``x`` summed over the data-parallel workers, as a tensor on its device (``x`` without a process group)."""
    if not _parallel():
        return x
    total = x.clone()
    dist.all_reduce(total)
    return total


def global_sums(values: Sequence[float], device=None) -> List[float]:
    """Each value summed over the data-parallel workers (the values themselves without a process group)."""
    if not _parallel():
        return list(values)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    return global_sum(torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)).tolist()


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """``x`` in the forward pass; ``factor`` times its gradient in the backward pass."""
    return x.detach() + (x - x.detach()) * factor
