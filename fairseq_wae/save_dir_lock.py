"""The save dir's lock: two trainings never write one save dir at once. A lock names the training that
took it (process, host, a token) and the folder it was taken for, so that a copy of the folder is not
locked; it is given back when its training ends (see :class:`SaveDirLock`)."""
import atexit
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import uuid
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


#: how often (seconds) a lock looks whether the training that holds it still runs
LOCK_WATCH_SECONDS = 0.1
_HELD: Dict[str, "SaveDirLock"] = {}  # the locks this process holds, by their training's token


class SaveDirLock:
    """A save dir's lock file, held by one training of this process. It is given back by :meth:`release`,
    at the process's exit, and, given the frame of the function that trains (``while_running``), as soon
    as that frame has returned or raised: fairseq-train's ``main`` calls nothing of the task when it
    ends, so a daemon thread looks every :data:`LOCK_WATCH_SECONDS` whether the frame is still on its
    thread's stack. That holds in a Python session too, also while a traceback keeps the frame."""

    def __init__(self, path: str, record: Dict, while_running=None):
        self.path, self.record = path, record
        self._frame, self._thread = while_running, threading.get_ident()
        self._stop = threading.Event()
        _HELD[record["training"]] = self
        atexit.register(self.release)
        if while_running is not None:
            threading.Thread(target=self._watch, name=f"fairseq-wae lock of {path}", daemon=True).start()

    def training_runs(self) -> bool:
        """Whether the training that took the lock runs: its frame is on its thread's stack (without a
        frame: until the lock is released)."""
        frame, released = self._frame, self._stop.is_set()
        if released or frame is None:
            return not released
        current = sys._current_frames().get(self._thread)
        while current is not None:
            if current is frame:
                return True
            current = current.f_back
        return False

    def _watch(self) -> None:
        while not self._stop.wait(LOCK_WATCH_SECONDS):
            if not self.training_runs():
                self.release()

    def release(self) -> None:
        """Removes the lock file if it is still this training's (another training of this process may
        have taken it over since; a forked child never removes its parent's)."""
        self._stop.set()
        self._frame = None  # the training's frame, and all it holds, is not kept by the lock
        _HELD.pop(self.record["training"], None)
        atexit.unregister(self.release)
        if os.getpid() != self.record["pid"]:
            return
        try:
            if read_lock(self.path) == self.record:
                os.remove(self.path)
        except OSError:
            pass


def lock_save_dir(save_dir: str, while_running=None) -> SaveDirLock:
    """Takes ``save_dir/fairseq-wae.lock`` for a training (see :class:`SaveDirLock` for when it is given
    back). A lock is honoured when it was taken for this folder (not copied with its files into another
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
            if holder is not None and while_running is not None and holder._frame is while_running:
                return holder  # the training that holds it, building a model again
            logger.warning(f"taking over {path}, {_why_not_honoured(held, mine, save_dir, path)}")
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine) + "\n")
        return SaveDirLock(path, mine, while_running)
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
