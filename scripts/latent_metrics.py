#!/usr/bin/env python
"""KL, mutual information, active units and importance-weighted NLL/PPL of a Gaussian-latent checkpoint.

    python scripts/latent_metrics.py --path ckpt.pt --data bin --sentences test.txt [--samples 50] [--json out.json]
"""
import argparse
import json
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True)
    parser.add_argument("--data", required=True, help="binarized data folder (dict.txt)")
    parser.add_argument("--sentences", required=True, help="tokenised sentences, one a line")
    parser.add_argument("--samples", type=int, default=50, help="importance samples per sentence")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-sentences", type=int, default=None)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from fairseq_wae.inference import load_autoencoder, to_batch
    from fairseq_wae.latent_space import evaluate_latent_space

    try:
        model, task = load_autoencoder(args.path, args.data)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"latent_metrics.py: {e}")
    if not model.is_gaussian:
        sys.exit(f"latent_metrics.py: {args.path} has a deterministic latent head: KL, MI and IW-NLL need q(z|x)")
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()][: args.max_sentences]
    if not sentences:
        sys.exit(f"latent_metrics.py: {args.sentences} holds no sentences")
    batches = [to_batch(task, sentences[i:i + args.batch_size]) for i in range(0, len(sentences), args.batch_size)]
    result = evaluate_latent_space(model, task, batches, args.samples)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
