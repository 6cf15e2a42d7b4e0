"""Binds checkpoints written before fairseq-wae recorded a dictionary fingerprint to their dictionary.

    fairseq-wae-bind-dictionary CHECKPOINT [CHECKPOINT ...] DATA

Every tool refuses a checkpoint that cannot show which dictionary it was trained with: a dictionary of
the same size with other words would scramble every sentence without an error. Give the data folder
the model was trained on: its dict.txt is checked against what the checkpoint can tell (the size of the
word embeddings, fairseq's special symbols and the <pad> embedding, the dict.txt of the data folder
its config records, when that folder is here), and its fingerprint is stamped into each checkpoint, in
place. A checkpoint already bound to that dictionary is left as it is; one bound to another is refused.
"""
import argparse

from fairseq_wae.errors import command


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="fairseq-train checkpoints (checkpoint_best.pt, ...) or an exported model.pt")
    parser.add_argument("data", metavar="DATA", help="the data folder the model was trained on (its dict.txt)")
    args = parser.parse_args(argv)
    from fairseq_wae.checkpoint_utils import bind_dictionary, describe

    for checkpoint in args.checkpoints:
        fingerprint, checks = bind_dictionary(checkpoint, args.data)  # a refusal: one line (fairseq_wae.errors)
        print(f"{checkpoint}: bound to {describe(fingerprint)}; checked: {'; '.join(checks)}")


if __name__ == "__main__":
    main()
