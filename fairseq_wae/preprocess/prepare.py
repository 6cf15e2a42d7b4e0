"""``prepare``: a corpus's sentences to a prepared --out (tokenised, split, binarized, its manifest),
decided against what --out already holds."""
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

from fairseq_wae.preprocess.binarize import SPM_INPUT_SENTENCES, binarize, train_sentencepiece, vocabulary_stats
from fairseq_wae.preprocess.manifest import (
    JOURNAL, MANIFEST, PREVIOUS_PREFIX, SPLITS, STAGING_PREFIX, damaged_files, describe_files, files_written,
    read_manifest, sha256_of, write_manifest,
)
from fairseq_wae.lines import STANDARD_INPUT, rereadable_path
from fairseq_wae.preprocess.readers import CorpusError, ReadReport
from fairseq_wae.preprocess.splits import parse_split, split_parts, write_splits
from fairseq_wae.preprocess.staging import _remove_stale_staging, finish_interrupted_preparation, replace_corpus
from fairseq_wae.preprocess.tokenize import TokenizedSentences, tokenize_into
from fairseq_wae.save_dir_lock import hold_folder, release_folder
from fairseq_wae.tokenizer import DESCRIPTION as TOKENIZER_DESCRIPTION

logger = logging.getLogger(__name__)


def check_output_folder(out: str, inputs: Sequence[str]) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise CorpusError(f"--out {out} is a file, not a folder")
    folder = os.path.realpath(out)
    for path in inputs:
        if path != STANDARD_INPUT and os.path.commonpath([folder, os.path.realpath(path)]) == folder:
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


def _make_staging_folder(out: str, staging: Optional[str]) -> None:
    """``out`` (when new) and the staging folder in it (when given); a folder this process may not write
    into is refused, naming it."""
    try:
        os.makedirs(out, exist_ok=True)
        if staging is not None:
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
    head = {"inputs": [{"path": os.path.basename(p), "sha256": sha256_of(rereadable_path(p))} for p in inputs],
            "options": options}
    build = BuildOptions(num_sentences, split, seed, vocab_size, max_len, spm_vocab_size, spm_input_sentences, workers)
    out_existed = os.path.isdir(out)
    _make_staging_folder(out, None)
    writer = hold_folder(out, "preparation", STAGING_PREFIX, CorpusError)  # one writer per folder, until the end
    try:
        return _prepare_held(out, head, sentences, reports, build, force, strict)
    finally:
        release_folder(writer)
        if not out_existed and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)  # made by this run, which wrote nothing


def _prepare_held(out: str, head: Dict, sentences: Iterable[str], reports: Sequence[ReadReport], build: BuildOptions,
                  force: bool, strict: bool) -> Dict:
    """``prepare`` once ``out`` is this process's to write (see ``prepare``)."""
    spm_vocab_size = build.spm_vocab_size
    done, replaced = _existing_corpus(out, head, bool(spm_vocab_size), force, strict)
    if done is not None:
        return done
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
    return manifest
