"""Data-parallel helpers."""
from typing import List, Sequence, Tuple

import torch
import torch.distributed as dist
from fairseq.distributed import utils as distributed_utils
from torch import Tensor

from fairseq_wae.errors import Refusal


def data_parallel_workers() -> Tuple[int, int]:
    """(this worker's rank, the number of data-parallel workers), as fairseq counts them; (0, 1) without a
    process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return distributed_utils.get_data_parallel_rank(), distributed_utils.get_data_parallel_world_size()


def _parallel() -> bool:
    return data_parallel_workers()[1] > 1


def gather_padded(x: Tensor, rows: int) -> Tuple[Tensor, Tensor]:
    """The rows of ``x`` from every data-parallel worker, in rank order, as ``(rows_of_all, valid)``:
    each worker's rows padded to ``rows`` (every worker knows that shape beforehand, so nothing is read
    back to the host), then the real rows moved to the front in their order, ``valid`` marking them.

    Gradients flow to this worker's own rows only; the other workers' rows are constants here, and
    their own copies of this computation carry their gradients. Without a process group, ``x`` itself
    with every row valid.
    """
    if not _parallel():
        return x, torch.ones(x.size(0), dtype=torch.bool, device=x.device)
    if x.size(0) > rows:
        raise Refusal(f"{x.size(0)} rows to gather, over the {rows} that every worker pads to: a batch larger "
                      "than --batch-size / --batch-size-valid")
    real = (torch.arange(rows, device=x.device) < x.size(0)).to(x.dtype).unsqueeze(1)
    padded = torch.cat([x, x.new_zeros((rows - x.size(0),) + x.shape[1:])])
    marked = torch.cat([padded.detach(), real], dim=1)
    parts = [torch.empty_like(marked) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, marked)
    rank = dist.get_rank()
    gathered = torch.cat([padded if r == rank else part[:, :-1] for r, part in enumerate(parts)])
    valid = torch.cat([part[:, -1] for part in parts]) > 0.5
    order = torch.argsort((~valid).to(torch.int32), stable=True)
    return gathered.index_select(0, order), valid.index_select(0, order)


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
