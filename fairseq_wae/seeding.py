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


#: fairseq-generate seeds numpy with ``--seed``, and numpy takes no seed outside 0 .. 2**32 - 1.
LARGEST_SEED = 2**32 - 1


def check_seed(seed, what: str = "seed") -> None:
    """Refuses a seed that is not an integer in 0 .. LARGEST_SEED, naming the argument ``what``:
    the range of ``fairseq-generate --seed``, whose samples the Python interface's repeat."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{what} must be an integer, got {seed!r}")
    if not 0 <= seed <= LARGEST_SEED:
        raise ValueError(f"{what} must be in 0 .. 2**32 - 1 = {LARGEST_SEED:,} (the range of fairseq-generate "
                         f"--seed, which seeds numpy), got {seed}")
