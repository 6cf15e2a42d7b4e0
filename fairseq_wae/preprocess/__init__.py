"""Preparation of a corpus for fairseq (what fairseq_cli/preprocess.py and fairseq/binarizer.py do for
fairseq): ``readers`` (inputs, encodings), ``tokenize`` (parallel tokenisation), ``splits``,
``binarize`` (dict.txt, mmap binaries, sentencepiece), ``manifest`` (what was written; the only module
that fairseq-train reads, through fairseq_wae/data/checks.py), ``staging`` (the journaled replacement
of --out) and ``prepare`` (all of it). SNLI's own reading is in fairseq_wae/cli/prepare_snli.py.
Nothing is imported here, so that reading a manifest does not import the whole preparation."""
