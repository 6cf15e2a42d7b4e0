#!/usr/bin/env python
"""Where prior samples land, as the decoder sees it: decodes of encoded sentences, of codes blended
toward the prior, of a Gaussian fitted to the codes and of the prior, each scored like Table 1's samples.

    python scripts/latent_coverage.py --path ckpt.pt --data bin --sentences bin/train.txt [--num N] [--json out.json]

The codes are those of the first --num sentences of --sentences (cut to --max-sentence-len words, as in
training); every row decodes --num codes greedily, at most --max-len words, and scores them against
--corpus (default: --sentences) with UnigramKL, entropy, average length and the share that stops at
--max-len. If the decoder were as good on prior codes as on the codes it was trained on, the rows
would agree; where they part says what separates prior samples from reconstructions.
"""
import argparse
import json

from fairseq_wae.errors import Refusal, command


def parse_weights(text: str):
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise ValueError(f"--blend must be comma-separated numbers in [0, 1], got {text!r}")
    if any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"--blend weights must be in [0, 1], got {text!r}")
    return weights


def score(decodes, corpus, max_len):
    from fairseq_wae.text_metrics import average_length, unigram_entropy, unigram_kl

    return {
        "unigram_kl": unigram_kl(decodes, corpus)["unigram_kl"],
        "entropy": unigram_entropy(decodes),
        "avg_len": average_length(decodes),
        "at_length_cap": sum(len(s.split()) >= max_len for s in decodes) / len(decodes),
    }


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="checkpoint")
    parser.add_argument("--data", required=True, help="the binarized data folder (for dict.txt)")
    parser.add_argument("--sentences", required=True, help="tokenised sentences to encode (the training split)")
    parser.add_argument("--corpus", help="UnigramKL's reference, one sentence a line (default: --sentences)")
    parser.add_argument("--num", type=int, default=10000, help="codes per row")
    parser.add_argument("--blend", default="0.5,0.9", help="weights s of sqrt(1-s^2) z + s eps, comma-separated")
    parser.add_argument("--max-sentence-len", type=int, default=20, help="words of a sentence the encoder reads")
    parser.add_argument("--max-len", type=int, default=20, help="longest decode in words")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        weights = parse_weights(args.blend)
    except ValueError as e:
        raise Refusal(f"{e}")
    for flag in ("num", "max_sentence_len", "max_len", "batch_size"):
        if getattr(args, flag) < (2 if flag == "num" else 1):
            raise Refusal(f"--{flag.replace('_', '-')} is too small: {getattr(args, flag)}")

    import torch

    from fairseq_wae.preprocess.readers import CorpusError, read_plain_sentences
    from fairseq_wae.models.hub_interface import from_checkpoint
    from fairseq_wae.latent_space import (
        blend_toward_prior,
        code_spectrum,
        gaussian_fit_sample,
    )
    from fairseq_wae.text_metrics import EvaluationError

    try:
        autoencoder = from_checkpoint(args.path, args.data)
        sentences, _ = read_plain_sentences(args.sentences, strict=True)
        corpus = read_plain_sentences(args.corpus, strict=True)[0] if args.corpus else sentences
    except (FileNotFoundError, ValueError, CorpusError) as e:
        raise Refusal(f"{e}")
    if len(sentences) < args.num:
        raise Refusal(f"--num {args.num} but {args.sentences} holds {len(sentences)} sentences")
    sentences = [" ".join(s.split()[: args.max_sentence_len]) for s in sentences[: args.num]]

    try:
        codes = autoencoder.encode(sentences, tokenize=False, batch_size=args.batch_size, what=args.sentences)
    except ValueError as e:
        raise Refusal(f"{e}")
    generator = torch.Generator().manual_seed(args.seed)
    sources = [("posterior codes", codes)]
    sources += [(f"blend s={w:g}", blend_toward_prior(codes, w, generator)) for w in weights]
    sources += [("Gaussian fit to the codes", gaussian_fit_sample(codes, args.num, generator)),
                ("prior N(0, I)", torch.randn(codes.shape, generator=generator))]
    rows = []
    for name, z in sources:
        decodes = autoencoder.decode(z, tokenize=False, batch_size=args.batch_size, max_len_b=args.max_len)
        try:
            rows.append({"source": name, **score(decodes, corpus, args.max_len)})
        except EvaluationError as e:
            raise Refusal(f"{name}: {e}")
    result = {"checkpoint": args.path, "codes": code_spectrum(codes), "rows": rows,
              "settings": {k: getattr(args, k) for k in ("num", "blend", "max_sentence_len", "max_len", "seed")}}

    spectrum = result["codes"]
    print(f"codes: mean norm {spectrum['mean_norm']:.3f}; covariance eigenvalues {spectrum['eigenvalue_min']:.3f} "
          f"(min) {spectrum['eigenvalue_median']:.3f} (median) {spectrum['eigenvalue_max']:.3f} (max), "
          f"participation ratio {spectrum['participation_ratio']:.1f} of {codes.size(1)}")
    print("| decoded from | UnigramKL | Entropy | AvgLen | at the length cap |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['source']} | {row['unigram_kl']:.3f} | {row['entropy']:.2f} | {row['avg_len']:.1f} "
              f"| {row['at_length_cap']:.1%} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
