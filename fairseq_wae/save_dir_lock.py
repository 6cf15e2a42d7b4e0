"""The save dir's lock: two trainings never write one save dir at once, and an ended training never
stands in the way of the next.

The lock is the kernel's (flock; fcntl's record lock where flock is missing) on ``save_dir/fairseq-wae.lock``,
so it is given back however its training ends: the kernel releases it when the process ends (kill -9
included; the processes it forks, DataLoader workers, keep no copy: :func:`close_inherited_locks`), a network file system's server when the node's lease runs out, and a training in a Python
session releases it when fairseq-train's ``main`` returns or raises (:func:`release_when_training_ends`),
when its task is collected, or when the same thread starts another training (a thread runs one at a time).
The file also holds a record of the holder (host, process, start time) for the refusal's message; a file
left by a killed training, or written by an earlier release of the plugin, holds no lock and is no obstacle.
"""
import datetime
import errno
import fcntl
import functools
import glob
import importlib.abc
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import weakref
from typing import Dict, Optional

from fairseq_wae.errors import CheckpointError

logger = logging.getLogger(__name__)

LOCK_NAME = "fairseq-wae.lock"
#: file systems that take no locks (some Lustre and NFS mounts) answer one of these
NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
_WARNED_UNLOCKABLE = set()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (the staging folders of export and preparation are named by it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def try_lock(descriptor: int, folder: str) -> bool:
    """Takes the kernel's exclusive lock on an open file without waiting: True when taken, False when
    another holds it. On a file system that takes no locks a warning names the folder (once per
    process) and True is returned: the work goes on unguarded rather than not at all."""
    try:
        if hasattr(fcntl, "flock"):
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # flock's EWOULDBLOCK; lockf's EAGAIN or EACCES
        return False
    except OSError as e:
        if e.errno not in NO_LOCKS:
            raise
        if folder not in _WARNED_UNLOCKABLE:
            _WARNED_UNLOCKABLE.add(folder)
            logger.warning(f"the file system of {folder} takes no locks ({os.strerror(e.errno)}): nothing stops "
                           "a second run from writing it at the same time")
    return True


def read_record(path: str) -> Optional[Dict]:
    """The holder's record in a lock file, or None when there is no file or no readable record in it
    (a lock of an earlier release, "PID HOST", is read as far as it goes)."""
    try:
        with open(path) as f:
            text = f.read()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        pid, _, host = text.strip().partition(" ")
        record = {"pid": int(pid), "host": host or None} if pid.isdigit() else None
    return record if isinstance(record, dict) else None


def holders_record(path: str, wait: float = 1.0) -> Optional[Dict]:
    """The record of the lock file's holder, waiting up to ``wait`` seconds for a holder that has just taken
    the lock to write it (a refusal that names the training it met is worth a second)."""
    deadline = time.monotonic() + wait
    record = read_record(path)
    while not record and time.monotonic() < deadline:
        time.sleep(0.02)
        record = read_record(path)
    return record


def describe_holder(record: Optional[Dict]) -> str:
    if not record:
        return "a training that is starting"
    return (f"process {record.get('pid', '?')} on {record.get('host') or '?'}, started {record.get('started', '?')}")


_HELD: Dict[str, "SaveDirLock"] = {}  # this process's locks, by the lock file's real path
_LOCK_DESCRIPTORS = set()  # the descriptors of every lock this process holds (save dirs and folders)


def close_inherited_locks() -> None:
    """In a forked child (a DataLoader worker, a preparation's pool): closes its copies of the parent's lock
    descriptors, so that a lock ends with the process that took it, ``kill -9`` included, not with its last
    child (the kernel keeps a flock while any copy of its descriptor is open). The parent's hold is unchanged."""
    for descriptor in _LOCK_DESCRIPTORS:
        try:
            os.close(descriptor)
        except OSError:
            pass
    _LOCK_DESCRIPTORS.clear()
    for lock in _HELD.values():
        lock.descriptor = None
    _HELD.clear()


os.register_at_fork(after_in_child=close_inherited_locks)


class SaveDirLock:
    """One training's hold on a save dir: the open, locked lock file, until :meth:`release`."""

    def __init__(self, path: str, descriptor: Optional[int], owner=None):
        self.path, self.descriptor = path, descriptor
        self.owner = weakref.ref(owner) if owner is not None else lambda: None
        self.thread = threading.current_thread()
        self.record = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                       "save_dir": os.path.realpath(os.path.dirname(path))}
        if descriptor is not None:
            _LOCK_DESCRIPTORS.add(descriptor)
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(self.record) + "\n").encode(), 0)
        _HELD[os.path.realpath(path)] = self
        if owner is not None:  # and when what stands for the training is gone (the lock does not keep it)
            weakref.finalize(owner, self.release)

    def release(self) -> None:
        """Removes the lock file (while still holding it, so no other training has it yet) and gives the
        lock back (a forked child holds no copy: :func:`close_inherited_locks`)."""
        if _HELD.get(os.path.realpath(self.path)) is self:
            del _HELD[os.path.realpath(self.path)]
        descriptor, self.descriptor = self.descriptor, None
        if descriptor is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass
        _LOCK_DESCRIPTORS.discard(descriptor)
        os.close(descriptor)

    def ended(self) -> bool:
        """Whether the training that took the lock has certainly ended: its thread has, or runs another
        training now (a thread runs one fairseq-train at a time)."""
        return not self.thread.is_alive() or self.thread is threading.current_thread()


def lock_save_dir(save_dir: str, owner=None) -> SaveDirLock:
    """Takes ``save_dir/fairseq-wae.lock`` for a training (``owner``: the object that stands for it; the
    same owner taking it again gets the same lock), or refuses in one line naming the training that
    holds it. Leftovers of an interrupted save (fairseq's ``*.pt.tmp``) are removed once it is taken."""
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, LOCK_NAME)
    mine = _HELD.get(os.path.realpath(path))
    if mine is not None:
        if owner is not None and mine.owner() is owner:
            return mine
        if not mine.ended():
            raise CheckpointError(
                f"--save-dir {save_dir} is in use by another training of this process (thread {mine.thread.name}, "
                f"started {mine.record['started']}): two runs would overwrite each other's checkpoints. Use another "
                "--save-dir, or wait for it to finish")
        mine.release()  # its training ended without giving it back: an exception a session keeps, say
    for _ in range(10):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(descriptor, save_dir):
            os.close(descriptor)
            raise CheckpointError(
                f"--save-dir {save_dir} is in use by another training ({describe_holder(holders_record(path))}; see "
                f"{path}): two runs would overwrite each other's checkpoints. Wait for it to finish, or use another "
                "--save-dir. If that training no longer runs, its lock is free already on a local disk; on a network "
                "file system the server frees a lost node's locks when its lease ends (about 90 s on NFSv4): rerun then")
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            break
        os.close(descriptor)  # locked a file its holder removed as it gave the lock back: take the new one
    else:
        raise CheckpointError(f"could not take the lock {path}: it was replaced 10 times while taking it")
    taken = SaveDirLock(path, descriptor, owner)  # its record first: a training refused meanwhile names it
    try:
        _remove_interrupted_saves(save_dir)
    except BaseException:
        taken.release()
        raise
    return taken


def _remove_interrupted_saves(save_dir: str) -> None:
    """fairseq writes a checkpoint to ``NAME.tmp`` and renames it: a ``.tmp`` is a save that was cut off."""
    for leftover in glob.glob(os.path.join(glob.escape(save_dir), "*.pt.tmp")):
        logger.warning(f"removing {leftover}, a checkpoint whose saving was interrupted")
        os.remove(leftover)


def _locks_of_this_thread():
    return [lock for lock in _HELD.values() if lock.thread is threading.current_thread()]


def release_trainings_of_this_thread() -> None:
    for lock in _locks_of_this_thread():
        lock.release()


def check_save_dir_is_a_folder(save_dir: Optional[str]) -> None:
    if save_dir and os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise CheckpointError(f"--save-dir {save_dir} is a file, not a folder")


def release_when_training_ends(main):
    """fairseq-train's ``main`` that gives back the save dir's lock its training took, however it ends
    (a return, an exception a Python session keeps with its traceback, KeyboardInterrupt). A save that
    ran out of disk space is refused in one line naming the folder, its temporary file removed; a save dir
    that is a file, before the training starts."""
    if getattr(main, "releases_save_dir_locks", False):
        return main

    @functools.wraps(main)
    def training(cfg, *args, **kwargs):
        # before fairseq's own check of the save dir, whose answer to a file is a traceback
        check_save_dir_is_a_folder(getattr(getattr(cfg, "checkpoint", None), "save_dir", None))
        try:
            return main(cfg, *args, **kwargs)
        except OSError as e:
            save_dirs = [lock.record["save_dir"] for lock in _locks_of_this_thread()]
            if e.errno != errno.ENOSPC or not save_dirs:
                raise
            for save_dir in save_dirs:
                _remove_interrupted_saves(save_dir)
            raise CheckpointError(out_of_space_message(save_dirs[0], None)) from e
        finally:
            release_trainings_of_this_thread()

    training.releases_save_dir_locks = True
    return training


def out_of_space_message(save_dir: str, needed: Optional[int]) -> str:
    free = shutil.disk_usage(save_dir).free
    need = f"it needs about {needed / 2**20:,.1f} MiB, " if needed else ""
    return (f"no space left in {save_dir} for the next checkpoint ({need}{free / 2**20:,.1f} MiB are free). The last "
            "complete checkpoint is kept: free space, or move the save dir where there is some, and rerun the same "
            "command to resume from it")


#: fairseq's training entry points the plugin wraps: module, the name of its ``main``
TRAINING_MAINS = {"fairseq_cli.train": "main", "fairseq_cli.hydra_train": "pre_main"}


def wrap_training_main(module) -> None:
    name = TRAINING_MAINS[module.__name__]
    if hasattr(module, name):
        setattr(module, name, release_when_training_ends(getattr(module, name)))


class WrapTrainingMainsWhenLoaded(importlib.abc.MetaPathFinder):
    """Finds fairseq-train's modules as the next finder does and wraps their ``main`` as they load: a
    Python session that imported the plugin first (``from_pretrained``) gets the wrapped ``main`` for its
    first training too, whether it calls ``main`` or ``cli_main``."""

    def find_spec(self, name, path, target=None):
        if name not in TRAINING_MAINS or name in sys.modules:
            return None
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if finder is not self and hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                load = spec.loader.exec_module

                def load_and_wrap(module):
                    load(module)
                    wrap_training_main(module)

                spec.loader.exec_module = load_and_wrap  # this spec's own loader object
                return spec
        return None


def release_locks_when_fairseq_train_ends() -> None:
    """Wraps fairseq-train's ``main`` (and fairseq-hydra-train's), now where their modules are loaded
    (fairseq's commands import the plugin through --user-dir after them) and as they load otherwise:
    fairseq gives a task no call when the training ends. Not imported here: fairseq_cli.train configures
    logging when imported."""
    for module_name in TRAINING_MAINS:
        if module_name in sys.modules:
            wrap_training_main(sys.modules[module_name])
    if not any(isinstance(finder, WrapTrainingMainsWhenLoaded) for finder in sys.meta_path):
        sys.meta_path.insert(0, WrapTrainingMainsWhenLoaded())


def hold_folder(out: str, what: str, staging_prefix: str, error=CheckpointError) -> int:
    """One writer per folder: an exclusive lock on the folder ``out`` itself (flock), held until the
    returned descriptor is given back (:func:`release_folder`) or the process ends, however it ends (nothing
    stale is left). A second writer is refused, naming the first by the staging folder
    (``<staging_prefix><pid>``) it writes in."""
    descriptor = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    if not try_lock(descriptor, out):
        os.close(descriptor)
        writers = [name[len(staging_prefix):] for name in os.listdir(out)
                   if name.startswith(staging_prefix) and name[len(staging_prefix):].isdigit()]
        named = f" (process {', '.join(writers)})" if writers else ""
        raise error(f"{out} is being written by another fairseq-wae command{named} (this {what} would write it "
                    "too): two runs never write one folder; wait for it to finish, or choose another folder")
    _LOCK_DESCRIPTORS.add(descriptor)
    return descriptor


def release_folder(descriptor: int) -> None:
    """Gives back a folder taken by :func:`hold_folder`."""
    _LOCK_DESCRIPTORS.discard(descriptor)
    os.close(descriptor)
