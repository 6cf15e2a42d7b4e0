#!/usr/bin/env python
"""Reads every byte of a data folder: every checksum manifest.json records, every token id against dict.txt.

The tool is fairseq_wae/cli/verify.py, installed as `fairseq-wae-verify`; this wrapper keeps
`python scripts/verify.py DATA` working from a checkout."""
from fairseq_wae.cli.verify import main

if __name__ == "__main__":
    main()
