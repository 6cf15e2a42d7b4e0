"""The train/valid/test splits: ``--split`` parsed and checked, the de-duplicated sentences written
by offset, in an order drawn from ``--seed``."""
import array
import os
import random
from typing import List, Optional, Sequence

import numpy as np

from fairseq_wae.preprocess.manifest import SPLITS
from fairseq_wae.preprocess.readers import CorpusError
from fairseq_wae.preprocess.tokenize import TokenizedSentences


def split_parts(text: str) -> List[float]:
    """``--split``'s three numbers, refusing any other form (checked before the input is read)."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise CorpusError(f"--split must be three comma-separated numbers, got {text!r}")
    if len(parts) != 3 or min(parts) < 0:
        raise CorpusError(f"--split must be three non-negative numbers (train,valid,test), got {text!r}")
    return parts


def parse_split(text: str, available: int, num_sentences: Optional[int]) -> List[int]:
    """``90000,5000,5000`` (counts) or ``0.9,0.05,0.05`` (fractions of the subset) to three counts."""
    parts = split_parts(text)
    if all(p.is_integer() for p in parts) and sum(parts) > 1:
        counts = [int(p) for p in parts]
    elif abs(sum(parts) - 1.0) < 1e-6:
        total = num_sentences or available
        counts = [int(round(p * total)) for p in parts[1:]]
        counts = [total - sum(counts)] + counts
    else:
        raise CorpusError(f"--split {text!r}: give counts or fractions that sum to 1")
    if num_sentences is not None and sum(counts) != num_sentences:
        raise CorpusError(f"--split {text!r} sums to {sum(counts)}, not --num-sentences {num_sentences}")
    empty = [name for name, count in zip(SPLITS, counts) if count < 1]
    if empty:
        raise CorpusError(f"--split {text!r} leaves the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} "
                          f"without a sentence (of {num_sentences or available}): every split needs at least one")
    if sum(counts) > available:
        raise CorpusError(f"--split {text!r} needs {sum(counts)} sentences but the input has only {available} "
                          "unique ones")
    return counts


def write_splits(folder: str, store: TokenizedSentences, kept, counts: Sequence[int], seed: int) -> None:
    """A seeded random subset of ``sum(counts)`` of the distinct sentences (``kept``: their positions in
    ``store``), cut into {split}.txt. The order is random.Random(seed).shuffle of their indices, as it
    always was (the same files for the same seed); an array of int64, not a list of ints, is shuffled."""
    order = array.array("q", range(len(kept)))
    random.Random(seed).shuffle(order)
    picked, start = np.frombuffer(order, dtype=np.int64), 0
    for name, count in zip(SPLITS, counts):
        with open(os.path.join(folder, f"{name}.txt"), "wb") as f:
            for first in range(start, start + count, 1 << 16):
                rows = kept[picked[first:min(first + (1 << 16), start + count)]]
                f.write(b"".join(map(store.line, rows.tolist())))
        start += count
