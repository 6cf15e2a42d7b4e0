"""Checkpoints that cannot be used with the wrong data, run code, be lost to a crash, or be clobbered
by a second run.

- :func:`load_checkpoint_state`: the one way the plugin reads a checkpoint, weights-only (the pickled
  objects a file may hold would otherwise run on loading); fairseq's own loads are weights-only through
  torch's default, which :func:`check_loads_are_weights_only` makes sure of at import.
- :func:`require_dictionary`: a checkpoint trained with another dictionary (the words would be silently
  scrambled), or one that cannot show which (``fairseq-wae-bind-dictionary`` stamps the fingerprint into
  an old checkpoint), is refused; the model's own part, :class:`DictionaryBinding` and the fingerprint,
  lives with the models (fairseq_wae/models/dictionary_binding.py).
- :func:`guard_save_dir`: before fairseq-train loads anything, take the save dir's lock (held until
  the training ends, see :class:`SaveDirLock`), replace a truncated ``checkpoint_last.pt`` by the
  newest readable checkpoint, and refuse to resume from a checkpoint trained on another dictionary.
"""
import glob
import logging
import os
import pickle
import pickletools
import re
import shutil
import zipfile
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from fairseq_wae.dictionary import load_dictionary
from fairseq_wae.errors import CheckpointError
from fairseq_wae.models.dictionary_binding import (  # noqa: F401  (also imported from here)
    BINDING_KEY, DictionaryBinding, check_same_dictionary, checkpoint_dictionary, describe, dictionary_fingerprint,
    fingerprint_state, unbound_message,
)
from fairseq_wae.save_dir_lock import SaveDirLock, check_save_dir_is_a_folder, lock_save_dir, out_of_space_message
from fairseq_wae.tokenizer import folder_tokenization

logger = logging.getLogger(__name__)

OUR_TASKS = ("sentence_autoencoding", "prior_sampling")
GIVE_A_CHECKPOINT = ("give a checkpoint written by fairseq-train (checkpoint_best.pt, checkpoint_last.pt, ...) or the "
                     "model.pt of fairseq-wae-export")


def check_loads_are_weights_only() -> None:
    """fairseq reads checkpoints with ``torch.load``'s default (checkpoint_utils, hub_utils), which is
    weights-only from torch 2.6 on; before, or with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set, it unpickles
    whatever a file holds and runs the code in it. The plugin refuses to work under either."""
    if torch.__version__ < "2.6":
        raise ImportError(f"fairseq-wae needs torch >= 2.6 (this is {torch.__version__}): older versions let fairseq "
                          "unpickle checkpoints with weights_only=False, which runs any code a file holds. "
                          "pip install 'torch>=2.6'")
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
        raise ImportError("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: fairseq would unpickle checkpoints with "
                          "weights_only=False, which runs any code a file holds. Unset it to use fairseq-wae")


check_loads_are_weights_only()


def is_autoencoder_checkpoint(state: Dict) -> bool:
    """Whether a loaded checkpoint holds one of the plugin's autoencoders (by its --arch): a model class
    that binds its dictionary (``BINDS_DICTIONARY``, see fairseq_wae.models.dictionary_binding)."""
    return bool(getattr(saved_model_class(state), "BINDS_DICTIONARY", False))


def require_dictionary(state: Dict, checkpoint: str, current: Dict, what: Optional[str] = None,
                       remedy: str = "") -> None:
    """Refuses a loaded autoencoder checkpoint (at path ``checkpoint``, called ``what`` in the message)
    that was trained with another dictionary than ``current`` (a fingerprint), or cannot show which
    dictionary it was trained with. Other models are left to the checks of their class."""
    if not is_autoencoder_checkpoint(state):
        return
    try:
        trained = checkpoint_dictionary(state)
    except CheckpointError as e:  # an unreadable fingerprint: named with the file
        raise CheckpointError(f"{what or checkpoint}: {e}") from None
    if trained is None:
        raise CheckpointError(unbound_message(what or checkpoint, checkpoint, current))
    check_same_dictionary(trained, current, what or checkpoint, remedy)


def _pickled_strings(data: bytes) -> Iterator[str]:
    """The strings a pickle pushes, in order, memo references resolved, read from its opcodes without
    unpickling anything."""
    memo, last = {}, None
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if "UNICODE" in opcode.name or opcode.name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                last = argument
                yield argument
            elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                memo[len(memo) if opcode.name == "MEMOIZE" else argument] = last
                continue
            elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and isinstance(memo.get(argument), str):
                last = memo[argument]
                yield last
                continue
            last = None
    except Exception:  # a damaged pickle: what was read so far
        return


def peek_identity(path: str) -> Dict[str, str]:
    """The --arch, task and criterion names a checkpoint's config records ({"model": "lstm", "task":
    "translation", ...}, what was found), read from the pickle's opcodes without running any of it: for
    naming the model in a file that weights-only loading refuses."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    except Exception:  # not torch's zip format: nothing to name
        return {}
    found, strings = {}, list(_pickled_strings(data))
    for before, key, value in zip([None] + strings, strings, strings[1:] + [None]):
        if key == "_name" and before in ("model", "task", "criterion"):  # {"task": {"_name": "translation", ...}}
            found.setdefault(before, value)
        elif key in ("arch", "task", "criterion") and value and value.isidentifier():  # an argparse Namespace
            found.setdefault("model" if key == "arch" else key, value)
    return found


def loaded_identity(state: Dict) -> Dict[str, str]:
    cfg = state.get("cfg") or {}
    return {section: (cfg.get(section) or {}).get("_name") for section in ("model", "task", "criterion")
            if isinstance(cfg.get(section), dict) and (cfg.get(section) or {}).get("_name")}


def not_ours_message(path: str, identity: Dict[str, str]) -> str:
    """"PATH is not a fairseq-wae model (fairseq's lstm, translation task): ...", naming what it is."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    arch = identity.get("model")
    described = []
    if arch:
        owner = (ARCH_MODEL_REGISTRY.get(arch).__module__ or "") if arch in ARCH_MODEL_REGISTRY else ""
        described.append(f"fairseq's {arch}" if owner.startswith("fairseq.") else f"--arch {arch}")
    if identity.get("task"):
        described.append(f"{identity['task']} task")
    what = f" ({', '.join(described)})" if described else ""
    return (f"{path} is not a fairseq-wae model{what}: the plugin's tools read only its autoencoders; "
            f"{GIVE_A_CHECKPOINT}")


def check_checkpoint(path: str, current: Dict) -> Dict:
    """What every tool does before fairseq loads ``path``: a checkpoint of one of the plugin's
    autoencoders that loads weights-only, trained with the dictionary of fingerprint ``current``.
    Returns its contents."""
    state = load_checkpoint_state(path)
    if not is_autoencoder_checkpoint(state):
        raise CheckpointError(not_ours_message(path, loaded_identity(state)))
    require_dictionary(state, path, current)
    return state


def is_readable_checkpoint(path: str) -> bool:
    """Cheap integrity test: torch saves a zip whose directory is at its end, so a file cut short by a
    kill during saving fails it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_checkpoint_file(path: str) -> None:
    """A clear error for a path that is not a (complete) checkpoint file, before torch.load's tracebacks."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}" + (
            ": for a fairseq-train save dir give checkpoint_file= (e.g. checkpoint_best.pt) and data_name_or_path= "
            "(the data folder)" if os.path.basename(path) == "model.pt" else ""))
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    if not is_readable_checkpoint(path):
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated, or another kind of file): "
                              f"{GIVE_A_CHECKPOINT}")


def load_checkpoint_state(path: str) -> Dict:
    """A fairseq checkpoint's contents, tensors memory-mapped, read weights-only: tensors and plain
    values (what fairseq-train and fairseq-wae-export write) load, any other pickled object is refused
    unread, as unpickling it could run code."""
    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (UnpicklingError: {e}): "
                                  f"{GIVE_A_CHECKPOINT}") from None
        identity = peek_identity(path)
        if identity and identity.get("task") not in OUR_TASKS:
            raise CheckpointError(not_ours_message(path, identity)) from None
        objects = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(e)))) or ["of a kind not allowed"]
        raise CheckpointError(
            f"{path} holds pickled objects ({', '.join(objects)}), not only tensors and plain values: unpickling them "
            "could run code from the file, so it was not loaded. fairseq-train and fairseq-wae-export write no such "
            "object: the file was changed or made elsewhere. Use only checkpoints whose origin you know") from None
    except Exception as e:  # torch raises many kinds on a damaged file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e}): "
                              f"{GIVE_A_CHECKPOINT}") from None
    if not (isinstance(state, dict) and isinstance(state.get("model"), dict) and isinstance(state.get("cfg"), dict)):
        raise CheckpointError(f"{path} was saved with torch.save but is not a fairseq checkpoint (no 'model' and 'cfg' "
                              f"entries): {GIVE_A_CHECKPOINT}")
    return state


def training_progress(state: Dict) -> Tuple[int, int, int]:
    """(updates, epochs completed, batches into the next epoch) of a fairseq checkpoint's contents.

    Once an epoch is over fairseq saves the iterator of the next one (its epoch number, 0 batches in)."""
    updates = int(state.get("optimizer_history", [{}])[-1].get("num_updates", 0))
    iterator = state.get("extra_state", {}).get("train_iterator", {})
    epoch, batches = int(iterator.get("epoch", 1)), int(iterator.get("iterations_in_epoch", 0))
    return updates, epoch - 1, batches


def _checkpoints_newest_first(save_dir: str) -> List[str]:
    paths = glob.glob(os.path.join(save_dir, "checkpoint*.pt"))
    return sorted(paths, key=lambda p: os.path.getmtime(p), reverse=True)


def recover_last_checkpoint(save_dir: str) -> None:
    """A ``checkpoint_last.pt`` cut short (a kill while fairseq copied it) is moved aside to
    ``checkpoint_last.pt.broken`` and replaced by a copy of the newest readable checkpoint."""
    last = os.path.join(save_dir, "checkpoint_last.pt")
    if not os.path.exists(last) or is_readable_checkpoint(last):
        return
    candidates = [p for p in _checkpoints_newest_first(save_dir) if p != last and is_readable_checkpoint(p)]
    if not candidates:
        raise CheckpointError(
            f"{last} is unreadable (truncated: {os.path.getsize(last)} bytes) and {save_dir} holds no other readable "
            "checkpoint: move it aside to start afresh, or give --restore-file")
    broken = last + ".broken"
    os.replace(last, broken)
    shutil.copyfile(candidates[0], last + ".tmp")
    os.replace(last + ".tmp", last)
    logger.warning(f"{last} was unreadable (moved to {broken}): resuming from {candidates[0]}, the newest readable "
                   "checkpoint")


def check_room_for_a_checkpoint(save_dir: str, model) -> None:
    """Refuses a save that the free space of ``save_dir`` cannot hold, before fairseq writes a byte of it
    (it would fail three times with a traceback each, leaving a ``.tmp``). fairseq writes the checkpoint to
    a temporary file and renames it, then copies it over checkpoint_last.pt and checkpoint_best.pt: the
    save needs a checkpoint's size (the newest one's, or three times the model's before the first) once,
    and once more for each of those two files not written yet."""
    sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(glob.escape(save_dir), "checkpoint*.pt"))]
    size = max(sizes, default=0) or 3 * sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    missing = sum(not os.path.exists(os.path.join(save_dir, name)) for name in ("checkpoint_last.pt", "checkpoint_best.pt"))
    needed = size * (1 + missing)
    if shutil.disk_usage(save_dir).free < needed:
        raise CheckpointError(out_of_space_message(save_dir, needed))


def saved_model_class(state: Dict) -> Optional[type]:
    """The model class that a checkpoint's --arch (or model name) registers; None when unknown."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    return ARCH_MODEL_REGISTRY.get((state.get("cfg") or {}).get("model", {}).get("_name"))


def check_same_model_class(state: Dict, model_class: type, arch: Optional[str], resume: str) -> None:
    """Refuses to resume a network of one class (LSTM, Transformer) with another, naming both archs."""
    saved_class = saved_model_class(state)
    if saved_class is not None and saved_class is not model_class:
        saved_arch = state["cfg"]["model"]["_name"]
        raise CheckpointError(
            f"{resume}, which this run would resume from, holds a {saved_class.__name__} (--arch {saved_arch}), "
            f"but this run builds a {model_class.__name__} (--arch {arch}): resume with --arch {saved_arch}, or "
            "train into another --save-dir")


def check_same_criterion(state: Dict, criterion: str, resume: str) -> None:
    """Refuses to resume the optimizer state of one criterion with another (fairseq would stop with "please
    reset the optimizer" after loading the model), naming both and the ways on."""
    saved = ((state.get("cfg") or {}).get("criterion") or {}).get("_name")
    if saved is not None and saved != criterion:
        raise CheckpointError(
            f"{resume}, which this run would resume from, was trained with --criterion {saved}, but this run "
            f"trains with --criterion {criterion}: resume with --criterion {saved}, train into another --save-dir, "
            "or keep only its weights with --reset-optimizer")


def guard_save_dir(save_dir: str, restore_file: str, dictionary_fingerprint: Dict, lock: bool = True,
                   model_class: Optional[type] = None, arch: Optional[str] = None,
                   owner=None, criterion: Optional[str] = None) -> Optional[SaveDirLock]:
    """What fairseq-train must know before it resumes from ``save_dir`` (see the module's docstring);
    with ``model_class``, also that the checkpoint holds a model of that class, and with ``criterion`` (None
    under --reset-optimizer) that it was trained with that criterion. Returns the lock taken
    (given back when the training that ``owner`` stands for ends, see :class:`SaveDirLock`), or
    None without ``lock``; a refused run gives it back at once."""
    check_save_dir_is_a_folder(save_dir)
    taken = lock_save_dir(save_dir, owner) if lock else None
    try:
        if lock:
            recover_last_checkpoint(save_dir)
        resume = os.path.join(save_dir, "checkpoint_last.pt") if restore_file == "checkpoint_last.pt" else restore_file
        if os.path.exists(resume):
            state = load_checkpoint_state(resume)
            if model_class is not None:
                check_same_model_class(state, model_class, arch, resume)
            if criterion is not None:
                check_same_criterion(state, criterion, resume)
            require_dictionary(state, resume, dictionary_fingerprint, f"{resume}, which this run would resume from,",
                               ", or train into another --save-dir")
    except BaseException:
        if taken is not None:  # a refused run trains nothing: its lock is given back at once
            taken.release()
        raise
    return taken


# -- binding a checkpoint written before the fingerprint existed ---------------------------------------

FAIRSEQ_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3 in every dictionary fairseq-preprocess writes


def bindable_checks(state: Dict, checkpoint: str, dictionary, dictionary_path: str) -> List[str]:
    """What can be checked of a checkpoint without a fingerprint against a dictionary: its size against
    the word embeddings, fairseq's special symbols (and the ``<pad>`` embedding, which training leaves
    zero), and the dictionary of the data folder its config records, when that folder is here.
    Raises :class:`CheckpointError` on a mismatch; returns what was checked, in words."""
    if dictionary.symbols[:4] != FAIRSEQ_SPECIALS or dictionary.pad() != 1:
        raise CheckpointError(f"{dictionary_path} does not start with fairseq's special symbols {' '.join(FAIRSEQ_SPECIALS)} "
                              f"(ids 0-3; it has {' '.join(dictionary.symbols[:4])}): not a dictionary a fairseq-wae "
                              "model is trained with")
    embeddings = {key: value for key, value in state["model"].items() if key.endswith("embed_tokens.weight")}
    for key, weight in embeddings.items():
        if weight.shape[0] != len(dictionary):
            raise CheckpointError(f"{checkpoint}'s word embeddings ({key}) have {weight.shape[0]} rows, but {dictionary_path} "
                                  f"has {len(dictionary)} entries: it is not the dictionary the model was trained with")
        if weight[dictionary.pad()].count_nonzero():
            raise CheckpointError(f"{checkpoint}'s embedding of id {dictionary.pad()} is not zero, as training leaves "
                                  "that of <pad>: it was trained with other special symbols than fairseq's")
    checks = [f"its {len(dictionary)} entries match the word embeddings' rows" if embeddings
              else "no word embeddings found to compare the size with",
              "fairseq's special symbols at ids 0-3, the <pad> embedding zero"]
    recorded = (state["cfg"].get("task") or {}).get("data")
    recorded_dictionary = os.path.join(recorded.split(os.pathsep)[0], "dict.txt") if recorded else None
    if recorded_dictionary and os.path.isfile(recorded_dictionary):
        if dictionary_fingerprint(load_dictionary(recorded_dictionary))["sha256"] != dictionary_fingerprint(dictionary)["sha256"]:
            raise CheckpointError(
                f"{checkpoint}'s config records that it was trained on --data {recorded}, whose dict.txt differs from "
                f"{dictionary_path}: bind it to that folder. (If {recorded} was prepared again since, its dictionary is "
                "not the model's either: move it aside and give the folder the model was trained on)")
        checks.append(f"the same words as {recorded_dictionary}, the data its config records")
    else:
        checks.append(f"the data folder its config records ({recorded}) is not here: not compared")
    return checks


def bind_dictionary(checkpoint: str, data: str) -> Tuple[Dict, List[str]]:
    """Stamps the fingerprint of ``data/dict.txt`` into an autoencoder checkpoint that has none (one
    written before fingerprints existed), in place, after :func:`bindable_checks`. A checkpoint
    already bound to that dictionary is left alone; one bound to another is refused. Returns the
    fingerprint and what was checked."""

    dictionary_path = os.path.join(data, "dict.txt")
    if not os.path.isfile(dictionary_path):
        raise CheckpointError(f"no dict.txt in {data}: give the data folder the model was trained on")
    state = load_checkpoint_state(checkpoint)
    if not is_autoencoder_checkpoint(state):
        raise CheckpointError(f"{checkpoint} holds --arch {state['cfg'].get('model', {}).get('_name')}, not a "
                              "fairseq-wae autoencoder: there is no dictionary binding to stamp")
    dictionary = load_dictionary(dictionary_path)
    fingerprint = dictionary_fingerprint(dictionary, dictionary_path)
    bound = checkpoint_dictionary(state)
    if bound is not None:
        check_same_dictionary(bound, fingerprint, checkpoint, ", or leave the checkpoint as it is")
        return fingerprint, ["already bound to this dictionary: nothing written"]
    checks = bindable_checks(state, checkpoint, dictionary, dictionary_path)
    # the tokenisation of the folder bound to, as training records it (DictionaryBinding)
    state["model"][BINDING_KEY] = fingerprint_state({**fingerprint, "tokenization": folder_tokenization(data)})
    save_in_place(state, checkpoint)
    return fingerprint, checks


def save_in_place(state: Dict, path: str) -> None:
    """Replaces the checkpoint at ``path`` by ``state`` in one step (a kill leaves the old file), with
    the old file's mode and times: the newest-first order of a save dir stays as it was."""
    temporary = f"{path}.bind-{os.getpid()}.tmp"
    before = os.stat(path)
    try:
        torch.save(state, temporary)
        os.chmod(temporary, before.st_mode & 0o7777)
        os.utime(temporary, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(temporary, path)
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError when a write fails
        if os.path.exists(temporary):
            os.remove(temporary)
        raise CheckpointError(f"could not write {path} ({e}): it is unchanged. Is the disk full or the folder "
                              "read-only?") from None
