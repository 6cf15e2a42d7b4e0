"""Random generators keyed by tuples of integers, so that a draw depends on what it is for (seed,
update, micro-batch; seed, sample index) and not on how much randomness was used before it."""
import math
from typing import Tuple

import torch
from torch import Tensor

from fairseq_wae.errors import Refusal


def seeded_seed(*key: int) -> int:
    """A seed made from ``key``. Python hashes tuples of ints without per-process salting, so the same
    key gives the same seed in every process and every run."""
    return hash(tuple(key)) % (2**63)


def seeded_generator(*key: int, device="cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from ``key`` (:func:`seeded_seed`)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seeded_seed(*key))
    return generator


def keyed_draws(ids, dim: int, seed: int) -> Tuple[Tensor, Tensor]:
    """For each sample index i of ``ids``: ``dim`` draws of N(0, 1) and then one of U(0, 1), from a generator
    seeded by (seed, i), as [len(ids), dim] and [len(ids)] float32 tensors: what a prior sample is made
    of, the same whichever batch it is drawn in (the uniform picks a mixture's component; N(0, I) has
    no use for it, and its normal draws are the same with or without it)."""
    unit, uniform = torch.empty(len(ids), dim), torch.empty(len(ids))
    for row, i in enumerate(ids):
        generator = seeded_generator(seed, int(i))
        unit[row] = torch.randn(dim, generator=generator)
        uniform[row] = torch.rand(1, generator=generator)
    return unit, uniform


def normal_rows(rows: int, dim: int, generator: torch.Generator, device, dtype=torch.float32) -> Tensor:
    """``rows x dim`` draws of N(0, 1) (Box-Muller on uniform draws) whose first k rows are the same
    however many rows are drawn, on the CPU, where torch.rand fills in order: torch.randn's are not (its
    CPU kernel transforms in blocks of 16). A padded batch thus draws for its real rows what the batch
    without padding draws."""
    uniform = torch.rand((rows, 2, dim), generator=generator, device=device,
                         dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    radius = torch.sqrt(-2.0 * torch.log1p(-uniform[:, 0]))  # 1 - u lies in (0, 1]: a finite log
    return (radius * torch.cos(2.0 * math.pi * uniform[:, 1])).to(dtype)


#: fairseq-generate seeds numpy with ``--seed``, and numpy takes no seed outside 0 .. 2**32 - 1.
LARGEST_SEED = 2**32 - 1


def check_seed(seed, what: str = "seed") -> None:
    """Refuses a seed that is not an integer in 0 .. LARGEST_SEED, naming the argument ``what``:
    the range of ``fairseq-generate --seed``, whose samples the Python interface's repeat."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{what} must be an integer, got {seed!r}")
    if not 0 <= seed <= LARGEST_SEED:
        raise Refusal(f"{what} must be in 0 .. 2**32 - 1 = {LARGEST_SEED:,} (the range of fairseq-generate "
                      f"--seed, which seeds numpy), got {seed}")
