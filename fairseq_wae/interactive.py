"""What fairseq-interactive reads: typed lines, each a sentence or refused on its own, read with the
tokenisation the corpus was prepared with."""
import os
from typing import Optional

import numpy as np
from fairseq.data import LanguagePairDataset

from fairseq_wae.tokenizer import SENTENCEPIECE_MODEL, describe_tokenization, folder_tokenization, special_symbols_in


class InteractiveSentences(LanguagePairDataset):
    """fairseq-interactive's typed sentences, without the ``refused`` ones (their positions): fairseq
    prints what comes back by position, so a refused line is simply not answered."""

    def __init__(self, *args, refused=frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.refused = refused

    def ordered_indices(self):
        indices = super().ordered_indices()
        return indices[~np.isin(indices, list(self.refused))] if self.refused else indices


def not_a_sentence(dictionary, ids):
    """Why typed token ids (EOS appended) are no sentence to reconstruct, or None."""
    if len(ids) <= 1:
        return "is empty or blank"
    special = special_symbols_in(dictionary, ids[:-1])
    if special:
        return (f"holds {' '.join(special)}, a special symbol of the dictionary that no prepared sentence holds "
                "(typed as tokens: read input with the --tokenizer the corpus was prepared with)")
    if bool(ids[:-1].eq(dictionary.unk()).all()):
        return "has no word in the model's dictionary"
    return None


def given_bpe(name: Optional[str], model: Optional[str]) -> dict:
    """What fairseq's ``--bpe NAME`` (with ``--sentencepiece-model MODEL``) cuts words into, in the terms
    of ``folder_tokenization``."""
    if name == "sentencepiece" and model and os.path.basename(model) == SENTENCEPIECE_MODEL and os.path.isfile(model):
        return folder_tokenization(os.path.dirname(model))
    return {"kind": name or "none", "model": model}


def interactive_tokenization_problem(folder: str, given: dict) -> Optional[str]:
    """Why fairseq-interactive's --tokenizer and --bpe (``given``: what the task built) would not read
    typed text as the corpus in ``folder`` was prepared, or None. Without them, words become <unk> or the
    wrong pieces with no error; the Python interface and fairseq-wae-interpolate apply them themselves."""
    needed = folder_tokenization(folder)
    bpe = given.get("bpe") or {"kind": "none"}
    if given.get("tokenizer") == "normalized_moses" and (
            bpe == needed if needed["kind"] == "sentencepiece" else bpe["kind"] == "none"):
        return None
    flags = "--tokenizer normalized_moses"
    if needed["kind"] == "sentencepiece":
        flags += f" --bpe sentencepiece --sentencepiece-model {os.path.join(folder, SENTENCEPIECE_MODEL)}"
    return (f"{folder} was prepared as {describe_tokenization(needed)}: read typed text as the corpus was prepared, with {flags} "
            "(or give the dictionary's tokens to the Python interface with tokenize=False)")
