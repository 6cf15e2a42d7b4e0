"""manifest.json: what a preparation wrote (files, sizes, sha256, the largest token id) and the names
the staged replacement uses in --out; read by the data checks at load (fairseq_wae/data/checks.py)."""
import hashlib
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

#: The splits every prepared corpus has, each as {split}.txt, .bin and .idx
SPLITS = ("train", "valid", "test")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MANIFEST = "manifest.json"
STAGING_PREFIX = ".staging-"
#: Where the files of the corpus being replaced wait until the new one is in place.
PREVIOUS_PREFIX = ".previous-"
#: In --out from before the first file of a preparation moves in until after the last one: names both
#: corpora's files, so that any run can finish or undo a replacement that was killed half-way.
JOURNAL = "preparation-journal.json"
#: What a manifest written before it listed its files stands for.
_UNLISTED_OUTPUTS = tuple(f"{split}{ext}" for split in SPLITS for ext in (".txt", ".spm.txt", ".bin", ".idx")) + (
    "dict.txt", "spm.model", "spm.vocab", MANIFEST)


def read_manifest(folder: str) -> Optional[Dict]:
    """The folder's manifest.json, or None when there is none (or it does not parse)."""
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def files_written(manifest: Dict) -> List[str]:
    """The files a manifest says its preparation wrote (manifest.json included)."""
    return sorted(manifest.get("files", {})) + [MANIFEST] if "files" in manifest else list(_UNLISTED_OUTPUTS)


def token_id_chunks(prefix: str, chunk: int = 1 << 22) -> Iterator:
    """Every token id of ``{prefix}.bin`` (fairseq's mmap format), in the type its .idx names, ``chunk``
    ids at a time: read, not memory-mapped, so this process's memory stays a chunk whatever the size
    (mapped pages count in its resident memory)."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    dtype = MMapIndexedDataset.Index(prefix + ".idx").dtype
    with open(prefix + ".bin", "rb") as f:
        while len(ids := np.fromfile(f, dtype=dtype, count=chunk)):
            yield ids


def largest_token_id(prefix: str) -> int:
    """The largest token id in ``{prefix}.bin`` (-1 when it holds none): a dictionary with fewer
    entries does not belong to these binaries. Reads every token."""
    return max((int(ids.max()) for ids in token_id_chunks(prefix)), default=-1)


def describe_files(folder: str, names: Sequence[str]) -> Dict:
    """What manifest.json records of the files a preparation wrote: each one's sha256 (read in full by
    fairseq-wae-verify and by a rerun of the preparation), its size and each split's largest token id
    (what the task checks at every load, at a cost that does not grow with the corpus)."""
    return {"files": {name: sha256_of(os.path.join(folder, name)) for name in names},
            "sizes": {name: os.path.getsize(os.path.join(folder, name)) for name in names},
            "largest_token_id": {split: largest_token_id(os.path.join(folder, split)) for split in SPLITS
                                 if f"{split}.bin" in names and f"{split}.idx" in names}}


def write_manifest(folder: str, manifest: Dict) -> None:
    """``folder/manifest.json``, keys sorted: the same preparation gives the same bytes."""
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


def damaged_files(folder: str, manifest: Dict) -> List[str]:
    """Files the manifest lists that are missing or whose checksum changed."""
    if "files" not in manifest:
        return ["(manifest without checksums)"]
    return [name for name, digest in sorted(manifest["files"].items())
            if not os.path.isfile(os.path.join(folder, name)) or sha256_of(os.path.join(folder, name)) != digest]
