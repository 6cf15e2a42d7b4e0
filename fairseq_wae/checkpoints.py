"""Checkpoints that cannot be used with the wrong data, lost to a crash, or clobbered by a second run.

- :class:`DictionaryBinding`: the model carries a fingerprint of the dictionary it was trained
  with and refuses to load against another one (the words would be silently scrambled).
- :func:`guard_save_dir`: before fairseq-train loads anything, take the save dir's lock, replace a
  truncated ``checkpoint_last.pt`` by the newest readable checkpoint, and refuse to resume from a
  checkpoint trained on another dictionary.
"""
import atexit
import glob
import hashlib
import logging
import os
import shutil
import socket
import zipfile
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

logger = logging.getLogger(__name__)

LOCK_NAME = "fairseq-wae.lock"


class CheckpointError(ValueError):
    """A checkpoint or save dir that must not be used: the message names the files."""


def dictionary_fingerprint(dictionary, path: Optional[str] = None) -> Dict:
    """The dictionary's symbols in id order, hashed: two dictionaries give the same ids to the same
    words exactly when their fingerprints are equal (counts do not matter)."""
    digest = hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()
    return {"sha256": digest, "size": len(dictionary), "path": os.path.abspath(path) if path else None}


def describe(fingerprint: Dict) -> str:
    where = fingerprint.get("path") or "a dictionary of unknown path"
    return f"{where} ({fingerprint['size']} entries, sha256 {fingerprint['sha256'][:12]})"


def check_same_dictionary(trained: Optional[Dict], current: Dict, what: str, remedy: str = "") -> None:
    if trained is not None and trained["sha256"] != current["sha256"]:
        raise CheckpointError(
            f"{what} was trained with the dictionary {describe(trained)}, but this run's dictionary is "
            f"{describe(current)}: token ids would map to other words. Give the data folder the model was "
            f"trained on (or a copy of its dict.txt){remedy}.")


class DictionaryBinding(nn.Module):
    """The fingerprint of the model's dictionary, in its state dict (as ``..._extra_state``).

    Loading a state dict written with another dictionary raises :class:`CheckpointError`, naming both
    dictionary files. Checkpoints written before the binding existed load unchecked.
    """

    def __init__(self, dictionary, path: Optional[str] = None):
        super().__init__()
        self.fingerprint = dictionary_fingerprint(dictionary, path)

    def get_extra_state(self):
        return dict(self.fingerprint)

    def set_extra_state(self, state) -> None:
        check_same_dictionary(state, self.fingerprint, "this checkpoint")

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        state_dict.setdefault(f"{name}._extra_state", None)


def checkpoint_dictionary(state: Dict) -> Optional[Dict]:
    """The dictionary fingerprint saved in a loaded checkpoint, if it has one."""
    return next((value for key, value in state.get("model", {}).items()
                 if key.endswith("dictionary_binding._extra_state")), None)


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
        raise CheckpointError(f"no checkpoint at {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    if not is_readable_checkpoint(path):
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated, or another kind of file)")


def load_checkpoint_state(path: str) -> Dict:
    """A checkpoint's contents, tensors memory-mapped."""
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # torch raises many kinds on a damaged file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e


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


def process_alive(pid: int, host: Optional[str] = None) -> bool:
    """Whether process ``pid`` runs (on ``host``, when given: another host's processes are assumed to)."""
    if host is not None and host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_save_dir(save_dir: str) -> str:
    """Takes ``save_dir/fairseq-wae.lock`` for this process until it exits; a lock left by a dead process
    is taken over with a warning. Returns the lock's path."""
    os.makedirs(save_dir, exist_ok=True)
    lock = os.path.join(save_dir, LOCK_NAME)
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(lock) as f:
                    pid_text, _, host = f.read().strip().partition(" ")
            except FileNotFoundError:
                continue
            if pid_text.isdigit() and process_alive(int(pid_text), host or None):
                raise CheckpointError(
                    f"--save-dir {save_dir} is in use by another training (process {pid_text} on {host or '?'}, "
                    f"see {lock}): two runs would overwrite each other's checkpoints. Use another --save-dir, or "
                    "wait for it to finish")
            logger.warning(f"taking over {lock}, left by process {pid_text or '?'}, which no longer runs")
            os.remove(lock)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        atexit.register(_release, lock, me)
        return lock
    raise CheckpointError(f"could not take the lock {lock}")


def _release(lock: str, me: str) -> None:
    try:
        with open(lock) as f:
            if f.read().strip() == me:
                os.remove(lock)
    except OSError:
        pass


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


def guard_save_dir(save_dir: str, restore_file: str, dictionary_fingerprint: Dict, lock: bool = True,
                   model_class: Optional[type] = None, arch: Optional[str] = None) -> None:
    """What fairseq-train must know before it resumes from ``save_dir`` (see the module's docstring);
    with ``model_class``, also that the checkpoint holds a model of that class."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise CheckpointError(f"--save-dir {save_dir} is a file, not a folder")
    if lock:
        lock_save_dir(save_dir)
        recover_last_checkpoint(save_dir)
    resume = os.path.join(save_dir, "checkpoint_last.pt") if restore_file == "checkpoint_last.pt" else restore_file
    if os.path.exists(resume):
        state = load_checkpoint_state(resume)
        if model_class is not None:
            check_same_model_class(state, model_class, arch, resume)
        trained = checkpoint_dictionary(state)
        check_same_dictionary(trained, dictionary_fingerprint, f"{resume}, which this run would resume from,",
                              ", or train into another --save-dir")
