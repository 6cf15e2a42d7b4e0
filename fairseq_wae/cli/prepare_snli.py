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
import logging
import os
import urllib.request

from fairseq_wae.cli.prepare_corpus import add_common_arguments, run

from fairseq_wae.corpus import CorpusError, sha256_of, snli_sentences

SNLI_URL = "https://nlp.stanford.edu/projects/snli/snli_1.0.zip"


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
