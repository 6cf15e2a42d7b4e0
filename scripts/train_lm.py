#!/usr/bin/env python
"""Builds the evaluation's n-gram language model with KenLM (modified Kneser-Ney by lmplz, then build_binary).

    python scripts/train_lm.py --corpus ../shared/data/lm/news_en_reuters21578_bbc.txt.gz --order 3 --out lm/news3.bin

The corpus is lower-cased and tokenised exactly like the SNLI pipeline (fairseq_wae.preprocess.tokenize.Tokenizer).
lmplz and build_binary are looked up in $KENLM_BIN, then where scripts/install_kenlm.sh puts them, then on PATH.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from fairseq_wae.errors import command
from fairseq_wae.text_metrics import find_kenlm_binary


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="one sentence a line (.gz allowed)")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--out", required=True, help="binary model to write (an .arpa is kept beside it)")
    parser.add_argument("--memory", default="500M", help="lmplz -S: memory bound (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace the model --out names, which exists")
    args = parser.parse_args(argv)
    if args.order < 1:
        parser.error(f"--order must be at least 1, got {args.order}")
    if os.path.exists(args.out) and not args.force:
        parser.error(f"--out {args.out} exists: pass --force to replace it, or choose another --out")
    lmplz, build_binary = find_kenlm_binary("lmplz"), find_kenlm_binary("build_binary")

    from fairseq_wae.preprocess.readers import plain_sentences
    from fairseq_wae.preprocess.tokenize import Tokenizer

    started = time.time()
    tokenize = Tokenizer()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    arpa = os.path.splitext(args.out)[0] + ".arpa"
    words = sentences = 0
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        text = os.path.join(tmp, "corpus.txt")
        reports = []
        # as a preparation reads its inputs: gzip by its bytes, each line in bounded memory, lines that are
        # not UTF-8 or empty skipped and counted
        with open(text, "w", encoding="utf-8") as g:
            for line in plain_sentences(args.corpus, False, reports):
                tokens = tokenize(line)
                if tokens:
                    g.write(tokens + "\n")
                    sentences += 1
                    words += len(tokens.split())
        if reports and reports[0].skipped:
            print(reports[0].summary(), file=sys.stderr)
        tokenized = time.time()
        with open(text, "rb") as f, open(arpa + ".tmp", "wb") as g:
            # --skip_symbols: the news corpus holds literal <s>, </s>, <unk> strings;
            # --discount_fallback: a small corpus cannot estimate all discounts
            subprocess.run([lmplz, "-o", str(args.order), "-S", args.memory, "-T", tmp, "--skip_symbols",
                            "--discount_fallback"], stdin=f, stdout=g, stderr=subprocess.DEVNULL, check=True)
        os.replace(arpa + ".tmp", arpa)
        subprocess.run([build_binary, arpa, args.out + ".tmp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        os.replace(args.out + ".tmp", args.out)
    built = time.time()
    report = {"corpus": args.corpus, "order": args.order, "sentences": sentences, "words": words,
              "tokenize_seconds": round(tokenized - started, 1), "lmplz_and_build_binary_seconds": round(built - tokenized, 1),
              "arpa_mb": round(os.path.getsize(arpa) / 2**20, 1), "binary_mb": round(os.path.getsize(args.out) / 2**20, 1)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
