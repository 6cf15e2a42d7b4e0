"""Random generators keyed by tuples of integers, so that a draw depends on what it is for (seed,
update, micro-batch; seed, sample index) and not on how much randomness was used before it."""
import torch


def seeded_generator(*key: int, device="cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from ``key``.

    Python hashes tuples of ints without per-process salting, so the same key gives the same
    generator in every process and every run.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(hash(tuple(key)) % (2**63))
    return generator
