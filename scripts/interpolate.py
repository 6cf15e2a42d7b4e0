#!/usr/bin/env python
"""Walks the latent space of a trained autoencoder: interpolation between two sentences, or analogy.

The tool is fairseq_wae/cli/interpolate.py, installed as `fairseq-wae-interpolate`; this wrapper keeps the
README's `python scripts/interpolate.py` commands working from a checkout."""
from fairseq_wae.cli.interpolate import main

if __name__ == "__main__":
    main()
