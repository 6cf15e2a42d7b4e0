#!/usr/bin/env python
"""Trains word2vec embeddings on a tokenised corpus (gensim, as the paper's authors did).

    python scripts/train_word2vec.py --input data/snli100k/train.txt --out data/snli100k/word2vec300.txt

Writes word2vec text format, which the model's --embed-path reads; --dict reports its coverage of a
fairseq dictionary.

On a corpus as small as the SNLI sentences available offline (27k), gensim's defaults leave the vectors
nearly parallel (mean cosine of two random words 0.78 after 10 epochs; 0.91 among the rarest words), so
a frozen embedding layer can hardly tell words apart and the autoencoder cannot reconstruct. Hence 30
epochs by default, and the mean vector is subtracted before writing (the first step of Mu & Viswanath's
"all-but-the-top" post-processing): both together bring those cosines to 0.02 and 0.12.
"""
import argparse
import logging

from fairseq_wae.errors import command
from fairseq_wae.lines import rereadable_path, text_file_lines


class Sentences:
    """The input's sentences, read again at each of word2vec's passes: a file, or a stream's copy
    (``rereadable_path``: a FIFO, a pipe, ``-``); each line in bounded memory, one that is not UTF-8
    refused naming it."""

    def __init__(self, path: str):
        self.path, self.source = path, rereadable_path(path)

    def __iter__(self):
        for line in text_file_lines(self.source, where=self.path):
            if line.strip():
                yield line.split()


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="tokenised text, one sentence a line")
    parser.add_argument("--out", required=True, help="output vectors (word2vec text format)")
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="1 makes the vectors reproducible from the seed")
    parser.add_argument("--keep-mean", action="store_true", help="write the vectors as trained, not centred")
    parser.add_argument("--dict", default=None, help="a fairseq dict.txt to report coverage for")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from gensim.models import Word2Vec

    sentences = Sentences(args.input)
    if next(iter(sentences), None) is None:
        parser.error(f"{args.input} holds no sentences")
    model = Word2Vec(sentences, vector_size=args.dim, window=args.window, min_count=args.min_count,
                     epochs=args.epochs, seed=args.seed, workers=args.workers, sg=1)
    if not args.keep_mean:
        model.wv.vectors -= model.wv.vectors.mean(axis=0)
    model.wv.save_word2vec_format(args.out, binary=args.out.endswith(".bin"))
    message = f"{len(model.wv)} words x {args.dim} dims from {model.corpus_count} sentences -> {args.out}"
    if args.dict:
        from fairseq.data import Dictionary

        from fairseq_wae.embeddings import dictionary_words

        words = dictionary_words(Dictionary.load(args.dict))
        found = sum(w in model.wv.key_to_index for _, w in words)
        message += f"; covers {found}/{len(words)} ({found / max(len(words), 1):.1%}) of {args.dict}"
    print(message)


if __name__ == "__main__":
    main()
