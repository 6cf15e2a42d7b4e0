"""What is checked of a data folder: by the task when it starts and loads a split, and by fairseq-wae-verify.

The task loads a split on every worker and, with shards (``DATA=a:b:c``), every epoch: there it checks
only what costs the same for any corpus and is decisive. At start-up (``check_dictionaries``), after
``check_not_mid_preparation`` (a folder whose files a preparation was replacing when it stopped): every
folder's dict.txt against the checksum its manifest.json records (a small file), and every shard's
dictionary against the first folder's. At each load (``check_split``), with a manifest (our
preparation tools): the .bin/.idx against the sizes it records, and the largest token id recorded at
preparation against the dictionary; without one (plain fairseq-preprocess output): the index's token
id type against the dictionary size, the .bin's size against what the .idx describes, and the ids of
the first and last WINDOW tokens.

Reading every byte (every file's checksum, every token id) is fairseq-wae-verify's job
(``verify_folder``); a manifest written before sizes were recorded (checksums only) is hashed in
full at every load, as it was before, until the folder is prepared again.
"""
import logging
import os
import struct
from typing import List

import numpy as np

from fairseq_wae.dictionary import load_dictionary
from fairseq_wae.errors import Refusal
from fairseq_wae.preprocess.manifest import JOURNAL, MANIFEST, largest_token_id, read_manifest, sha256_of

logger = logging.getLogger(__name__)

#: Tokens read from each end of a .bin that has no manifest, at every load.
WINDOW = 1 << 16
PREPARE_AGAIN = "prepare the folder again with scripts/prepare_corpus.py (fairseq-wae-prepare)"


def mid_preparation_problem(folder: str):
    """Why ``folder`` cannot be read while a preparation's journal is in it, or None: its files were being
    replaced by another corpus's when the preparation stopped (killed, or still running), so they may
    come from two corpora whose ids mean other words. Costs one stat."""
    journal = os.path.join(folder, JOURNAL)
    if not os.path.exists(journal):
        return None
    return (f"{folder} is in the middle of a preparation: {journal} says its files were being replaced by another "
            f"corpus's when the preparation stopped (killed, or still running), so they may come from two corpora. "
            f"Run the preparation command again: the same command finishes it, the one that made the earlier corpus "
            f"restores that corpus")


def check_not_mid_preparation(folder: str) -> None:
    problem = mid_preparation_problem(folder)
    if problem is not None:
        raise Refusal(problem)


def check_dictionaries(folders: List[str], dictionary) -> None:
    """Every folder's dict.txt against the checksum its manifest records, and each shard's words
    against the first folder's (``dictionary``): a shard binarized with another dictionary would
    turn its ids into other words, and its token ids need not exceed the dictionary for that."""
    for folder in folders:
        path = os.path.join(folder, "dict.txt")
        if not os.path.isfile(path):
            continue  # fairseq reads the first folder's only; this shard's ids are checked at its load
        problem = _checksum_problem(folder, "dict.txt", read_manifest(folder) or {})
        if problem is None and folder != folders[0]:
            problem = _other_words(path, dictionary, os.path.join(folders[0], "dict.txt"))
        if problem is not None:
            raise Refusal(problem)


def _other_words(path: str, dictionary, first_path: str):
    """Where the dictionary at ``path`` differs from ``dictionary`` (read from ``first_path``), or None."""

    words = load_dictionary(path).symbols
    if words == dictionary.symbols:
        return None
    index = next((i for i, (a, b) in enumerate(zip(words, dictionary.symbols)) if a != b),
                 min(len(words), len(dictionary.symbols)))
    differs = f"id {index} is {_word(words, index)} there and {_word(dictionary.symbols, index)} in {first_path}"
    return (f"{path} is not the dictionary of the first data folder ({differs}): the shard "
            f"{os.path.dirname(path)} was binarized with another dictionary, so its token ids would mean other "
            f"words. Binarize every shard with the first one's: fairseq-preprocess --only-source --srcdict "
            f"{first_path}")


def _word(words: List[str], index: int) -> str:
    return repr(words[index]) if index < len(words) else "past its end"


def _checksum_problem(folder: str, name: str, manifest: dict):
    """A listed file whose sha256 differs from its manifest's, or None (unlisted or missing: not this check's)."""
    expected = manifest.get("files", {}).get(name)
    path = os.path.join(folder, name)
    if expected is None or not os.path.isfile(path) or sha256_of(path) == expected:
        return None
    return (f"{path} is not the file {os.path.join(folder, MANIFEST)} lists (checksum differs): it comes from "
            f"another preparation, and its token ids would not match the other files: {PREPARE_AGAIN}")


def check_split_sizes(folder: str, split: str) -> None:
    """Before fairseq reads a split: its .bin/.idx of the sizes the manifest records, and an .idx as long
    as its own header says (fairseq's loader fails on a cut-short .idx with numpy's "buffer is smaller
    than requested size", naming no file). Reads the manifest and 26 bytes."""
    check_not_mid_preparation(folder)
    manifest = read_manifest(folder) or {}
    problem = None
    for name in (f"{split}.bin", f"{split}.idx"):
        path, expected = os.path.join(folder, name), manifest.get("sizes", {}).get(name)
        if problem is None and expected is not None and os.path.isfile(path) and os.path.getsize(path) != expected:
            problem = (f"{path} is {os.path.getsize(path):,} bytes but {os.path.join(folder, MANIFEST)} records "
                       f"{expected:,}: it is not the file the preparation wrote (cut short by a copy or download, "
                       f"or from another preparation). {PREPARE_AGAIN.capitalize()}; fairseq-wae-verify {folder} "
                       "lists every file that differs")
    if problem is None:
        problem = index_header_problem(os.path.join(folder, split))
    if problem is not None:
        raise Refusal(problem)


INDEX_MAGIC = b"MMIDIDX\x00\x00"  # fairseq's mmap index: magic, <Q version, <B dtype code, <Q sentences
INDEX_HEADER = struct.Struct("<9sQBQ")


def index_header_problem(prefix: str):
    """An .idx of another length than its header describes (each sentence's int32 size and int64 offset
    after the header), or None (also when there is no .idx, or it is not fairseq's mmap format)."""
    path = prefix + ".idx"
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        header = f.read(INDEX_HEADER.size)
    if not header.startswith(INDEX_MAGIC):
        return None
    if len(header) < INDEX_HEADER.size:
        return f"{path} is {len(header)} bytes, shorter than fairseq's index header: it was cut short. {PREPARE_AGAIN}"
    _, _, _, sentences = INDEX_HEADER.unpack(header)
    described = INDEX_HEADER.size + sentences * 12
    actual = os.path.getsize(path)
    if actual == described:
        return None
    return (f"{path} is {actual:,} bytes but its header describes {sentences:,} sentences in {described:,}: it was "
            f"{'cut short' if actual < described else 'added to'} (an interrupted copy or download?). "
            f"{PREPARE_AGAIN.capitalize()} or copy it again")


def check_split(folder: str, split: str, dictionary, dictionary_path: str, sentences) -> None:
    """The checks of one split at load time (``sentences``: fairseq's dataset of it, ``dictionary``:
    the first folder's), at a cost that does not grow with the corpus; but a manifest with checksums
    and no sizes is hashed in full."""
    check_not_mid_preparation(folder)  # a preparation may have started since start-up
    manifest = read_manifest(folder) or {}
    names = (f"{split}.bin", f"{split}.idx")
    if "sizes" in manifest:
        problem = _recorded_problem(folder, split, manifest, dictionary, dictionary_path)
    elif "files" in manifest:
        logger.warning(f"{os.path.join(folder, MANIFEST)} records checksums but no file sizes (an earlier fairseq-wae "
                       f"wrote it): hashing {' and '.join(names)} in full at every load. Run the same preparation "
                       f"command again to record them, and fairseq-wae-verify {folder} to check the folder once")
        problem = next(filter(None, (_checksum_problem(folder, name, manifest) for name in names)), None)
    else:
        problem = _unprepared_problem(os.path.join(folder, split), sentences, dictionary, dictionary_path)
    if problem is not None:
        raise Refusal(problem)


def _recorded_problem(folder: str, split: str, manifest: dict, dictionary, dictionary_path: str):
    """A .bin/.idx of another size than its manifest records, or a recorded largest token id beyond
    the dictionary; None when neither."""
    for name in (f"{split}.bin", f"{split}.idx"):
        path, expected = os.path.join(folder, name), manifest["sizes"].get(name)
        if expected is not None and os.path.isfile(path) and os.path.getsize(path) != expected:
            return (f"{path} is {os.path.getsize(path):,} bytes but {os.path.join(folder, MANIFEST)} records "
                    f"{expected:,}: it is not the file the preparation wrote. {PREPARE_AGAIN.capitalize()}; "
                    f"fairseq-wae-verify {folder} lists every file that differs")
    largest = manifest.get("largest_token_id", {}).get(split)
    if largest is not None and largest >= len(dictionary):
        return _beyond_dictionary(f"{os.path.join(folder, split)}.bin", largest, dictionary, dictionary_path)
    return None


def _unprepared_problem(prefix: str, sentences, dictionary, dictionary_path: str):
    """For fairseq-preprocess output without a manifest: the id type fairseq-preprocess picks for a
    dictionary of this size, the .bin's size against the .idx, and the ids of the first and last
    WINDOW tokens; None when they pass (or the binaries are not in the mmap format)."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset, best_fitting_int_dtype

    if not isinstance(sentences, MMapIndexedDataset):
        return None
    index = sentences._index
    wanted = np.dtype(best_fitting_int_dtype(len(dictionary)))
    if np.dtype(index.dtype).itemsize < wanted.itemsize:
        return (f"{prefix}.idx stores token ids as {np.dtype(index.dtype).name}, but fairseq-preprocess writes "
                f"{wanted.name} for the {len(dictionary):,} entries of {dictionary_path}: the binaries "
                f"were made with another, smaller dictionary")
    problem = _index_size_problem(prefix, index)
    if problem is not None:
        return problem
    ids = np.frombuffer(sentences._bin_buffer, dtype=index.dtype)
    largest = max((int(part.max()) for part in (ids[:WINDOW], ids[-WINDOW:]) if len(part)), default=-1)
    if largest >= len(dictionary):
        return _beyond_dictionary(f"{prefix}.bin", largest, dictionary, dictionary_path)
    return None


def _beyond_dictionary(path: str, largest: int, dictionary, dictionary_path: str) -> str:
    return (f"{path} holds token id {largest} but the dictionary has {len(dictionary)} entries: "
            f"{dictionary_path} does not belong to this data")


def _index_size_problem(prefix: str, index):
    """A .bin shorter or longer than its .idx describes (cut short, or the two from different runs), or None."""
    itemsize = np.dtype(index.dtype).itemsize
    described = int(index._pointers[-1]) + int(index.sizes[-1]) * itemsize if len(index) else 0
    actual = os.path.getsize(prefix + ".bin")
    if actual == described:
        return None
    return (f"{prefix}.bin is {actual:,} bytes but {prefix}.idx describes {described:,}: the two come from different "
            f"binarizations, or the .bin was cut short or added to")


def verify_folder(folder: str, dictionary, first_dictionary_path: str) -> (List[str], dict):
    """Every byte of one data folder: each file manifest.json lists against its size and sha256, its
    dict.txt's words against the first folder's, and every token id of every split (``*.bin`` with its
    ``.idx``) against ``dictionary``. Returns (problems, what was read)."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    problems, read = [], {"files": 0, "tokens": 0, "splits": 0}
    problems += filter(None, [mid_preparation_problem(folder)])
    manifest = read_manifest(folder)
    if manifest is None and os.path.exists(os.path.join(folder, MANIFEST)):
        problems.append(f"{os.path.join(folder, MANIFEST)} is not a JSON object: {PREPARE_AGAIN}")
    manifest = manifest or {}
    for name, digest in sorted(manifest.get("files", {}).items()):
        problem = _file_problem(folder, name, digest, manifest.get("sizes", {}).get(name))
        problems += [problem] if problem else []
        read["files"] += 1
    dictionary_path = os.path.join(folder, "dict.txt")
    if os.path.isfile(dictionary_path) and os.path.abspath(dictionary_path) != os.path.abspath(first_dictionary_path):
        problem = _other_words(dictionary_path, dictionary, first_dictionary_path)
        problems += [problem] if problem else []
    for prefix in sorted(os.path.join(folder, name[:-4]) for name in os.listdir(folder) if name.endswith(".idx")):
        if not os.path.isfile(prefix + ".bin"):
            problems.append(f"{prefix}.idx has no {os.path.basename(prefix)}.bin beside it")
            continue
        header_problem = index_header_problem(prefix)
        if header_problem is not None:
            problems.append(header_problem)
            continue
        try:
            index = MMapIndexedDataset.Index(prefix + ".idx")
        except (AssertionError, ValueError, KeyError, OSError) as e:
            problems.append(f"{prefix}.idx is not a fairseq mmap index ({e or type(e).__name__})")
            continue
        problem = _index_size_problem(prefix, index)
        if problem is None:
            largest = largest_token_id(prefix)
            if largest >= len(dictionary):
                problem = _beyond_dictionary(f"{prefix}.bin", largest, dictionary, first_dictionary_path)
        problems += [problem] if problem else []
        read["splits"] += 1
        read["tokens"] += os.path.getsize(prefix + ".bin") // np.dtype(index.dtype).itemsize
    return problems, read


def _file_problem(folder: str, name: str, digest: str, size):
    """A file the manifest lists that is missing, of another size or of another checksum, or None."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return f"{path} is missing ({os.path.join(folder, MANIFEST)} lists it): {PREPARE_AGAIN}"
    if size is not None and os.path.getsize(path) != size:
        return (f"{path} is {os.path.getsize(path):,} bytes but {os.path.join(folder, MANIFEST)} records {size:,}: "
                f"{PREPARE_AGAIN}")
    if sha256_of(path) != digest:
        return (f"{path}: its sha256 differs from the one {os.path.join(folder, MANIFEST)} records (changed since "
                f"the preparation): {PREPARE_AGAIN}")
    return None
