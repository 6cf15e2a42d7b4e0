#!/usr/bin/env python
"""SNLI to the paper's corpus: premises and hypotheses, de-duplicated, a seeded 100k subset split 90k/5k/5k.

The tool is fairseq_wae/cli/prepare_snli.py, installed as `fairseq-wae-prepare-snli`; this wrapper keeps the
README's `python scripts/prepare_snli.py` commands working from a checkout."""
from fairseq_wae.cli.prepare_snli import main

if __name__ == "__main__":
    main()
