"""Sentence corpora to fairseq binaries: reading, tokenising, splitting and binarizing.

Used by ``scripts/prepare_snli.py`` and ``scripts/prepare_corpus.py``. The corpus streams through:
sentences are read as they are tokenised (by ``--workers`` processes) into a file, de-duplicated and
split by offset, so memory does not hold the sentences. The binaries are what fairseq-preprocess
--only-source writes, byte for byte (a test compares), made with fairseq's own Dictionary and mmap
index writer; only the word lookup is done in bulk rather than a tensor per sentence.
"""
import array
import collections
import gzip
import hashlib
import itertools
import json
import logging
import os
import random
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from fairseq_wae.errors import Refusal
from fairseq_wae.tokenizer import DESCRIPTION as TOKENIZER_DESCRIPTION
from fairseq_wae.tokenizer import NormalizedMosesTokenizer, without_invisible_characters

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class CorpusError(Refusal):
    """Bad input: the message names the file, line or option."""


@dataclass
class ReadReport:
    """What reading skipped, by reason: how many lines, and the first ten line numbers (a count, not a
    list of every line, whatever the file's size)."""

    path: str
    kept: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    first_lines: Dict[str, List[int]] = field(default_factory=dict)

    def skip(self, reason: str, line_number: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        lines = self.first_lines.setdefault(reason, [])
        if len(lines) < 10:
            lines.append(line_number)

    def as_json(self) -> Dict:
        return {"path": os.path.basename(self.path), "kept": self.kept,
                "skipped": {reason: {"count": count, "first_lines": self.first_lines[reason]}
                            for reason, count in self.skipped.items()}}

    def summary(self) -> str:
        parts = [f"{count} {reason} (lines {', '.join(map(str, self.first_lines[reason][:5]))}"
                 f"{', ...' if count > 5 else ''})" for reason, count in self.skipped.items()]
        return f"{self.path}: kept {self.kept}" + (f", skipped {'; '.join(parts)}" if parts else "")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


_STREAM_COPIES: Dict[str, str] = {}


def readable_copy(path: str) -> str:
    """A path that reads the bytes of ``path`` as often as needed: ``path`` itself for a regular file;
    for a stream (a FIFO, a pipe given as /dev/stdin, a character device) a temporary copy, made at
    the first call and removed at exit. A stream's size says nothing (0), and once read it is empty,
    while an input is read to sniff its format, to read it and to hash it."""
    import atexit
    import stat
    import tempfile

    if stat.S_ISREG(os.stat(path).st_mode):
        return path
    if path not in _STREAM_COPIES:
        descriptor, copy = tempfile.mkstemp(prefix="fairseq-wae-input-")
        atexit.register(lambda: os.path.exists(copy) and os.remove(copy))
        with open(path, "rb") as stream, os.fdopen(descriptor, "wb") as f:
            shutil.copyfileobj(stream, f, 1 << 20)
        _STREAM_COPIES[path] = copy
    return _STREAM_COPIES[path]


def _open_binary(path: str):
    """Opens a text file for reading bytes: gzip by its magic bytes (whatever its name), refusing
    folders, empty files, other archives and binary files (a NUL byte in the first 8 KiB). Streams
    are read through ``readable_copy``."""
    if not os.path.exists(path):
        raise CorpusError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CorpusError(f"{path} is a folder, not a text file")
    source = readable_copy(path)
    if os.path.getsize(source) == 0:
        raise CorpusError(f"{path} is empty")
    with open(source, "rb") as f:
        magic = f.read(4)
    if magic.startswith(ZIP_MAGIC):
        raise CorpusError(f"{path} is a zip archive, not a text file (only the official SNLI zip is read as one)")
    f = gzip.open(source, "rb") if magic.startswith(GZIP_MAGIC) else open(source, "rb")
    try:
        head = f.peek(8192)[:8192] if hasattr(f, "peek") else b""
    except (OSError, EOFError, zlib.error) as e:
        f.close()
        raise CorpusError(f"{path} is cut short or damaged: it starts as gzip but does not inflate ({e}). Copy or "
                          "download it again (gzip -t checks a .gz file)")
    if b"\x00" in head:
        f.close()
        raise CorpusError(f"{path} looks like a binary file (it holds NUL bytes), not one sentence a line")
    return f


def text_lines(f, block_size: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a binary stream without their ends; a line ends at \\n, \\r\\n or a lone \\r (old
    Mac files). Python's binary line iteration knows only \\n, which made a CR-only file one sentence.
    Read in blocks of ``block_size`` bytes; a \\r\\n split between two blocks is one line end."""
    pending = b""
    for block in iter(lambda: f.read(block_size), b""):
        data = pending + block
        held = data.endswith(b"\r")  # may be the first half of a \r\n
        if held:
            data = data[:-1]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        pending = lines.pop() + (b"\r" if held else b"")
        yield from lines
    if pending:
        lines = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        yield from lines[:-1] if lines[-1] == b"" else lines


def _lines_of(f, path: str) -> Iterator[bytes]:
    """``text_lines`` of an opened input, a damaged one refused naming ``path``: gzip cut short (an
    interrupted download or copy) or corrupt, a zip member that does not inflate, a read error."""
    number = 0
    try:
        for number, line in enumerate(text_lines(f), start=1):
            yield line
    except (EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile) as e:
        raise CorpusError(f"{path} is cut short or damaged: its compressed data breaks off after line {number} "
                          f"({e}). Copy or download it again (gzip -t checks a .gz file)")
    except OSError as e:
        raise CorpusError(f"{path}: reading failed after line {number} ({e.strerror or e})")


def _decoded_lines(f, path: str, report: ReadReport, strict: bool):
    """(line number, text) of the non-empty UTF-8 lines of the opened input ``f``; bad ones are skipped
    and counted, or fatal. A line of invisible characters alone (a zero-width space, a byte-order mark)
    is an empty line."""
    for number, raw in enumerate(_lines_of(f, path), start=1):
        try:
            text = without_invisible_characters(raw.decode("utf-8")).strip()
        except UnicodeDecodeError:
            if strict:
                raise CorpusError(f"{report.path}, line {number}: not valid UTF-8")
            report.skip("non-UTF-8", number)
            continue
        if not text:
            if strict:
                raise CorpusError(f"{report.path}, line {number}: empty line")
            report.skip("empty", number)
            continue
        yield number, text


def plain_sentences(path: str, strict: bool, reports: List[ReadReport]) -> Iterator[str]:
    """The sentences of a one-sentence-a-line file (``.gz`` allowed), read as they are iterated; what
    reading skips goes into a report appended to ``reports``. The file is checked at once (it exists,
    holds text, is not JSON lines: that is not plain text), so a wrong input is refused before anything
    is read in full."""
    with _open_binary(path) as f:
        first = next((text for _, text in _decoded_lines(f, path, ReadReport(path), strict=False)), "")
    if first.startswith("{") and _is_json(first):
        raise CorpusError(f"{path} looks like JSON lines, not one sentence a line "
                          "(for SNLI jsonl use scripts/prepare_snli.py --snli-path)")
    report = ReadReport(path)
    reports.append(report)
    return _plain_sentences(path, strict, report)


def _plain_sentences(path: str, strict: bool, report: ReadReport) -> Iterator[str]:
    with _open_binary(path) as f:
        for _, text in _decoded_lines(f, path, report, strict):
            report.kept += 1
            yield text
    if not report.kept:
        raise CorpusError(f"{path} holds no sentence: {report.summary()}")


def read_plain_sentences(path: str, strict: bool = False) -> (List[str], ReadReport):
    """``plain_sentences`` as a list (for files that fit in memory), with its report."""
    reports = []
    sentences = list(plain_sentences(path, strict, reports))
    return sentences, reports[0]


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def snli_sentences(path: str, splits: Sequence[str], strict: bool, reports: List[ReadReport]) -> Iterator[str]:
    """Premises and hypotheses from SNLI in any of its forms, read as they are iterated (a report per
    file or zip member appended to ``reports``); the input is checked at once.

    ``path`` is the official ``snli_1.0.zip`` (the members for ``splits`` are read), an SNLI
    ``.jsonl`` or ``.txt`` (tab-separated with a header) file, or a plain one-sentence-a-line file.
    """
    if path.endswith(".zip"):
        if not os.path.exists(path):
            raise CorpusError(f"no such file: {path}")
        try:
            with zipfile.ZipFile(readable_copy(path)) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as e:
            raise CorpusError(f"{path} is not a readable zip archive ({e}): download the official SNLI 1.0 zip "
                              "again, or give its jsonl files")
        members = []
        for split in splits:
            member = next((n for n in names if n.endswith(f"snli_1.0_{split}.jsonl")), None)
            if member is None:
                raise CorpusError(f"{path} has no snli_1.0_{split}.jsonl: is it the official SNLI 1.0 zip?")
            members.append(member)
        return _zip_records(path, members, strict, reports)
    with _open_binary(path) as f:
        first_text = next((line.decode("utf-8-sig", errors="replace").strip() for line in _lines_of(f, path)
                           if line.strip()), "")
    if first_text.startswith("{") and _is_json(first_text) or first_text.startswith("gold_label\t"):
        report = ReadReport(path)
        reports.append(report)
        return _file_records(path, strict, report)
    return plain_sentences(path, strict, reports)


def _zip_records(path: str, members: Sequence[str], strict: bool, reports: List[ReadReport]) -> Iterator[str]:
    with zipfile.ZipFile(readable_copy(path)) as archive:
        for member in members:
            report = ReadReport(f"{path}:{member}")
            reports.append(report)
            with archive.open(member) as f:
                yield from _snli_records(f, report.path, strict, report)


def _file_records(path: str, strict: bool, report: ReadReport) -> Iterator[str]:
    with _open_binary(path) as f:
        yield from _snli_records(f, path, strict, report)


def _snli_records(f, name: str, strict: bool, report: ReadReport) -> Iterator[str]:
    """The sentences of SNLI jsonl or tab-separated lines (with their header row)."""
    header = None
    for number, text in _decoded_lines(f, name, report, strict):
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                if strict:
                    raise CorpusError(f"{name}, line {number}: not a JSON object")
                report.skip("malformed JSON", number)
                continue
        else:
            columns = text.split("\t")
            if header is None:
                header = columns
                if "sentence1" not in header:
                    raise CorpusError(f"{name}: neither SNLI jsonl nor SNLI txt with a header row")
                continue
            record = dict(zip(header, columns))
        for key in ("sentence1", "sentence2"):
            sentence = without_invisible_characters(record.get(key) or "").strip()
            if sentence:
                report.kept += 1
                yield sentence
            else:
                report.skip(f"missing {key}", number)


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


def binarize(folder: str, vocab_size: int, text_suffix: str = ".txt") -> None:
    """dict.txt and {split}.bin/.idx in ``folder`` from train/valid/test{suffix}, the bytes
    ``fairseq-preprocess --only-source --nwordssrc vocab_size`` writes: its dictionary (fairseq's
    Dictionary: the words of train counted with one end of sentence a line, ``finalize`` keeping the
    most frequent, ties by spelling, padded to a multiple of 8) and its binaries (each line's ids and
    EOS, in the smallest id type that fits, and the mmap index: fairseq's header, then each sentence's
    size and byte offset). fairseq-preprocess makes a tensor for every sentence and a Python int for
    every offset; a dict lookup a word, block writes and numpy offsets are about 10x faster, hold 8
    bytes a sentence, and leave no work to share among workers."""
    import struct

    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import MMapIndexedDataset, _dtype_header_code, best_fitting_int_dtype

    counts, lines = collections.Counter(), 0
    with open(os.path.join(folder, "train" + text_suffix), encoding="utf-8") as f:
        for line in f:
            counts.update(line.split())
            lines += 1
    dictionary = Dictionary()
    for word, count in sorted(counts.items()):
        dictionary.add_symbol(word, count)
    dictionary.add_symbol(dictionary.eos_word, lines)
    del counts
    dictionary.finalize(threshold=0, nwords=vocab_size, padding_factor=8)
    dictionary.save(os.path.join(folder, "dict.txt"))
    dtype = best_fitting_int_dtype(len(dictionary))
    lookup, unk, eos = dictionary.indices.get, dictionary.unk(), dictionary.eos()
    for split in SPLITS:
        sizes = array.array("q")
        with open(os.path.join(folder, split + text_suffix), encoding="utf-8") as source, \
                open(os.path.join(folder, f"{split}.bin"), "wb") as data:
            for block in _batched(source, 1 << 14):
                ids = []
                for line in block:
                    words = line.split()
                    ids += [lookup(word, unk) for word in words]
                    ids.append(eos)
                    sizes.append(len(words) + 1)
                data.write(np.array(ids, dtype=dtype).tobytes())
        sizes = np.frombuffer(sizes, dtype=np.int64)
        with open(os.path.join(folder, f"{split}.idx"), "wb") as index:  # MMapIndexedDataset.Index.writer's bytes
            index.write(MMapIndexedDataset.Index._HDR_MAGIC + struct.pack("<Q", 1) +
                        struct.pack("<B", _dtype_header_code(dtype)) + struct.pack("<Q", len(sizes)))
            index.write(sizes.astype(np.int32).tobytes())
            index.write((np.dtype(dtype).itemsize * (np.cumsum(sizes) - sizes)).astype(np.int64).tobytes())


def vocabulary_stats(folder: str, counts: Dict[str, int]) -> Dict[str, float]:
    """The dictionary's size, and each split's OOV rate and average length (in tokens, EOS excluded),
    counted in its binaries (``counts``: its sentences): the words fairseq-preprocess mapped to
    ``<unk>`` are the ones the dictionary lacks. Read in chunks, whatever the corpus size."""
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(os.path.join(folder, "dict.txt"))
    stats = {"vocabulary_size": len(dictionary)}
    for name in SPLITS:
        tokens = unknown = 0
        for ids in token_id_chunks(os.path.join(folder, name)):
            tokens += len(ids)
            unknown += int(np.count_nonzero(ids == dictionary.unk()))
        tokens -= counts[name]  # each sentence's end-of-sentence id
        stats[f"{name}_oov_rate"] = unknown / max(tokens, 1)
        stats[f"{name}_avg_len"] = tokens / max(counts[name], 1)
    return stats


#: Sentences sentencepiece trains on at most (``--spm-input-sentences``): it holds its whole input in
#: memory, several times the text's size. Its own recommendation for large corpora; a corpus whose
#: train split is smaller is read whole, as before this bound existed.
SPM_INPUT_SENTENCES = 1_000_000


def train_sentencepiece(folder: str, vocab_size: int, input_sentences: int = SPM_INPUT_SENTENCES) -> None:
    """Trains a sentencepiece model on train.txt and writes {split}.spm.txt for every split.

    With more than ``input_sentences`` training sentences (0: no bound), sentencepiece trains on a
    sample of that many (its own reservoir sampling, with a fixed seed: the same model for the same
    train.txt). With fewer it is not told of a bound (spm.model records the options it was given), so
    it reads them all and learns the pieces it learnt before the bound existed.

    spm.model also records the paths it was given: it trains in ``folder`` on relative names, so the
    same corpus gives the same bytes wherever it is built (the staging folder's name holds a process id)."""
    import sentencepiece as spm

    with open(os.path.join(folder, "train.txt"), "rb") as f:
        sampled = 0 < input_sentences < sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    prefix = os.path.join(folder, "spm")
    started_in = os.getcwd()
    os.chdir(folder)
    try:
        spm.SentencePieceTrainer.train(
            input="train.txt", model_prefix="spm", vocab_size=vocab_size,
            character_coverage=1.0, model_type="unigram", num_threads=1, hard_vocab_limit=False,
            bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
            **({"input_sentence_size": input_sentences, "shuffle_input_sentence": True} if sampled else {}),
        )
    finally:
        os.chdir(started_in)
    processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
    for split in SPLITS:
        with open(os.path.join(folder, f"{split}.txt"), encoding="utf-8") as source, \
                open(os.path.join(folder, f"{split}.spm.txt"), "w", encoding="utf-8") as target:
            for lines in _batched(source, 10000):
                pieces = processor.encode([line.strip() for line in lines], out_type=str)
                target.write("".join(" ".join(sentence) + "\n" for sentence in pieces))


MANIFEST = "manifest.json"
STAGING_PREFIX = ".staging-"
#: Where the files of the corpus being replaced wait until the new one is in place.
PREVIOUS_PREFIX = ".previous-"
#: In --out from before the first file of a preparation moves in until after the last one: names both
#: corpora's files, so that any run can finish or undo a replacement that was killed half-way.
JOURNAL = "preparation-journal.json"
#: What a manifest written before it listed its files stands for.
_UNLISTED_OUTPUTS = tuple(f"{split}{ext}" for split in SPLITS for ext in (".txt", ".spm.txt", ".bin", ".idx")) + (
    "dict.txt", "spm.model", "spm.vocab", MANIFEST)


def read_manifest(folder: str) -> Optional[Dict]:
    """The folder's manifest.json, or None when there is none (or it does not parse)."""
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def files_written(manifest: Dict) -> List[str]:
    """The files a manifest says its preparation wrote (manifest.json included)."""
    return sorted(manifest.get("files", {})) + [MANIFEST] if "files" in manifest else list(_UNLISTED_OUTPUTS)


def token_id_chunks(prefix: str, chunk: int = 1 << 22) -> Iterator:
    """Every token id of ``{prefix}.bin`` (fairseq's mmap format), in the type its .idx names, ``chunk``
    ids at a time: read, not memory-mapped, so this process's memory stays a chunk whatever the size
    (mapped pages count in its resident memory)."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    dtype = MMapIndexedDataset.Index(prefix + ".idx").dtype
    with open(prefix + ".bin", "rb") as f:
        while len(ids := np.fromfile(f, dtype=dtype, count=chunk)):
            yield ids


def largest_token_id(prefix: str) -> int:
    """The largest token id in ``{prefix}.bin`` (-1 when it holds none): a dictionary with fewer
    entries does not belong to these binaries. Reads every token."""
    return max((int(ids.max()) for ids in token_id_chunks(prefix)), default=-1)


def describe_files(folder: str, names: Sequence[str]) -> Dict:
    """What manifest.json records of the files a preparation wrote: each one's sha256 (read in full by
    fairseq-wae-verify and by a rerun of the preparation), its size and each split's largest token id
    (what the task checks at every load, at a cost that does not grow with the corpus)."""
    return {"files": {name: sha256_of(os.path.join(folder, name)) for name in names},
            "sizes": {name: os.path.getsize(os.path.join(folder, name)) for name in names},
            "largest_token_id": {split: largest_token_id(os.path.join(folder, split)) for split in SPLITS
                                 if f"{split}.bin" in names and f"{split}.idx" in names}}


def write_manifest(folder: str, manifest: Dict) -> None:
    """``folder/manifest.json``, keys sorted: the same preparation gives the same bytes."""
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


def damaged_files(folder: str, manifest: Dict) -> List[str]:
    """Files the manifest lists that are missing or whose checksum changed."""
    if "files" not in manifest:
        return ["(manifest without checksums)"]
    return [name for name, digest in sorted(manifest["files"].items())
            if not os.path.isfile(os.path.join(folder, name)) or sha256_of(os.path.join(folder, name)) != digest]


def _remove_stale_staging(out: str) -> None:
    """Staging and previous-corpus folders are named after the process that made them: those of dead
    processes go (once no journal names them: ``finish_interrupted_preparation`` runs first)."""
    from fairseq_wae.save_dir_lock import process_alive

    for name in os.listdir(out):
        prefix = next((p for p in (STAGING_PREFIX, PREVIOUS_PREFIX) if name.startswith(p)), None)
        pid = name[len(prefix):] if prefix else ""
        if pid.isdigit() and not process_alive(int(pid)):
            logger.warning(f"removing {os.path.join(out, name)}, left by an interrupted preparation (process {pid})")
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def _move(source: str, destination: str) -> None:
    """One step of putting a corpus in place (atomic): every move in or out of --out goes through here,
    and the tests stop a preparation at each one."""
    os.replace(source, destination)


def _journal_paths(out: str, journal: Dict) -> (str, str):
    return os.path.join(out, journal["staging"]), os.path.join(out, journal["previous"])


def _roll_forward(out: str, journal: Dict) -> None:
    """Finishes a replacement from wherever it stopped: the old files out (manifest.json first), the new
    ones in (manifest.json last), then the journal out, which is the commit.

    Each step is a rename, and the old files all leave before the first new one arrives, so the state
    tells which are done: an old file still in --out has no copy in the previous-corpus folder, a new
    file not yet in --out is still in the staging folder. Idempotent; rolling back works from any state
    this leaves."""
    staging, previous = _journal_paths(out, journal)
    for name in journal["old"]["names"]:
        if not os.path.exists(os.path.join(previous, name)) and os.path.isfile(os.path.join(out, name)):
            _move(os.path.join(out, name), os.path.join(previous, name))
    for name in journal["new"]["names"]:
        if os.path.exists(os.path.join(staging, name)):
            _move(os.path.join(staging, name), os.path.join(out, name))
    _move(os.path.join(out, JOURNAL), os.path.join(previous, JOURNAL))


def _roll_back(out: str, journal: Dict) -> None:
    """Undoes a replacement from wherever it stopped (the reverse of ``_roll_forward``): the new files back
    into the staging folder, the old ones back into --out, then the journal out."""
    staging, previous = _journal_paths(out, journal)
    for name in reversed(journal["new"]["names"]):
        if not os.path.exists(os.path.join(staging, name)) and os.path.isfile(os.path.join(out, name)):
            _move(os.path.join(out, name), os.path.join(staging, name))
    for name in reversed(journal["old"]["names"]):
        if os.path.exists(os.path.join(previous, name)):
            _move(os.path.join(previous, name), os.path.join(out, name))
    _move(os.path.join(out, JOURNAL), os.path.join(staging, JOURNAL))


def _complete(out: str, journal: Dict, side: str) -> bool:
    """Whether every file of the journal's ``side`` ("old" or "new") is still somewhere: in --out, or in
    the folder it waits in."""
    staging, previous = _journal_paths(out, journal)
    waiting = previous if side == "old" else staging
    return all(os.path.isfile(os.path.join(out, name)) or os.path.isfile(os.path.join(waiting, name))
               for name in journal[side]["names"])


def read_journal(out: str) -> Optional[Dict]:
    """The journal of a replacement that did not finish, or None. One that does not parse is refused:
    only this tool writes it (written whole in the staging folder, then moved in)."""
    path = os.path.join(out, JOURNAL)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            journal = json.load(f)
        for key in ("process", "staging", "previous", "old", "new"):
            journal[key]  # noqa: B018 (a KeyError names what is missing)
        if not all(isinstance(name, str) for side in ("old", "new") for name in journal[side]["names"]):
            raise TypeError("a file name that is not a string")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorpusError(f"{path} is not a journal this tool can read ({e}): it says a preparation into {out} "
                          "stopped while moving files, but not which; move the folder aside and prepare again")
    return journal


def finish_interrupted_preparation(out: str, head: Dict, force: bool) -> None:
    """Repairs --out after a preparation that was killed while it moved its files in (its journal is
    there): the same inputs and options as ``head`` finish it; anything else undoes it, so the corpus
    that was there before is back. Either way no file is lost: until the journal goes, the new files
    wait in the staging folder and the old ones in the previous-corpus folder. When those folders were
    removed by hand neither is possible: refused, or with ``force`` the files either corpus wrote are
    removed (no other file is touched)."""
    journal = read_journal(out)
    if journal is None:
        return
    from fairseq_wae.save_dir_lock import process_alive

    path, pid = os.path.join(out, JOURNAL), journal["process"]
    if pid != os.getpid() and process_alive(pid):
        raise CorpusError(f"--out {out} is being written by another preparation (process {pid}, see {path}): "
                          "wait for it to end, or choose another --out")
    staging, previous = _journal_paths(out, journal)
    same = {key: journal["new"].get(key) for key in ("inputs", "options")} == \
        {key: head.get(key) for key in ("inputs", "options")}
    if same and _complete(out, journal, "new"):
        logger.warning(f"{out}: finishing the same preparation, which was killed while it moved its files in "
                       f"({path})")
        _roll_forward(out, journal)
    elif _complete(out, journal, "old"):
        logger.warning(f"{out}: undoing a preparation of {_describe_inputs(journal['new'])} that was killed while "
                       f"it moved its files in ({path}): the corpus that was there before is back")
        _roll_back(out, journal)
    elif force:
        names = sorted(set(journal["old"]["names"]) | set(journal["new"]["names"]))
        logger.warning(f"{out}: a preparation was killed while it moved its files in, and {staging} or {previous} "
                       f"is incomplete, so it can be neither finished nor undone: --force removes what the two "
                       f"preparations wrote ({', '.join(names)})")
        for name in names:
            if os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        os.remove(path)
    else:
        raise CorpusError(f"--out {out} holds a preparation that was killed while it moved its files in ({path}), "
                          f"and {staging} or {previous}, which it needs to finish or undo it, is incomplete: its "
                          "files come from two corpora. Pass --force to replace them (only the files the journal "
                          "lists), or choose another --out")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def _describe_inputs(side: Dict) -> str:
    return ", ".join(item.get("path", "?") for item in side.get("inputs") or []) or "(no inputs recorded)"


def replace_corpus(out: str, staging: str, old_names: Sequence[str], new_names: Sequence[str],
                   old_head: Optional[Dict], new_manifest: Dict) -> None:
    """Moves the files of the corpus in --out (``old_names``, those its manifest lists) into a
    previous-corpus folder and the new ones (``new_names``, all in ``staging``, manifest.json among them)
    in, with a journal in --out from before the first move until after the last: killed at any instant,
    --out holds the old corpus, the new one, or the journal, which fairseq-train refuses and the next
    preparation uses to finish or undo the replacement (``finish_interrupted_preparation``).

    manifest.json leaves first and arrives last. An exception (not a kill) undoes what was done."""
    previous = os.path.join(out, f"{PREVIOUS_PREFIX}{os.getpid()}")
    shutil.rmtree(previous, ignore_errors=True)
    os.makedirs(previous)
    order = lambda names: sorted(names, key=lambda name: (name == MANIFEST, name))  # noqa: E731
    journal = {
        "process": os.getpid(), "staging": os.path.basename(staging), "previous": os.path.basename(previous),
        "old": {"names": list(reversed(order(old_names))), **(old_head or {})},
        "new": {"names": order(new_names), "inputs": new_manifest["inputs"], "options": new_manifest["options"],
                "sha256": new_manifest["files"]},
    }
    written = os.path.join(staging, JOURNAL)
    with open(written, "w") as f:
        json.dump(journal, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _move(written, os.path.join(out, JOURNAL))
    try:
        _roll_forward(out, journal)
    except BaseException:
        _roll_back(out, journal)  # if this fails too, the journal stays for the next run
        raise
    shutil.rmtree(previous, ignore_errors=True)


def check_output_folder(out: str, inputs: Sequence[str]) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise CorpusError(f"--out {out} is a file, not a folder")
    folder = os.path.realpath(out)
    for path in inputs:
        if os.path.commonpath([folder, os.path.realpath(path)]) == folder:
            raise CorpusError(f"--out {out} contains the input {path}: write the corpus to another folder")


def output_names(spm: bool) -> List[str]:
    """The files a preparation writes besides manifest.json."""
    names = ["dict.txt"] + [f"{split}{ext}" for split in SPLITS for ext in (".txt", ".bin", ".idx")]
    if spm:
        names += ["spm.model", "spm.vocab"] + [f"{split}.spm.txt" for split in SPLITS]
    return sorted(names)


def _existing_corpus(out: str, head: Dict, spm: bool, force: bool, strict: bool):
    """What --out holds, decided before anything is read: (the manifest to return when it already holds
    this corpus, intact, else None; the files of the corpus there that this run may replace). Refuses
    another corpus without ``force`` and files no manifest lists, which nothing replaces."""
    finish_interrupted_preparation(out, head, force)
    existing = set()
    if os.path.isdir(out):
        _remove_stale_staging(out)
        existing = {name for name in os.listdir(out) if not name.startswith((STAGING_PREFIX, PREVIOUS_PREFIX))}
    previous = read_manifest(out) if existing else None
    ours = set(files_written(previous)) if previous is not None else set()
    if previous is not None and previous.get("inputs") == head["inputs"] and previous.get("options") == head["options"]:
        damaged = damaged_files(out, previous)
        if not damaged and "sizes" in previous and not (strict and previous.get("skipped_lines")):
            logger.info(f"{out} already holds this corpus (same inputs and options, files intact): nothing to do")
            return previous, ours
        if damaged:
            logger.warning(f"{out} holds this corpus but these files are missing or changed: {', '.join(damaged)}; "
                           "writing them again")
        elif "sizes" not in previous:
            logger.warning(f"{out} holds this corpus, but its manifest.json (from an earlier fairseq-wae) records no "
                           "file sizes, so every load hashes every file: writing it again with sizes")
    elif existing and not force:
        what = "another corpus (its manifest.json names other inputs or options)" if previous is not None \
            else "files that no manifest.json of this tool lists"
        raise CorpusError(f"--out {out} already holds {what}: choose another --out, or pass --force to replace "
                          "what an earlier preparation wrote there (other files are never touched)")
    clashes = [name for name in output_names(spm) + [MANIFEST] if name in existing and name not in ours]
    if clashes:
        raise CorpusError(f"--out {out} holds {', '.join(clashes)}, which no manifest.json of this tool lists: "
                          "refusing to overwrite; choose another --out")
    return None, {name for name in ours if os.path.isfile(os.path.join(out, name))}


@dataclass
class BuildOptions:
    """How a corpus is built from its sentences (what ``prepare`` checked and records)."""

    num_sentences: Optional[int]
    split: str
    seed: int
    vocab_size: int
    max_len: Optional[int]
    spm_vocab_size: Optional[int]
    spm_input_sentences: int
    workers: int


def build_corpus(staging: str, sentences: Iterable[str], reports: Sequence[ReadReport], build: BuildOptions) -> Dict:
    """Every file of the corpus, in ``staging``: the sentences tokenised (by ``build.workers``
    processes), de-duplicated, split and binarized (``binarize``); returns what the manifest records
    of them. Streams: this process holds tens of bytes per sentence, not the
    sentences (see ``TokenizedSentences``)."""
    store = TokenizedSentences(os.path.join(staging, "tokenized.tmp"))
    try:
        tokenize_into(store, sentences, build.max_len, build.workers)
        for report in reports:
            logger.info(report.summary())
        store.finish()
        kept = store.first_occurrences()
        counts = parse_split(build.split, len(kept), build.num_sentences)
        write_splits(staging, store, kept, counts, build.seed)
    finally:
        store.close()
    if build.spm_vocab_size:
        train_sentencepiece(staging, build.spm_vocab_size, build.spm_input_sentences)
    binarize(staging, build.vocab_size, ".spm.txt" if build.spm_vocab_size else ".txt")
    produced = output_names(bool(build.spm_vocab_size))
    if sorted(os.listdir(staging)) != produced:
        raise RuntimeError(f"{staging} holds {sorted(os.listdir(staging))}, not the files a preparation writes "
                           f"({produced}): fairseq-preprocess changed what it writes?")
    split_counts = dict(zip(SPLITS, counts))
    return {"unique_sentences": len(kept), "counts": split_counts,
            "skipped_lines": [report.as_json() for report in reports if report.skipped],
            **vocabulary_stats(staging, split_counts), **describe_files(staging, produced)}


def _make_staging_folder(out: str, staging: str) -> None:
    """``out`` (when new) and the staging folder in it; a folder this process may not write into is
    refused, naming it."""
    try:
        os.makedirs(out, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
    except OSError as e:
        raise CorpusError(f"cannot write into --out {out} ({e.strerror or e}): choose a folder you can write to, "
                          "or make this one writable") from None


def prepare(inputs: Sequence[str], sentences: Iterable[str], out: str, *, num_sentences: Optional[int], split: str,
            seed: int, vocab_size: int, max_len: Optional[int], spm_vocab_size: Optional[int], force: bool,
            reports: Sequence[ReadReport] = (), extra_options: Optional[Dict] = None, workers: int = 1,
            strict: bool = False, spm_input_sentences: int = SPM_INPUT_SENTENCES) -> Dict:
    """Tokenise, de-duplicate, subset, split and binarize ``sentences`` (an iterable read as it goes)
    read from ``inputs`` (``reports``: what reading them skips, filled while they are read, kept in the
    manifest), into ``out``, touching no file it did not write.

    ``manifest.json`` lists every file written with its checksum and size, and each split's largest
    token id. A rerun with the same inputs and options does nothing when those files are intact (decided
    before reading) and rewrites them when any is missing or changed, or when the manifest records no
    sizes (an earlier version's). An ``out`` that holds another corpus is replaced only with ``force``,
    and then only the files its manifest lists; a file of the same name that no manifest lists is never
    overwritten. Everything is built in a staging folder inside ``out`` first and moved in by
    ``replace_corpus``: killed at any instant, ``out`` holds the old corpus, the new one, or a journal
    with which the next run, with these options or the earlier ones, finishes or undoes the replacement.
    ``workers`` changes the speed, not a byte of the output; ``strict`` refuses skipped lines.
    """
    check_output_folder(out, inputs)
    if vocab_size < 1:
        raise CorpusError(f"--vocab-size must be at least 1, got {vocab_size}")
    if max_len is not None and max_len < 1:
        raise CorpusError(f"--max-len must be at least 1, got {max_len}")
    if workers < 1:
        raise CorpusError(f"--workers must be at least 1, got {workers}")
    if spm_input_sentences < 0 or 0 < spm_input_sentences <= 100:
        raise CorpusError(f"--spm-input-sentences must be 0 (all) or more than 100 (sentencepiece's least), got "
                          f"{spm_input_sentences}")
    split_parts(split)  # its form now; what it asks of the input once the distinct sentences are counted
    options = {"num_sentences": num_sentences if num_sentences is not None else "all", "split": split,
               "seed": seed, "vocab_size": vocab_size, "max_len": max_len, "spm_vocab_size": spm_vocab_size,
               "tokenizer": TOKENIZER_DESCRIPTION, **(extra_options or {})}
    if spm_vocab_size and spm_input_sentences != SPM_INPUT_SENTENCES:
        options["spm_input_sentences"] = spm_input_sentences  # the default is not recorded: earlier manifests hold
    head = {"inputs": [{"path": os.path.basename(p), "sha256": sha256_of(readable_copy(p))} for p in inputs],
            "options": options}
    done, replaced = _existing_corpus(out, head, bool(spm_vocab_size), force, strict)
    if done is not None:
        return done
    build = BuildOptions(num_sentences, split, seed, vocab_size, max_len, spm_vocab_size, spm_input_sentences, workers)
    out_existed = os.path.isdir(out)
    staging = os.path.join(out, f"{STAGING_PREFIX}{os.getpid()}")
    try:
        _make_staging_folder(out, staging)
        manifest = {**head, **build_corpus(staging, sentences, reports, build)}
        write_manifest(staging, manifest)
        previous = read_manifest(out) if replaced else None
        old_head = {"inputs": previous.get("inputs"), "options": previous.get("options"),
                    "sha256": previous.get("files")} if previous else None
        replace_corpus(out, staging, sorted(replaced), output_names(bool(spm_vocab_size)) + [MANIFEST], old_head,
                       manifest)
    except OSError as e:  # disk full, a file-size limit (Python ignores SIGXFSZ: the write fails instead)
        where = f" ({e.filename})" if e.filename else ""
        state = (f"{os.path.join(out, JOURNAL)} remains: the next run repairs --out" if
                 os.path.exists(os.path.join(out, JOURNAL)) else "--out is as it was")
        raise CorpusError(f"writing the corpus into --out {out} failed: {e.strerror or e}{where}. {state}; free some "
                          "space (or raise the file-size limit, ulimit -f) and run again") from e
    finally:
        if not os.path.exists(os.path.join(out, JOURNAL)):  # else the journal needs the staging folder
            shutil.rmtree(staging, ignore_errors=True)
        if not out_existed and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)  # made by this run, which failed
    return manifest
