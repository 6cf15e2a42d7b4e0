#!/usr/bin/env python
"""Any one-sentence-a-line corpus (Yelp, PTB, ...) to tokenised splits and fairseq binaries.

    python scripts/prepare_corpus.py --input sentences.txt --out data/mycorpus [--split 0.9,0.05,0.05]

Writes train/valid/test.txt, dict.txt, {split}.bin/.idx and manifest.json into --out.
"""
import argparse
import json
import logging

import itertools

from fairseq_wae.errors import command
from fairseq_wae.preprocess.binarize import SPM_INPUT_SENTENCES
from fairseq_wae.preprocess.prepare import prepare
from fairseq_wae.preprocess.readers import CorpusError, plain_sentences


def add_common_arguments(parser: argparse.ArgumentParser, default_num, default_split) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-sentences", default=default_num,
                        help="size of the random subset, or 'all' (default: %(default)s)")
    parser.add_argument("--split", default=default_split,
                        help="train,valid,test as counts or fractions (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the subset and split")
    parser.add_argument("--vocab-size", type=int, default=20000, help="dictionary size (default: %(default)s)")
    parser.add_argument("--max-len", type=int, default=None, help="truncate sentences to this many tokens")
    parser.add_argument("--spm-vocab-size", type=int, default=None,
                        help="train a sentencepiece model of this size on train and binarize its pieces")
    parser.add_argument("--spm-input-sentences", type=int, default=SPM_INPUT_SENTENCES,
                        help="sentencepiece trains on a seeded sample of this many train sentences when there are "
                             "more (it holds its input in memory); 0: all of them (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that tokenise and binarize (fairseq-preprocess --workers); the output is "
                             "the same for any number (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="fail on empty or non-UTF-8 lines instead of skipping")
    parser.add_argument("--force", action="store_true",
                        help="replace the files an earlier preparation wrote into --out (listed in its manifest.json); "
                             "no other file is ever touched")


def num_sentences_arg(value: str):
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise CorpusError(f"--num-sentences must be a positive number or 'all', got {value!r}")
    return int(value)


def run(args, inputs, sentences, reports, extra_options=None) -> None:
    """``prepare`` with the common arguments; ``sentences`` is read as it goes, filling ``reports``."""
    manifest = prepare(inputs, sentences, args.out, num_sentences=num_sentences_arg(str(args.num_sentences)),
                       split=args.split, seed=args.seed, vocab_size=args.vocab_size, max_len=args.max_len,
                       spm_vocab_size=args.spm_vocab_size, force=args.force, reports=reports,
                       extra_options=extra_options, workers=args.workers, strict=args.strict,
                       spm_input_sentences=args.spm_input_sentences)
    summary = {k: manifest[k] for k in ("unique_sentences", "counts", "vocabulary_size", "test_oov_rate",
                                          "train_avg_len")}
    print(json.dumps(summary))


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, action="append", help="one-sentence-a-line file (.gz allowed)")
    add_common_arguments(parser, "all", "0.9,0.05,0.05")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reports = []
    sources = [plain_sentences(path, args.strict, reports) for path in args.input]  # each checked here
    run(args, args.input, itertools.chain.from_iterable(sources), reports)  # a refusal: one line


if __name__ == "__main__":
    main()
