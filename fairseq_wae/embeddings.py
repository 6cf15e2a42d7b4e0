"""Pretrained word embeddings (word2vec text or binary, GloVe text) for a fairseq dictionary."""
import os
from typing import Tuple

import torch
from torch import Tensor

from fairseq_wae.errors import MissingFile, Refusal
from fairseq_wae.lines import rereadable_path


def _has_word2vec_header(path: str) -> bool:
    with open(path, "rb") as f:
        first = f.readline().split()
    return len(first) == 2 and all(part.isdigit() for part in first)


def load_keyed_vectors(path: str):
    """Reads word2vec (text or binary, by the ``.bin`` suffix) or header-less GloVe text with gensim."""
    from gensim.models import KeyedVectors

    if not os.path.exists(path):
        raise MissingFile(f"--embed-path: no such file: {path}")
    binary = path.endswith(".bin")
    source = rereadable_path(path, text=not binary)  # read twice: its first line, then by gensim
    try:
        return KeyedVectors.load_word2vec_format(
            source, binary=binary, no_header=not binary and not _has_word2vec_header(source), unicode_errors="replace"
        )
    except (ValueError, EOFError, UnicodeDecodeError) as e:
        raise Refusal(f"--embed-path {path}: not a word2vec/GloVe {'binary' if binary else 'text'} file ({e})")


def dictionary_words(dictionary):
    """(index, word) of a fairseq dictionary's real words: no special symbols, no padding words."""
    return [(i, dictionary[i]) for i in range(dictionary.nspecial, len(dictionary))
            if not dictionary[i].startswith("madeupword")]


def load_embedding_weights(path: str, dictionary, initial: Tensor) -> Tuple[Tensor, float]:
    """Rows of ``initial`` for the dictionary's words found in ``path`` replaced by their vectors.

    Returns the weights and the fraction of the dictionary's words (special symbols excluded) found;
    missing words keep their random initial rows.
    """
    vectors = load_keyed_vectors(path)
    if vectors.vector_size != initial.size(1):
        raise Refusal(
            f"--embed-path {path} holds {vectors.vector_size}-d vectors but --embed-dim is {initial.size(1)}"
        )
    weights = initial.clone()
    words = dictionary_words(dictionary)
    found = 0
    for index, word in words:
        if word in vectors.key_to_index:
            weights[index] = torch.from_numpy(vectors[word].copy())
            found += 1
    return weights, found / max(len(words), 1)
