"""Input noise on the encoder's sentences, as text-autoencoders defines it (Shen et al., ICML 2020,
"Educating Text Autoencoders", noise.py): word shuffle (each word moves at most k places), word drop,
word blank and word substitution, applied in that order. DAAE is the AAE with this noise; a denoising
DAE or WAE is the same flag on their criterions.

Written for fairseq's source batches: right-padded, EOS last. The words of row i are positions
``0 .. src_lengths[i] - 2``; EOS and padding are never touched (text-autoencoders' ``<go>`` and
``<pad>``). Dropping compacts the kept words to the left and shortens ``src_lengths``; the width of
the batch stays (the encoders read lengths or the padding mask, not the width). The functions take
their uniform draws as tensors; :class:`InputNoise` draws them from the generators it is given (the
criterion's, keyed by update, micro-batch and noise), never from a global one.

fairseq/data/noising.py is not used: it has no substitution, its shuffle keeps token 0 (here a word)
in place, its drop keeps at least one word, and it draws from numpy's global generator.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from fairseq_wae.errors import Refusal


def word_positions(tokens: Tensor, lengths: Tensor) -> Tensor:
    """True at the words of a right-padded, EOS-last batch: not at EOS, not at padding."""
    positions = torch.arange(tokens.size(1), device=tokens.device)
    return positions.unsqueeze(0) < (lengths.to(tokens.device) - 1).unsqueeze(1)


def word_shuffle(tokens: Tensor, lengths: Tensor, distance: int, uniform: Tensor) -> Tensor:
    """A local shuffle: word i is sorted by the key i + (distance + 1) * u_i (``uniform``: U[0, 1) draws of
    the batch's shape), so that no word moves by more than ``distance`` places. EOS and padding get the
    largest offset, distance + 1: every word's key is below EOS's, and EOS's below the padding's, so both
    stay where they are."""
    offsets = torch.where(word_positions(tokens, lengths), (distance + 1) * uniform,
                          torch.full_like(uniform, distance + 1))
    keys = torch.arange(tokens.size(1), device=tokens.device, dtype=uniform.dtype).unsqueeze(0) + offsets
    return tokens.gather(1, keys.sort(dim=1, stable=True).indices)


def word_drop(tokens: Tensor, lengths: Tensor, rate: float, pad: int, uniform: Tensor) -> Tuple[Tensor, Tensor]:
    """Each word dropped where its draw is below ``rate``; the kept words and EOS move left in their
    order and the row is padded again. A sentence may lose every word (text-autoencoders' does too): EOS
    remains. Returns the tokens and their new lengths."""
    positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
    eos = positions == (lengths.to(tokens.device) - 1).unsqueeze(1)
    keep = (word_positions(tokens, lengths) & (uniform >= rate)) | eos
    order = (~keep).to(torch.uint8).sort(dim=1, stable=True).indices  # kept positions first, in order
    new_lengths = keep.sum(dim=1)
    compacted = tokens.gather(1, order).masked_fill(positions >= new_lengths.unsqueeze(1), pad)
    return compacted, new_lengths.to(device=lengths.device, dtype=lengths.dtype)


def word_blank(tokens: Tensor, lengths: Tensor, rate: float, blank: int, uniform: Tensor) -> Tensor:
    """Each word whose draw is below ``rate`` replaced by the ``blank`` symbol."""
    return tokens.masked_fill(word_positions(tokens, lengths) & (uniform < rate), blank)


def word_substitute(tokens: Tensor, lengths: Tensor, rate: float, replacements: Tensor, uniform: Tensor) -> Tensor:
    """Each word whose draw is below ``rate`` replaced by the word at its place in ``replacements``
    (drawn uniformly from the dictionary's words: it may be the same word, as in text-autoencoders)."""
    return torch.where(word_positions(tokens, lengths) & (uniform < rate), replacements, tokens)


def substitutable_words(dictionary) -> Tensor:
    """The ids a substitution draws from: every dictionary entry but the special symbols and the
    ``madeupword`` fillers fairseq-preprocess pads the dictionary with (text-autoencoders: its words)."""
    return torch.tensor([i for i in range(dictionary.nspecial, len(dictionary))
                         if not dictionary[i].startswith("madeupword")], dtype=torch.long)


class InputNoise:
    """The four noises with their settings, applied to a batch's encoder input in text-autoencoders'
    order, each noise drawing from a generator of its own ("noise_shuffle", "noise_drop", "noise_blank",
    "noise_substitute"), so that it draws the same whatever the others do."""

    NAMES = ("noise_shuffle", "noise_drop", "noise_blank", "noise_substitute")

    def __init__(self, dictionary, drop: float = 0.0, blank: float = 0.0, substitute: float = 0.0,
                 shuffle_distance: int = 0):
        self.drop, self.blank, self.substitute, self.shuffle_distance = drop, blank, substitute, shuffle_distance
        self.pad = dictionary.pad()
        # the blank symbol: <s>, which fairseq's dictionaries all hold and whose embedding nothing else
        # trains (the decoder starts from EOS; the Transformer's leading position replaces it). <unk> would blend blanks with the decoder's
        # word dropout and with real unknown words; a new symbol would change every dictionary (and
        # its fingerprint, so that no existing checkpoint would resume or load).
        self.blank_symbol = dictionary.bos()
        self.vocabulary: Optional[Tensor] = substitutable_words(dictionary) if substitute > 0 else None
        if self.vocabulary is not None and len(self.vocabulary) == 0:
            raise Refusal("--noise-substitute needs a dictionary with words to substitute; this one has only "
                          "special symbols")

    @property
    def active(self) -> bool:
        return bool(self.drop or self.blank or self.substitute or self.shuffle_distance)

    def __call__(self, tokens: Tensor, lengths: Tensor, generator) -> Tuple[Tensor, Tensor]:
        """(noisy tokens, their lengths) of a right-padded, EOS-last batch; ``generator(name)``: the
        generator of each noise."""
        def uniform(name):
            return torch.rand(tokens.shape, generator=generator(name), device=tokens.device)

        if self.shuffle_distance > 0:
            tokens = word_shuffle(tokens, lengths, self.shuffle_distance, uniform("noise_shuffle"))
        if self.drop > 0:
            tokens, lengths = word_drop(tokens, lengths, self.drop, self.pad, uniform("noise_drop"))
        if self.blank > 0:
            tokens = word_blank(tokens, lengths, self.blank, self.blank_symbol, uniform("noise_blank"))
        if self.substitute > 0:
            substitute = generator("noise_substitute")
            draw = torch.rand(tokens.shape, generator=substitute, device=tokens.device)
            choice = torch.randint(len(self.vocabulary), tokens.shape, generator=substitute, device=tokens.device)
            replacements = self.vocabulary.to(tokens.device)[choice]
            tokens = word_substitute(tokens, lengths, self.substitute, replacements, draw)
        return tokens, lengths
