#!/usr/bin/env python
"""The paper's Table 1 row for one model: BLEU, NLL, UnigramKL, Entropy, AvgLen (plus extras).

The tool is fairseq_wae/cli/evaluate.py, installed as `fairseq-wae-evaluate`; this wrapper keeps the
README's `python scripts/evaluate.py` commands working from a checkout."""
from fairseq_wae.cli.evaluate import main

if __name__ == "__main__":
    main()
