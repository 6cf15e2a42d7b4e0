#!/usr/bin/env python
"""Reads every byte of a data folder: every checksum manifest.json records, every token id against dict.txt.

    fairseq-wae-verify DATA        # DATA as fairseq-train takes it: one folder, or shards a:b:c

fairseq-train checks at every load only what costs the same for any corpus (sizes, dict.txt, the
largest token id the preparation recorded: see fairseq_wae/data/checks.py); this command is the full
check, to run once after copying or downloading a corpus, or when in doubt. It names every file that
differs and exits non-zero.
"""
import argparse
import os
import sys

from fairseq_wae.dictionary import load_dictionary
from fairseq_wae.errors import Refusal, command


def verify(data: str):
    """(problems, one summary line per folder) for DATA's folders, all read in full."""
    from fairseq import utils

    from fairseq_wae.data.checks import verify_folder

    folders = utils.split_paths(data)
    missing = [folder for folder in folders if not os.path.isdir(folder)]
    if missing:
        return [f"{folder} is not a folder" for folder in missing], []
    first_dictionary = os.path.join(folders[0], "dict.txt")
    if not os.path.isfile(first_dictionary):
        return [f"no dictionary at {first_dictionary}: is {folders[0]} a fairseq-preprocess output folder?"], []
    dictionary = load_dictionary(first_dictionary)
    problems, summaries = [], []
    for folder in folders:
        found, read = verify_folder(folder, dictionary, first_dictionary)
        problems += found
        summaries.append(f"{folder}: {read['files']} checksums, {read['tokens']:,} token ids in {read['splits']} "
                         f"splits read, {len(found)} problems")
    return problems, summaries


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the data folder (or colon-separated shards) given to fairseq-train")
    args = parser.parse_args(argv)
    problems, summaries = verify(args.data)
    for line in summaries:
        print(line)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise Refusal(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in {args.data}")


if __name__ == "__main__":
    main()
