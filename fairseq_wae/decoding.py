"""What decoding may emit: only symbols that a training sentence can hold.

The dictionary holds symbols that no prepared sentence holds: ``<s>`` and ``<pad>``, and the padding
symbols fairseq-preprocess adds to round the dictionary's size (``madeupword0000``, ...). A model
gives them some probability all the same, and with ``--sampling`` a briefly trained one picks them.
fairseq's search masks ``<pad>`` alone; ``SymbolMaskingEnsemble`` masks them all in the model's
output, for every search (beam, greedy, sampling, diverse beam), in fairseq-generate,
fairseq-interactive and the Python interface alike. ``</s>`` ends a sentence, and ``<unk>`` is what
every out-of-vocabulary word of the corpus became, so both stay.
"""
import math
from typing import List

import torch
from fairseq.sequence_generator import EnsembleModel

DICTIONARY_PADDING_PREFIX = "madeupword"  # fairseq.data.Dictionary.pad_to_multiple_'s symbols


def unproducible_symbols(dictionary) -> List[int]:
    """The ids of the dictionary's symbols that no prepared sentence holds (see the module)."""
    ids = {dictionary.bos(), dictionary.pad()}
    ids.update(i for i, symbol in enumerate(dictionary.symbols) if symbol.startswith(DICTIONARY_PADDING_PREFIX)
               and symbol[len(DICTIONARY_PADDING_PREFIX):].isdigit())
    ids -= {dictionary.eos(), dictionary.unk()}
    return sorted(ids)


class SymbolMaskingEnsemble(EnsembleModel):
    """fairseq's ensemble wrapper whose next-token log-probabilities give -inf to ``masked`` ids."""

    def __init__(self, models, masked: List[int]):
        super().__init__(models)
        self.register_buffer("masked", torch.tensor(masked, dtype=torch.long), persistent=False)

    @torch.jit.unused
    def forward_decoder(self, *args, **kwargs):
        lprobs, attention = super().forward_decoder(*args, **kwargs)
        if self.masked.device != lprobs.device:
            self.masked = self.masked.to(lprobs.device)
        lprobs.index_fill_(-1, self.masked, -math.inf)
        return lprobs, attention
