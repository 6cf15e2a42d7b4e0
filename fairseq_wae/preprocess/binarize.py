"""dict.txt and fairseq's mmap binaries, the bytes fairseq-preprocess --only-source writes, and the
optional sentencepiece model (fairseq's binarizer.py and preprocess.py do this for fairseq)."""
import array
import collections
import os
from typing import Dict

import numpy as np

from fairseq_wae.preprocess.manifest import SPLITS, token_id_chunks
from fairseq_wae.preprocess.readers import CorpusError
from fairseq_wae.preprocess.tokenize import _batched


def binarize(folder: str, vocab_size: int, text_suffix: str = ".txt") -> None:
    """dict.txt and {split}.bin/.idx in ``folder`` from train/valid/test{suffix}, the bytes
    ``fairseq-preprocess --only-source --nwordssrc vocab_size`` writes: its dictionary (fairseq's
    Dictionary: the words of train counted with one end of sentence a line, ``finalize`` keeping the
    most frequent, ties by spelling, padded to a multiple of 8) and its binaries (each line's ids and
    EOS, in the smallest id type that fits, and the mmap index: fairseq's header, then each sentence's
    size and byte offset). fairseq-preprocess makes a tensor for every sentence and a Python int for
    every offset; a dict lookup a word, block writes and numpy offsets are about 10x faster, hold 8
    bytes a sentence, and leave no work to share among workers."""
    import struct

    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import MMapIndexedDataset, _dtype_header_code, best_fitting_int_dtype

    counts, lines = collections.Counter(), 0
    with open(os.path.join(folder, "train" + text_suffix), encoding="utf-8") as f:
        for line in f:
            counts.update(line.split())
            lines += 1
    dictionary = Dictionary()
    for word, count in sorted(counts.items()):
        dictionary.add_symbol(word, count)
    dictionary.add_symbol(dictionary.eos_word, lines)
    del counts
    dictionary.finalize(threshold=0, nwords=vocab_size, padding_factor=8)
    dictionary.save(os.path.join(folder, "dict.txt"))
    dtype = best_fitting_int_dtype(len(dictionary))
    lookup, unk, eos = dictionary.indices.get, dictionary.unk(), dictionary.eos()
    for split in SPLITS:
        sizes = array.array("q")
        with open(os.path.join(folder, split + text_suffix), encoding="utf-8") as source, \
                open(os.path.join(folder, f"{split}.bin"), "wb") as data:
            for block in _batched(source, 1 << 14):
                ids = []
                for line in block:
                    words = line.split()
                    ids += [lookup(word, unk) for word in words]
                    ids.append(eos)
                    sizes.append(len(words) + 1)
                data.write(np.array(ids, dtype=dtype).tobytes())
        sizes = np.frombuffer(sizes, dtype=np.int64)
        with open(os.path.join(folder, f"{split}.idx"), "wb") as index:  # MMapIndexedDataset.Index.writer's bytes
            index.write(MMapIndexedDataset.Index._HDR_MAGIC + struct.pack("<Q", 1) +
                        struct.pack("<B", _dtype_header_code(dtype)) + struct.pack("<Q", len(sizes)))
            index.write(sizes.astype(np.int32).tobytes())
            index.write((np.dtype(dtype).itemsize * (np.cumsum(sizes) - sizes)).astype(np.int64).tobytes())


def vocabulary_stats(folder: str, counts: Dict[str, int]) -> Dict[str, float]:
    """The dictionary's size, and each split's OOV rate and average length (in tokens, EOS excluded),
    counted in its binaries (``counts``: its sentences): the words fairseq-preprocess mapped to
    ``<unk>`` are the ones the dictionary lacks. Read in chunks, whatever the corpus size."""
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(os.path.join(folder, "dict.txt"))
    stats = {"vocabulary_size": len(dictionary)}
    for name in SPLITS:
        tokens = unknown = 0
        for ids in token_id_chunks(os.path.join(folder, name)):
            tokens += len(ids)
            unknown += int(np.count_nonzero(ids == dictionary.unk()))
        tokens -= counts[name]  # each sentence's end-of-sentence id
        stats[f"{name}_oov_rate"] = unknown / max(tokens, 1)
        stats[f"{name}_avg_len"] = tokens / max(counts[name], 1)
    return stats


#: Sentences sentencepiece trains on at most (``--spm-input-sentences``): it holds its whole input in
#: memory, several times the text's size. Its own recommendation for large corpora; a corpus whose
#: train split is smaller is read whole, as before this bound existed.
SPM_INPUT_SENTENCES = 1_000_000


def train_sentencepiece(folder: str, vocab_size: int, input_sentences: int = SPM_INPUT_SENTENCES) -> None:
    """Trains a sentencepiece model on train.txt and writes {split}.spm.txt for every split.

    With more than ``input_sentences`` training sentences (0: no bound), sentencepiece trains on a
    sample of that many (its own reservoir sampling, with a fixed seed: the same model for the same
    train.txt). With fewer it is not told of a bound (spm.model records the options it was given), so
    it reads them all and learns the pieces it learnt before the bound existed.

    spm.model also records the paths it was given: it trains in ``folder`` on relative names, so the
    same corpus gives the same bytes wherever it is built (the staging folder's name holds a process id)."""
    import sentencepiece as spm

    with open(os.path.join(folder, "train.txt"), "rb") as f:
        sampled = 0 < input_sentences < sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    prefix = os.path.join(folder, "spm")
    started_in = os.getcwd()
    os.chdir(folder)
    try:
        spm.SentencePieceTrainer.train(
            input="train.txt", model_prefix="spm", vocab_size=vocab_size,
            character_coverage=1.0, model_type="unigram", num_threads=1, hard_vocab_limit=False,
            bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
            **({"input_sentence_size": input_sentences, "shuffle_input_sentence": True} if sampled else {}),
        )
    except RuntimeError as e:  # sentencepiece's own checks: "Vocabulary size is smaller than required_chars", ...
        reason = str(e).split("] ", 1)[-1]
        raise CorpusError(f"--spm-vocab-size {vocab_size}: sentencepiece cannot train on this corpus ({reason})") from None
    finally:
        os.chdir(started_in)
    processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
    for split in SPLITS:
        with open(os.path.join(folder, f"{split}.txt"), encoding="utf-8") as source, \
                open(os.path.join(folder, f"{split}.spm.txt"), "w", encoding="utf-8") as target:
            for lines in _batched(source, 10000):
                pieces = processor.encode([line.strip() for line in lines], out_type=str)
                target.write("".join(" ".join(sentence) + "\n" for sentence in pieces))
