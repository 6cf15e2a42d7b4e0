"""The command-line tools, installed as console scripts (fairseq-wae-prepare, ...; see setup.py).
scripts/*.py are thin wrappers around the same functions."""
