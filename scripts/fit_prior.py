#!/usr/bin/env python
"""Fits a density to a trained model's codes of its training split: a prior to sample from instead of N(0, I).

The tool is fairseq_wae/cli/fit_prior.py, installed as `fairseq-wae-fit-prior`."""
from fairseq_wae.cli.fit_prior import main

if __name__ == "__main__":
    main()
