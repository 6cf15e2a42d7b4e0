#!/usr/bin/env python
"""KL, mutual information, active units and importance-weighted NLL/PPL of a Gaussian-latent checkpoint.

    python scripts/latent_metrics.py --path ckpt.pt --data bin --sentences test.txt [--samples 50] [--json out.json]
"""
import argparse
import itertools
import json

from fairseq_wae.errors import Refusal, command
from fairseq_wae.lines import text_file_lines


@command
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

    from fairseq_wae.models.hub_interface import from_checkpoint
    from fairseq_wae.latent_space import evaluate_latent_space

    try:
        autoencoder = from_checkpoint(args.path, args.data)
    except (FileNotFoundError, ValueError) as e:
        raise Refusal(f"{e}")
    if not autoencoder.model.is_gaussian:
        raise Refusal(f"{args.path} has a deterministic latent head: KL, MI and IW-NLL need q(z|x)")
    lines = (line.strip() for line in text_file_lines(args.sentences))  # a file or a stream, in bounded memory
    sentences = list(itertools.islice(filter(None, lines), args.max_sentences))
    if not sentences:
        raise Refusal(f"{args.sentences} holds no sentences")
    try:
        batches = autoencoder.batches(sentences, tokenize=False, batch_size=args.batch_size, what=args.sentences)
    except ValueError as e:
        raise Refusal(f"{e}")
    result = evaluate_latent_space(autoencoder.model, autoencoder.task, batches, args.samples)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
