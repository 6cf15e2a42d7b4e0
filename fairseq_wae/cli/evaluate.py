#!/usr/bin/env python
"""The paper's Table 1 row for one model: BLEU, NLL, UnigramKL, Entropy, AvgLen (plus extras).

    python scripts/evaluate.py --reference test.txt --reconstructions recon.txt --samples samples.txt \\
        --corpus train.txt --lm lm/news3.bin [--json out.json]
    python scripts/evaluate.py --corpus test.txt --lm lm/news3.bin            # the corpus row

BLEU: sacrebleu corpus BLEU of the reconstructions (tokenize='none'). NLL: of the prior samples under
the KenLM model, per word in bits (the unit that matches the paper's table; nats, per-sentence and
perplexity are in --json). UnigramKL = KL(samples || corpus) skipping words unseen in the corpus (the
paper's), also smoothed. Entropy (nats) and AvgLen of the samples. Beyond the paper: reverse perplexity
(a trigram KenLM trained by lmplz on the samples scores the --reference sentences: low when the samples
cover the data's variety) and the share of samples copied verbatim from --corpus (the training
sentences). All files: tokenised, one sentence a line.
"""
import argparse
import json
import os
import tempfile

from fairseq_wae import text_metrics
from fairseq_wae.errors import Refusal, command
from fairseq_wae.lines import text_file_lines
from fairseq_wae.preprocess.manifest import sha256_of
from fairseq_wae.text_metrics import EvaluationError


def read_lines(path: str, what: str):
    """One sentence a line; an empty line is a sentence of length 0, wherever it stands."""
    try:
        lines = [line.strip() for line in text_file_lines(path)]  # a file or a stream, each line in bounded memory
    except Refusal as e:
        raise EvaluationError(f"{what}: {e}") from None
    if not lines:
        raise EvaluationError(f"{what}: {path} is empty")
    return lines


def load_lm(path: str):
    import kenlm

    if not os.path.isfile(path):
        raise EvaluationError(f"--lm: no such file: {path} (build it with scripts/train_lm.py)")
    try:
        return kenlm.Model(path)
    except (OSError, RuntimeError, Exception) as e:  # kenlm raises OSError or its own errors on a bad file
        raise EvaluationError(f"--lm: {path} is not a KenLM ARPA or binary model ({e})")


def evaluate(args) -> dict:
    result, meta = {}, {}
    lm = load_lm(args.lm) if args.lm else None
    if lm is not None:
        meta.update(lm=os.path.abspath(args.lm), lm_sha256=sha256_of(args.lm), lm_order=lm.order)
    corpus = read_lines(args.corpus, "--corpus") if args.corpus else None
    references = read_lines(args.reference, "--reference") if args.reference else None
    if args.reconstructions or (args.reference and not args.samples):
        if not (args.reconstructions and args.reference):
            raise EvaluationError("BLEU needs both --reference and --reconstructions (--reference alone serves the "
                                  "reverse perplexity of --samples)")
        reconstructions = read_lines(args.reconstructions, "--reconstructions")
        if len(references) != len(reconstructions):
            raise EvaluationError(f"{args.reconstructions} has {len(reconstructions)} lines but {args.reference} "
                                  f"has {len(references)}: BLEU needs one reconstruction per reference")
        result["bleu"], meta["sacrebleu_signature"] = text_metrics.bleu(references, reconstructions)
        meta["reconstructions"] = len(reconstructions)
    sentences = read_lines(args.samples, "--samples") if args.samples else corpus
    if sentences is None:
        raise EvaluationError("nothing to evaluate: give --samples and/or --corpus")
    if lm is not None:
        result.update(text_metrics.lm_scores(lm, sentences))
    if args.samples and corpus is not None:
        result.update(text_metrics.unigram_kl(sentences, corpus))
        result["unigram_kl_smoothed"] = text_metrics.unigram_kl(sentences, corpus, smoothing=1.0)["unigram_kl"]
        result["copied"] = text_metrics.copied_share(sentences, corpus)
    if args.samples and references is not None:
        result.update(text_metrics.reverse_perplexity(sentences, references))
    result["entropy"] = text_metrics.unigram_entropy(sentences)
    result["avg_len"] = text_metrics.average_length(sentences)
    result["distinct_1"], result["distinct_2"] = text_metrics.distinct_n(sentences, 1), text_metrics.distinct_n(sentences, 2)
    meta["sentences"] = len(sentences)
    meta["row"] = "model" if args.samples else "corpus"
    return {"metrics": result, "meta": meta}


def format_row(name: str, m: dict) -> str:
    return f"| {name} | " + " | ".join(text_metrics.table1_cells(m) + text_metrics.diversity_cells(m)) + " |"


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--reference", help="the test sentences (BLEU's references; with --samples, what the "
                                             "reverse perplexity scores)")
    parser.add_argument("--reconstructions", help="their reconstructions, same order")
    parser.add_argument("--samples", help="sentences sampled from the prior")
    parser.add_argument("--corpus", help="training sentences (UnigramKL's reference); alone: the corpus row")
    parser.add_argument("--lm", help="KenLM model from scripts/train_lm.py")
    parser.add_argument("--name", default=None, help="row label")
    parser.add_argument("--json", help="write the metrics with full precision and metadata here")
    args = parser.parse_args(argv)
    report = evaluate(args)  # a refusal: one line (fairseq_wae.errors)
    name = args.name or ("Corpus" if report["meta"]["row"] == "corpus" else os.path.basename(args.samples))
    print("| model | BLEU | NLL (bits/word) | UnigramKL | Entropy | AvgLen | Reverse PPL | Copied |")
    print("|---|---|---|---|---|---|---|---|")
    print(format_row(name, report["metrics"]))
    if "sacrebleu_signature" in report["meta"]:
        print(f"sacrebleu: {report['meta']['sacrebleu_signature']}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as f:
            json.dump({"name": name, **report}, f, indent=2)
        os.replace(f.name, args.json)


if __name__ == "__main__":
    main()
