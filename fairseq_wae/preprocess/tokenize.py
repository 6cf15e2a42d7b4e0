"""Tokenising sentences in parallel (``--workers``) into a file of the staging folder
(``TokenizedSentences``), with the tokeniser every other tool uses (fairseq_wae.tokenizer)."""
import array
import collections
import hashlib
import itertools
import os
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from fairseq_wae.tokenizer import NormalizedMosesTokenizer


class Tokenizer:
    """The corpus's tokens of a raw sentence, at most ``max_len`` of them: fairseq_wae.tokenizer's
    normalisation and lower-cased Moses tokenisation, the same as every other tool's."""

    def __init__(self):
        self.tokenizer = NormalizedMosesTokenizer()

    def __call__(self, sentence: str, max_len: Optional[int] = None) -> str:
        tokens = self.tokenizer.tokens(sentence)
        return " ".join(tokens[:max_len] if max_len else tokens)


#: Raw sentences a tokenising worker gets at a time: sending them costs little beside tokenising them
#: (about 0.1%), and the batches in flight hold little memory.
BATCH_SENTENCES = 2000
_tokenizer: Optional[Tokenizer] = None


def tokenized_batch(sentences: Sequence[str], max_len: Optional[int]) -> (bytes, bytes, bytes):
    """What ``TokenizedSentences`` keeps of a batch: the sentences' non-empty tokenisations as UTF-8
    lines in one block, each line's length in bytes (int64) and its 8-byte blake2b digest. Runs in a
    worker, or in the main process with one worker: the same bytes either way."""
    tokenize = _shared_tokenizer()
    lines = [(tokens + "\n").encode("utf-8") for tokens in (tokenize(s, max_len) for s in sentences) if tokens]
    return (b"".join(lines), array.array("q", map(len, lines)).tobytes(),
            b"".join(hashlib.blake2b(line, digest_size=8).digest() for line in lines))


def _shared_tokenizer() -> Tokenizer:
    """This process's Tokenizer, made at the first call (before the workers fork, which then share it
    and its Unicode tables instead of each building them)."""
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = Tokenizer()
        _tokenizer("warm")  # builds the tables normalisation uses
    return _tokenizer


def _batched(items: Iterable, size: int) -> Iterator[List]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class TokenizedSentences:
    """The tokenised sentences of a preparation in input order, in a file in the staging folder (one a
    line) instead of Python objects: memory holds 16 bytes a sentence (its length and a hash) while
    reading, about 40 while de-duplicating, whatever the sentences' length. Lines are read back by
    offset (``os.pread``: page cache, not this process's memory)."""

    def __init__(self, path: str):
        self.path = path
        self.file = open(path, "w+b")
        self._lengths, self._digests = array.array("q"), bytearray()
        self.offsets = self.hashes = None

    def add(self, block: bytes, lengths: bytes, digests: bytes) -> None:
        self.file.write(block)
        self._lengths.frombytes(lengths)
        self._digests += digests

    def __len__(self) -> int:
        return len(self._lengths) if self.offsets is None else len(self.offsets) - 1

    def finish(self) -> None:
        """Reading is over: offsets and hashes become numpy arrays."""
        self.file.flush()
        self.offsets = np.zeros(len(self._lengths) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(self._lengths, dtype=np.int64), out=self.offsets[1:])
        self.hashes = np.frombuffer(bytes(self._digests), dtype=np.uint64)
        self._lengths, self._digests = array.array("q"), bytearray()

    def line(self, i: int) -> bytes:
        return os.pread(self.file.fileno(), int(self.offsets[i + 1] - self.offsets[i]), int(self.offsets[i]))

    def first_occurrences(self):
        """The positions of the first occurrence of each distinct line, in input order (the old
        ``list(dict.fromkeys(...))``, without the dict). Lines are grouped by hash with a stable sort; in
        a group of several, the lines are compared byte for byte, so two lines that only share a hash
        both stay."""
        order = np.argsort(self.hashes, kind="stable")
        sorted_hashes = self.hashes[order]
        runs = np.zeros(len(self) + 1, dtype=np.int8)  # 1 where a sorted position repeats the one before
        runs[1:-1] = sorted_hashes[1:] == sorted_hashes[:-1]
        del sorted_hashes
        edges = np.diff(runs)  # 1 where a group of equal hashes starts, -1 at its last position
        keep = np.ones(len(self), dtype=bool)
        for start, end in zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) + 1).tolist()):
            seen = set()
            for position in order[start:end].tolist():  # ascending: the stable sort kept input order
                text = self.line(position)
                if text in seen:
                    keep[position] = False
                seen.add(text)
        return np.flatnonzero(keep)

    def close(self) -> None:
        self.file.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def tokenize_into(store: TokenizedSentences, sentences: Iterable[str], max_len: Optional[int], workers: int) -> None:
    """Tokenises ``sentences`` into ``store`` in input order, with ``workers`` processes (forked: they
    share this process's imports). At most 2 x workers + 1 batches are in flight, so memory does not
    grow with the corpus however fast the input is read."""
    if workers == 1:
        for batch in _batched(sentences, BATCH_SENTENCES):
            store.add(*tokenized_batch(batch, max_len))
        return
    import multiprocessing

    _shared_tokenizer()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        in_flight = collections.deque()
        for batch in _batched(sentences, BATCH_SENTENCES):
            in_flight.append(pool.apply_async(tokenized_batch, (batch, max_len)))
            if len(in_flight) > 2 * workers:
                store.add(*in_flight.popleft().get())
        while in_flight:
            store.add(*in_flight.popleft().get())
