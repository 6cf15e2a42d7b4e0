#!/usr/bin/env python
"""A checkpoint and its data folder to a self-contained model folder that from_pretrained loads.

The tool is fairseq_wae/cli/export.py, installed as `fairseq-wae-export`."""
from fairseq_wae.cli.export import main

if __name__ == "__main__":
    main()
