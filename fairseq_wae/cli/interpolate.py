#!/usr/bin/env python
"""Walks the latent space of a trained autoencoder: interpolation between two sentences, or analogy.

    python scripts/interpolate.py --path ckpt.pt --data bin "a man is playing a guitar ." "two dogs run in the snow ." --steps 8
    python scripts/interpolate.py --path ckpt.pt --data bin --analogy "A" "B" "C"      # decodes z_A - z_B + z_C

Sentences are normalised, lower-cased and tokenised as by the preprocessing scripts (the Python
interface's codec, fairseq_wae/tokenizer.py); the output is the corpus's words, as in its train.txt (a
sentencepiece corpus's pieces joined, as fairseq-generate --post-process sentencepiece prints them).
With --no-tokenize, the dictionary's tokens go in and come out.
Decoding is greedy unless --beam. The same in Python: LSTMAutoencoderModel.from_pretrained(...).interpolate.
"""
import argparse

import torch

from fairseq_wae.errors import command


MAX_STEPS = 1_000_000  # as AutoencoderHubInterface.interpolate


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="+")
    parser.add_argument("--path", required=True, help="checkpoint")
    parser.add_argument("--data", required=True, help="the binarized data folder (for dict.txt)")
    parser.add_argument("--steps", type=int, default=8, help="points between and including the two ends")
    parser.add_argument("--method", choices=["linear", "spherical"], default="linear")
    parser.add_argument("--analogy", action="store_true", help="decode z_1 - z_2 + z_3 of three sentences")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--no-tokenize", action="store_true",
                        help="the sentences are the dictionary's tokens (a sentencepiece corpus's pieces), and so "
                             "is the output")
    args = parser.parse_args(argv)
    expected = 3 if args.analogy else 2
    if len(args.sentences) != expected:
        parser.error(f"{'--analogy takes 3' if args.analogy else 'interpolation takes 2'} sentences, "
                     f"got {len(args.sentences)}")
    if not 2 <= args.steps <= MAX_STEPS:
        parser.error(f"--steps must be from 2 to {MAX_STEPS:,} (the interface's bound), got {args.steps:,}")

    from fairseq_wae.models.hub_interface import from_checkpoint
    from fairseq_wae.interpolation import lerp, slerp

    autoencoder = from_checkpoint(args.path, args.data)  # a refusal: one line (fairseq_wae.errors)
    z = autoencoder.encode(args.sentences, tokenize=not args.no_tokenize)
    if args.analogy:
        points = (z[0] - z[1] + z[2]).unsqueeze(0)
    else:
        walk = slerp if args.method == "spherical" else lerp
        points = torch.stack([walk(z[0], z[1], i / (args.steps - 1)) for i in range(args.steps)])
    shown = (lambda tokens: tokens) if args.no_tokenize else autoencoder.codec.words
    for i, tokens in enumerate(autoencoder.decode(points, beam=args.beam, tokenize=False)):
        print(f"{i}\t{shown(tokens)}")


if __name__ == "__main__":
    main()
