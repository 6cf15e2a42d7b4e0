#!/usr/bin/env python
"""Binds checkpoints written before fairseq-wae recorded a dictionary fingerprint to their dictionary.

The tool is fairseq_wae/cli/bind_dictionary.py, installed as `fairseq-wae-bind-dictionary`."""
from fairseq_wae.cli.bind_dictionary import main

if __name__ == "__main__":
    main()
