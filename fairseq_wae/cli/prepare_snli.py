#!/usr/bin/env python
"""SNLI to the paper's corpus: premises and hypotheses, de-duplicated, a seeded 100k subset split
90k/5k/5k, lower-cased and tokenised, binarized for fairseq.

    python scripts/prepare_snli.py --out data/snli100k                   # downloads the official SNLI 1.0 zip
    python scripts/prepare_snli.py --snli-path PATH [--snli-path ...] --out data/snli100k

PATH: the official zip (its train split is read; --snli-splits to change), an SNLI .jsonl or .txt
file, or a plain one-sentence-a-line file (.gz allowed). Several paths are merged and de-duplicated.
"""
import argparse
import itertools
import json
import logging
import os
import urllib.request
import zipfile
from typing import Iterator, List, Sequence

from fairseq_wae.cli.prepare_corpus import add_common_arguments, run
from fairseq_wae.errors import command
from fairseq_wae.lines import rereadable_path
from fairseq_wae.preprocess.manifest import sha256_of
from fairseq_wae.preprocess.readers import (  # the readers' internals that SNLI's formats share
    CorpusError, ReadReport, _decoded_lines, _is_json, _lines_of, _open_binary, plain_sentences,
)
from fairseq_wae.tokenizer import without_invisible_characters

SNLI_URL = "https://nlp.stanford.edu/projects/snli/snli_1.0.zip"


# -- reading SNLI: the official zip, its .jsonl and .txt files, or plain text ----------------------------


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
            with zipfile.ZipFile(rereadable_path(path)) as archive:
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
    with zipfile.ZipFile(rereadable_path(path)) as archive:
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


def download(url: str, path: str, expected_sha256: str = None) -> str:
    """Downloads ``url`` to ``path``, resuming a partial ``path.part``, with a progress bar."""
    from tqdm import tqdm

    if not os.path.exists(path):
        partial = path + ".part"
        done = os.path.getsize(partial) if os.path.exists(partial) else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            if done and response.status != 206:
                done = 0  # the server ignored the range: start over
            total = int(response.headers.get("Content-Length", 0)) + done
            with open(partial, "ab" if done else "wb") as f, tqdm(total=total, initial=done, unit="B",
                                                                  unit_scale=True, desc=os.path.basename(path)) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    bar.update(len(block))
        os.replace(partial, path)
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise CorpusError(f"{path}: sha256 {actual} differs from the expected {expected_sha256}; "
                              "delete it and download again")
    return path


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snli-path", action="append", default=[],
                        help="SNLI zip/jsonl/txt or a plain sentence file; repeat to merge (default: download)")
    parser.add_argument("--snli-splits", default="train",
                        help="splits read from the official zip or its folder (default: %(default)s)")
    parser.add_argument("--download-dir", default="downloads", help="where the official zip is downloaded")
    parser.add_argument("--expected-sha256", default=None, help="checksum the downloaded zip must have")
    add_common_arguments(parser, "100000", "90000,5000,5000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = args.snli_path
    if not paths:
        os.makedirs(args.download_dir, exist_ok=True)
        paths = [download(SNLI_URL, os.path.join(args.download_dir, "snli_1.0.zip"), args.expected_sha256)]
    reports = []
    sources = [snli_sentences(path, args.snli_splits.split(","), args.strict, reports) for path in paths]
    run(args, paths, itertools.chain.from_iterable(sources), reports,  # a refusal: one line (fairseq_wae.errors)
        extra_options={"snli_splits": args.snli_splits})


if __name__ == "__main__":
    main()
