#!/usr/bin/env python
"""Any one-sentence-a-line corpus (Yelp, PTB, ...) to tokenised splits and fairseq binaries.

The tool is fairseq_wae/cli/prepare_corpus.py, installed as `fairseq-wae-prepare`; this wrapper keeps the
README's `python scripts/prepare_corpus.py` commands working from a checkout."""
from fairseq_wae.cli.prepare_corpus import main

if __name__ == "__main__":
    main()
