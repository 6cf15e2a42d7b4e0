"""Sentence corpora to fairseq binaries: reading, tokenising, splitting and binarizing.

Used by ``scripts/prepare_snli.py`` and ``scripts/prepare_corpus.py``; the binarization itself is
fairseq-preprocess (through its Python entry point), never a re-implementation.
"""
import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from fairseq_wae.tokenizer import DESCRIPTION as TOKENIZER_DESCRIPTION
from fairseq_wae.tokenizer import NormalizedMosesTokenizer, without_invisible_characters

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class CorpusError(ValueError):
    """Bad input: the message names the file, line or option."""


@dataclass
class ReadReport:
    """What reading skipped, by reason, with the first few line numbers."""

    path: str
    kept: int = 0
    skipped: Dict[str, List[int]] = field(default_factory=dict)

    def skip(self, reason: str, line_number: int) -> None:
        self.skipped.setdefault(reason, []).append(line_number)

    def as_json(self) -> Dict:
        return {"path": os.path.basename(self.path), "kept": self.kept,
                "skipped": {reason: {"count": len(lines), "first_lines": lines[:10]}
                            for reason, lines in self.skipped.items()}}

    def summary(self) -> str:
        parts = [f"{len(lines)} {reason} (lines {', '.join(map(str, lines[:5]))}{', ...' if len(lines) > 5 else ''})"
                 for reason, lines in self.skipped.items()]
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


def read_plain_sentences(path: str, strict: bool = False) -> (List[str], ReadReport):
    """One sentence a line (``.gz`` allowed). JSON lines are refused: they are not plain text."""
    report = ReadReport(path)
    sentences = []
    with _open_binary(path) as f:
        for number, text in _decoded_lines(f, path, report, strict):
            if not sentences and text.startswith("{") and _is_json(text):
                raise CorpusError(f"{path} looks like JSON lines, not one sentence a line "
                                  "(for SNLI jsonl use scripts/prepare_snli.py --snli-path)")
            sentences.append(text)
    report.kept = len(sentences)
    if not sentences:
        raise CorpusError(f"{path} holds no sentence: {report.summary()}")
    return sentences, report


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def read_snli_sentences(path: str, splits: Sequence[str] = ("train",), strict: bool = False):
    """Premises and hypotheses from SNLI in any of its forms.

    ``path`` is the official ``snli_1.0.zip`` (the members for ``splits`` are read), an SNLI
    ``.jsonl`` or ``.txt`` (tab-separated with a header) file, or a plain one-sentence-a-line file.
    """
    if path.endswith(".zip"):
        if not os.path.exists(path):
            raise CorpusError(f"no such file: {path}")
        sentences, reports = [], []
        with zipfile.ZipFile(readable_copy(path)) as archive:
            for split in splits:
                member = next((n for n in archive.namelist() if n.endswith(f"snli_1.0_{split}.jsonl")), None)
                if member is None:
                    raise CorpusError(f"{path} has no snli_1.0_{split}.jsonl: is it the official SNLI 1.0 zip?")
                with archive.open(member) as f:
                    found, report = _read_snli_records(f, f"{path}:{member}", strict)
                sentences += found
                reports.append(report)
        return sentences, reports
    with _open_binary(path) as f:
        first_text = next((line.decode("utf-8-sig", errors="replace").strip() for line in _lines_of(f, path)
                           if line.strip()), "")
    if first_text.startswith("{") and _is_json(first_text) or first_text.startswith("gold_label\t"):
        with _open_binary(path) as f:
            sentences, report = _read_snli_records(f, path, strict)
        return sentences, [report]
    sentences, report = read_plain_sentences(path, strict)
    return sentences, [report]


def _read_snli_records(f, name: str, strict: bool):
    report = ReadReport(name)
    sentences, header = [], None
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
                sentences.append(sentence)
            else:
                report.skip(f"missing {key}", number)
    report.kept = len(sentences)
    return sentences, report


class Tokenizer:
    """The corpus's tokens of a raw sentence, at most ``max_len`` of them: fairseq_wae.tokenizer's
    normalisation and lower-cased Moses tokenisation, the same as every other tool's."""

    def __init__(self):
        self.tokenizer = NormalizedMosesTokenizer()

    def __call__(self, sentence: str, max_len: Optional[int] = None) -> str:
        tokens = self.tokenizer.tokens(sentence)
        return " ".join(tokens[:max_len] if max_len else tokens)


def unique(sentences: Iterable[str]) -> List[str]:
    """De-duplicated, first-seen order kept."""
    return list(dict.fromkeys(sentences))


def parse_split(text: str, available: int, num_sentences: Optional[int]) -> List[int]:
    """``90000,5000,5000`` (counts) or ``0.9,0.05,0.05`` (fractions of the subset) to three counts."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise CorpusError(f"--split must be three comma-separated numbers, got {text!r}")
    if len(parts) != 3 or min(parts) < 0:
        raise CorpusError(f"--split must be three non-negative numbers (train,valid,test), got {text!r}")
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


def split_corpus(sentences: Sequence[str], counts: Sequence[int], seed: int) -> Dict[str, List[str]]:
    """A seeded random subset of ``sum(counts)`` sentences, cut into train/valid/test."""
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    splits, start = {}, 0
    for name, count in zip(SPLITS, counts):
        splits[name] = [sentences[i] for i in order[start:start + count]]
        start += count
    return splits


def binarize(folder: str, vocab_size: int, text_suffix: str = ".txt", workers: int = 1) -> None:
    """fairseq-preprocess --only-source on train/valid/test{suffix}, written into ``folder``."""
    from fairseq import options
    from fairseq_cli import preprocess

    parser = options.get_preprocessing_parser()
    args = parser.parse_args([
        "--only-source", "--destdir", folder, "--workers", str(workers), "--nwordssrc", str(vocab_size),
        *(f"--{'train' if s == 'train' else s}pref={os.path.join(folder, s + text_suffix)}" for s in SPLITS),
    ])
    preprocess.main(args)


def vocabulary_stats(folder: str, splits: Dict[str, List[str]]) -> Dict[str, float]:
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(os.path.join(folder, "dict.txt"))
    stats = {"vocabulary_size": len(dictionary)}
    for name, sentences in splits.items():
        tokens = [t for s in sentences for t in s.split()]
        unknown = sum(dictionary.index(t) == dictionary.unk() for t in tokens)
        stats[f"{name}_oov_rate"] = unknown / max(len(tokens), 1)
        stats[f"{name}_avg_len"] = len(tokens) / max(len(sentences), 1)
    return stats


def train_sentencepiece(folder: str, vocab_size: int) -> None:
    """Trains a sentencepiece model on train.txt (deterministic: no sampling of the input) and writes
    {split}.spm.txt for every split."""
    import sentencepiece as spm

    prefix = os.path.join(folder, "spm")
    spm.SentencePieceTrainer.train(
        input=os.path.join(folder, "train.txt"), model_prefix=prefix, vocab_size=vocab_size,
        character_coverage=1.0, model_type="unigram", num_threads=1, hard_vocab_limit=False,
        bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
    for split in SPLITS:
        with open(os.path.join(folder, f"{split}.txt"), encoding="utf-8") as f:
            encoded = [" ".join(processor.encode(line.strip(), out_type=str)) for line in f]
        with open(os.path.join(folder, f"{split}.spm.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(encoded) + "\n")


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


def token_ids(prefix: str):
    """Every token id of ``{prefix}.bin`` (fairseq's mmap format), memory-mapped in the type its .idx
    names: reading it costs no memory beyond the page cache, whatever the corpus size."""
    import numpy as np
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    dtype = MMapIndexedDataset.Index(prefix + ".idx").dtype
    if os.path.getsize(prefix + ".bin") == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(prefix + ".bin", dtype=dtype, mode="r")


def largest_token_id(prefix: str) -> int:
    """The largest token id in ``{prefix}.bin`` (-1 when it holds none): a dictionary with fewer
    entries does not belong to these binaries. Reads every token."""
    ids = token_ids(prefix)
    return int(ids.max()) if len(ids) else -1


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
    from fairseq_wae.checkpoints import process_alive

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
            raise ValueError("a file name that is not a string")
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
    from fairseq_wae.checkpoints import process_alive

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


def write_corpus(out: str, splits: Dict[str, List[str]], manifest: Dict, vocab_size: int,
                 spm_vocab_size: Optional[int], force: bool) -> Dict:
    """Writes the splits, binaries and manifest.json into ``out``, touching no file it did not write.

    ``manifest.json`` lists every file written with its checksum and size, and each split's largest
    token id. A rerun with the same inputs and options does nothing when those files are intact and
    rewrites them when any is missing or changed, or when the manifest records no sizes (an earlier
    version's).
    An ``out`` that holds another corpus is replaced only with ``force``, and then only the files its
    manifest lists; a file of the same name that no manifest lists is never overwritten. Everything is
    built in a staging folder inside ``out`` first and moved in by ``replace_corpus``: killed at any
    instant, ``out`` holds the old corpus, the new one, or a journal with which the next run, with
    these options or the earlier ones, finishes or undoes the replacement.
    """
    finish_interrupted_preparation(out, manifest, force)
    existing, out_existed = set(), os.path.isdir(out)
    if out_existed:
        _remove_stale_staging(out)
        existing = {name for name in os.listdir(out) if not name.startswith((STAGING_PREFIX, PREVIOUS_PREFIX))}
    previous = read_manifest(out) if existing else None
    ours = set(files_written(previous)) if previous is not None else set()
    if previous is not None and previous.get("inputs") == manifest["inputs"] \
            and previous.get("options") == manifest["options"]:
        damaged = damaged_files(out, previous)
        if not damaged and "sizes" in previous:
            logger.info(f"{out} already holds this corpus (same inputs and options, files intact): nothing to do")
            return previous
        if damaged:
            logger.warning(f"{out} holds this corpus but these files are missing or changed: {', '.join(damaged)}; "
                           "writing them again")
        else:
            logger.warning(f"{out} holds this corpus, but its manifest.json (from an earlier fairseq-wae) records no "
                           "file sizes, so every load hashes every file: writing it again with sizes")
    elif existing and not force:
        what = "another corpus (its manifest.json names other inputs or options)" if previous is not None \
            else "files that no manifest.json of this tool lists"
        raise CorpusError(f"--out {out} already holds {what}: choose another --out, or pass --force to replace "
                          "what an earlier preparation wrote there (other files are never touched)")
    staging = os.path.join(out, f"{STAGING_PREFIX}{os.getpid()}")
    try:
        _make_staging_folder(out, staging)
        for name, sentences in splits.items():
            with open(os.path.join(staging, f"{name}.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(sentences) + "\n")
        if spm_vocab_size:
            train_sentencepiece(staging, spm_vocab_size)
        binarize(staging, vocab_size, ".spm.txt" if spm_vocab_size else ".txt")
        log = os.path.join(staging, "preprocess.log")
        if os.path.exists(log):
            os.remove(log)  # holds absolute paths: not reproducible
        produced = sorted(os.listdir(staging))
        clashes = [name for name in produced + [MANIFEST] if name in existing and name not in ours]
        if clashes:
            raise CorpusError(f"--out {out} holds {', '.join(clashes)}, which no manifest.json of this tool lists: "
                              "refusing to overwrite; choose another --out")
        manifest = {**manifest, "counts": {name: len(s) for name, s in splits.items()},
                    **vocabulary_stats(staging, splits if not spm_vocab_size else _read_splits(staging, ".spm.txt")),
                    **describe_files(staging, produced)}
        write_manifest(staging, manifest)
        old_head = {"inputs": previous.get("inputs"), "options": previous.get("options"),
                    "sha256": previous.get("files")} if previous else None
        replace_corpus(out, staging, [name for name in ours if os.path.isfile(os.path.join(out, name))],
                       produced + [MANIFEST], old_head, manifest)
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


def _read_splits(folder: str, suffix: str) -> Dict[str, List[str]]:
    splits = {}
    for name in SPLITS:
        with open(os.path.join(folder, name + suffix), encoding="utf-8") as f:
            splits[name] = [line.strip() for line in f]
    return splits


def prepare(inputs: Sequence[str], sentences: List[str], out: str, *, num_sentences: Optional[int], split: str,
            seed: int, vocab_size: int, max_len: Optional[int], spm_vocab_size: Optional[int], force: bool,
            reports: Sequence[ReadReport] = (), extra_options: Optional[Dict] = None) -> Dict:
    """Tokenise, de-duplicate, subset, split and binarize ``sentences`` read from ``inputs``
    (``reports``: what reading them skipped, kept in the manifest)."""
    check_output_folder(out, inputs)
    if vocab_size < 1:
        raise CorpusError(f"--vocab-size must be at least 1, got {vocab_size}")
    if max_len is not None and max_len < 1:
        raise CorpusError(f"--max-len must be at least 1, got {max_len}")
    tokenize = Tokenizer()
    corpus = unique(t for t in (tokenize(s, max_len) for s in sentences) if t)
    counts = parse_split(split, len(corpus), num_sentences)
    splits = split_corpus(corpus, counts, seed)
    options = {"num_sentences": num_sentences if num_sentences is not None else "all", "split": split,
               "seed": seed, "vocab_size": vocab_size, "max_len": max_len, "spm_vocab_size": spm_vocab_size,
               "tokenizer": TOKENIZER_DESCRIPTION, **(extra_options or {})}
    manifest = {
        "inputs": [{"path": os.path.basename(p), "sha256": sha256_of(readable_copy(p))} for p in inputs],
        "options": options,
        "unique_sentences": len(corpus),
        "skipped_lines": [report.as_json() for report in reports if report.skipped],
    }
    return write_corpus(out, splits, manifest, vocab_size, spm_vocab_size, force)
