"""The save dir's lock: two trainings never write one save dir at once. A lock names the training that
took it (process, host, a token) and the folder it was taken for, so that a copy of the folder is not
locked; it is given back when its training ends (see :class:`SaveDirLock`)."""
import atexit
import fcntl
import gc
import json
import logging
import os
import socket
import uuid
import weakref
from typing import Dict, Optional

from fairseq_wae.errors import CheckpointError

logger = logging.getLogger(__name__)

LOCK_NAME = "fairseq-wae.lock"


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


def folder_identity(folder: str) -> Dict:
    """What names a folder in its lock: its absolute path (for messages) and its inode and device. A copy
    of the folder (``cp -r``, ``shutil.copytree``), wherever it lies, is another inode."""
    status = os.stat(folder)
    return {"save_dir": os.path.realpath(folder), "inode": status.st_ino, "device": status.st_dev}


def read_lock(path: str) -> Optional[Dict]:
    """The record in a lock file (None when there is no file): ``pid``, ``host``, the folder it was taken
    for (:func:`folder_identity`) and ``training``, a token of the training that took it. A lock written
    before locks named their folder ("PID HOST") gives ``pid`` and ``host`` alone."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        pid_text, _, host = text.strip().partition(" ")
        record = {"pid": pid_text, "host": host or None}
    if not (isinstance(record.get("pid"), int) or str(record.get("pid")).isdigit()):
        record["pid"] = None  # not a lock anything wrote: nobody holds it
    else:
        record["pid"] = int(record["pid"])
    return record


def same_folder(held: Dict, mine: Dict) -> bool:
    """Whether a lock's record was taken for the folder of ``mine`` (a record of :func:`folder_identity`).
    Device numbers are compared on the same host alone: another host numbers a shared file system's
    devices its own way, while its inodes are the server's."""
    return held["inode"] == mine["inode"] and (held.get("host") != mine["host"] or held.get("device") == mine["device"])


_HELD: Dict[str, "SaveDirLock"] = {}  # the locks this process holds, by their training's token


class SaveDirLock:
    """A save dir's lock file, held by one training of this process, for an explicit lifetime: until
    :meth:`release` is called, until the process exits (atexit), or, given the object that stands for
    the training (``owner``: fairseq-train's task, see SentenceAutoencodingTask.build_criterion), until
    that object is gone (weakref.finalize; the lock does not keep it alive). fairseq-train calls
    nothing of the task when it ends: a CLI run ends with its process; in a Python session the task is
    gone once the session lets go of it (collected with its reference cycles), and the task gives the
    lock back itself when one of its methods raises during the training."""

    def __init__(self, path: str, record: Dict, owner=None):
        self.path, self.record = path, record
        self._owner = weakref.ref(owner) if owner is not None else None
        self._released = False
        _HELD[record["training"]] = self
        atexit.register(self.release)
        if owner is not None:
            weakref.finalize(owner, self.release)

    def owned_by(self, owner) -> bool:
        return owner is not None and self._owner is not None and self._owner() is owner

    def training_runs(self) -> bool:
        """Whether the training that took the lock runs: not released, and its owner (if it was given
        one) is still there."""
        return not self._released and (self._owner is None or self._owner() is not None)

    def release(self) -> None:
        """Removes the lock file if it is still this training's (another training of this process may
        have taken it over since; a forked child never removes its parent's)."""
        self._released = True
        _HELD.pop(self.record["training"], None)
        atexit.unregister(self.release)
        if os.getpid() != self.record["pid"]:
            return
        try:
            if read_lock(self.path) == self.record:
                os.remove(self.path)
        except OSError:
            pass


def lock_save_dir(save_dir: str, owner=None) -> SaveDirLock:
    """Takes ``save_dir/fairseq-wae.lock`` for a training (``owner``: the object that stands for it; see
    :class:`SaveDirLock` for when it is given back; the same owner taking it again gets the same lock). A lock is honoured when it was taken for this folder (not copied with its files into another
    one) by a process that runs, or by a training of this process that runs; any other is taken over
    with a warning."""
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, LOCK_NAME)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), **folder_identity(save_dir),
            "training": uuid.uuid4().hex}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            held = read_lock(path)
            if held is None:
                continue  # given back meanwhile
            holder = _HELD.get(held.get("training"))
            if holder is not None and holder.owned_by(owner):
                return holder  # the training that holds it, building a model again
            logger.warning(f"taking over {path}, {_why_not_honoured(held, mine, save_dir, path)}")
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine) + "\n")
        return SaveDirLock(path, mine, owner)
    raise CheckpointError(f"could not take the lock {path}")


def _why_not_honoured(held: Dict, mine: Dict, save_dir: str, path: str) -> str:
    """Why the lock ``held`` of ``save_dir`` may be taken over, in words; raises :class:`CheckpointError`
    when it is honoured."""
    if "inode" in held and not same_folder(held, mine):
        return (f"taken for {held.get('save_dir')}, not for this folder: it was copied with that folder's files, "
                "and locks nothing here")
    pid, host = held["pid"], held.get("host")
    if pid is None:
        return "which names no process"
    if pid == mine["pid"] and host == mine["host"]:
        holder = _HELD.get(held.get("training"))
        if holder is not None and holder.training_runs():
            gc.collect()  # an ended training's owner may wait in a reference cycle: collected, it gives the lock back
        if holder is not None and holder.training_runs():
            raise CheckpointError(
                f"--save-dir {save_dir} is in use by another training of this process (see {path}): two runs would "
                "overwrite each other's checkpoints. Use another --save-dir, or wait for it to finish")
        return "left by an earlier training of this process, which has ended"
    if process_alive(pid, host):
        raise CheckpointError(
            f"--save-dir {save_dir} is in use by another training (process {pid} on {host or '?'}, see {path}): "
            "two runs would overwrite each other's checkpoints. Use another --save-dir, or wait for it to finish")
    return f"left by process {pid}, which no longer runs"



def hold_folder(out: str, what: str, staging_prefix: str, error=CheckpointError) -> int:
    """One writer per folder: an exclusive lock on the folder ``out`` itself (flock), held until the
    returned descriptor is closed or the process ends, however it ends (nothing stale is left). A second
    writer is refused, naming the first by the staging folder (``<staging_prefix><pid>``) it writes in."""
    descriptor = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        writers = [name[len(staging_prefix):] for name in os.listdir(out)
                   if name.startswith(staging_prefix) and name[len(staging_prefix):].isdigit()]
        named = f" (process {', '.join(writers)})" if writers else ""
        raise error(f"{out} is being written by another fairseq-wae command{named} (this {what} would write it "
                    "too): two runs never write one folder; wait for it to finish, or choose another folder") from None
    return descriptor
