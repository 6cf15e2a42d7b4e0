"""The one way raw text becomes the corpus's tokens, wherever text comes in: preparation
(``preprocess.tokenize.Tokenizer``), the Python interface (``models.hub_interface.TextCodec``), fairseq-wae-interpolate,
and fairseq-interactive (``--tokenizer normalized_moses``).

Text is normalised before it is tokenised, so that what looks the same is the same token:

- Unicode NFKC. NFC alone would make a composed "café" and a decomposed one (``e`` + U+0301) the same
  word; NFKC also folds compatibility forms that a reader takes for the same letters (full-width
  ``Ｆull``, the ligature ``ﬁ``, a no-break space), and it is what the sentencepiece models of
  ``--spm-vocab-size`` apply themselves (their default ``nmt_nfkc`` rule), so both kinds of corpora
  see the same text. What it changes beyond that (``²`` becomes ``2``, ``™`` ``TM``) is not a
  distinction a lower-cased word model keeps anyway.
- Invisible characters removed: every format character (Unicode category Cf: the byte-order mark
  U+FEFF, zero-width space, joiners and non-joiners, the soft hyphen, direction marks, ...) and every
  control character that is not whitespace (which Moses dropped already). The joiners matter to some
  scripts (and emoji sequences), not to this tokeniser, which split them off as tokens of their own.
- Lower-cased, then Moses-tokenised (sacremoses, English), as in the paper's samples.

A line with nothing left after normalisation is an empty line.
"""
import functools
import os
import sys
import unicodedata
from dataclasses import dataclass
from typing import Optional

from fairseq.data.encoders import register_tokenizer
from fairseq.dataclass import FairseqDataclass

from fairseq_wae.preprocess.manifest import sha256_of

#: What the manifest of a prepared corpus records as its tokeniser.
DESCRIPTION = "normalized_moses: NFKC, format and control characters removed, lower-cased, sacremoses en"


@functools.lru_cache(maxsize=1)
def _invisible_characters() -> dict:
    """A ``str.translate`` table deleting every format character and every non-whitespace control
    character of the Unicode version Python ships (built once: about 0.3 s)."""
    return {code: None for code in range(sys.maxunicode + 1)
            if unicodedata.category(chr(code)) in ("Cf", "Cc") and not chr(code).isspace()}


def without_invisible_characters(text: str) -> str:
    """``text`` without format characters (category Cf) and non-whitespace control characters."""
    return text.translate(_invisible_characters())


def normalize(text: str) -> str:
    """Invisible characters removed, NFKC, lower-cased: the same text normalised again is unchanged
    (checked for every code point), so a corpus line and the same line typed later give one result.

    NFKC comes before lower-casing: it turns some compatibility letters into capitals (``ℌ`` to ``H``)."""
    return unicodedata.normalize("NFKC", without_invisible_characters(text)).lower()


@dataclass
class NormalizedMosesConfig(FairseqDataclass):
    """No options: the corpus was prepared one way, and typed text must be read the same way."""


@register_tokenizer("normalized_moses", dataclass=NormalizedMosesConfig)
class NormalizedMosesTokenizer:
    """fairseq's tokenizer interface (``encode``/``decode``) around ``normalize`` and sacremoses.

    ``decode`` is Moses detokenisation, as fairseq's own ``--tokenizer moses`` does it; for a
    sentencepiece corpus fairseq joins the pieces first (``--bpe sentencepiece``).
    """

    def __init__(self, cfg: NormalizedMosesConfig = None):
        from sacremoses import MosesDetokenizer, MosesTokenizer

        self.moses = MosesTokenizer(lang="en")
        self.detokenizer = MosesDetokenizer(lang="en")

    def encode(self, sentence: str) -> str:
        """Tokens separated by single spaces; ``""`` when nothing visible is left."""
        return " ".join(self.tokens(sentence))

    def tokens(self, sentence: str):
        # escape=False: keep & < > ' " as they are (fairseq's moses tokenizer escapes them to &amp; ...)
        return self.moses.tokenize(normalize(sentence), escape=False)

    def decode(self, tokens: str) -> str:
        return self.detokenizer.detokenize(tokens.split())


def special_symbols_in(dictionary, token_ids) -> list:
    """The special symbols (``<s>``, ``<pad>``, ``</s>``) among a sentence's token ids, EOS excluded.

    Preparation never writes them into a sentence (Moses splits ``<pad>`` into ``< pad >``), so text
    that is given as tokens (``tokenize=False``, ``--no-tokenize``, fairseq-interactive without a
    ``--tokenizer``) and holds one is not a sentence the model has seen. ``<unk>`` is not among them:
    it is what every out-of-vocabulary word of the corpus was binarized to.
    """
    special = {dictionary.bos(), dictionary.pad(), dictionary.eos()}
    return [dictionary[int(i)] for i in token_ids if int(i) in special]


SENTENCEPIECE_MODEL = "spm.model"  # what preparation with --spm-vocab-size writes beside dict.txt


def folder_tokenization(folder: str) -> dict:
    """How the text of a data or model folder becomes its dictionary's tokens: this tokeniser's words,
    or these words cut into the pieces of the folder's sentencepiece model (with the model's sha256).
    Recorded in the model at training (``DictionaryBinding``), so that every reader can refuse a folder
    that tokenises otherwise: words fed to a piece model, or pieces to a word model, come back as
    <unk> or nonsense with no error."""
    spm_model = os.path.join(folder, SENTENCEPIECE_MODEL)
    if not os.path.isfile(spm_model):
        return {"kind": "words", "tokenizer": "normalized_moses"}
    return {"kind": "sentencepiece", "tokenizer": "normalized_moses", "spm_sha256": sha256_of(spm_model)}


def describe_tokenization(tokenization: dict) -> str:
    if tokenization.get("kind") == "sentencepiece":
        return f"sentencepiece pieces of a {SENTENCEPIECE_MODEL} with sha256 {tokenization['spm_sha256'][:12]}"
    return "words (no sentencepiece model)"


def tokenization_mismatch(trained: dict, folder: str, current: Optional[dict] = None):
    """Why ``folder`` (whose ``folder_tokenization`` is ``current`` when known) cannot be read by a model
    trained on text tokenised as ``trained`` records, or None (also when nothing was recorded: a model
    trained before the record existed)."""
    if not trained:
        return None
    current = current or folder_tokenization(folder)
    if current == trained:
        return None
    spm_model = os.path.join(folder, SENTENCEPIECE_MODEL)
    if trained.get("kind") == "sentencepiece" and current["kind"] == "words":
        found = f"{folder} has no {SENTENCEPIECE_MODEL}"
    elif trained.get("kind") == "words":
        found = f"{spm_model} is there: that folder's text is cut into pieces"
    else:
        found = f"{spm_model} is another sentencepiece model (sha256 {current['spm_sha256'][:12]})"
    return (f"the model was trained on {describe_tokenization(trained)}, but {found}: give the data folder the model "
            "was trained on, or its fairseq-wae-export folder, with the same files")
