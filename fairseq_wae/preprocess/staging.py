"""Replacing the corpus in --out as one journaled step: the new files are built in a staging folder,
the old ones wait in a previous-corpus folder, and preparation-journal.json lets any later run finish
or undo a replacement that was killed half-way."""
import json
import logging
import os
import shutil
from typing import Dict, Optional, Sequence

from fairseq_wae.preprocess.manifest import JOURNAL, MANIFEST, PREVIOUS_PREFIX, STAGING_PREFIX
from fairseq_wae.preprocess.readers import CorpusError

logger = logging.getLogger(__name__)


def _remove_stale_staging(out: str) -> None:
    """Staging and previous-corpus folders are named after the process that made them: those of dead
    processes go (once no journal names them: ``finish_interrupted_preparation`` runs first)."""
    from fairseq_wae.save_dir_lock import process_alive

    for name in os.listdir(out):
        prefix = next((p for p in (STAGING_PREFIX, PREVIOUS_PREFIX) if name.startswith(p)), None)
        pid = name[len(prefix):] if prefix else ""
        if pid.isdigit() and not process_alive(int(pid)):
            logger.warning(f"removing {os.path.join(out, name)}, left by an interrupted preparation (process {pid})")
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def _move(source: str, destination: str) -> None:
    """One step of putting a corpus in place (atomic): every move in or out of --out goes through here,
    and the tests stop a preparation at each one."""
    os.replace(source, destination)


def _journal_paths(out: str, journal: Dict) -> (str, str):
    return os.path.join(out, journal["staging"]), os.path.join(out, journal["previous"])


def _roll_forward(out: str, journal: Dict) -> None:
    """Finishes a replacement from wherever it stopped: the old files out (manifest.json first), the new
    ones in (manifest.json last), then the journal out, which is the commit.

    Each step is a rename, and the old files all leave before the first new one arrives, so the state
    tells which are done: an old file still in --out has no copy in the previous-corpus folder, a new
    file not yet in --out is still in the staging folder. Idempotent; rolling back works from any state
    this leaves."""
    staging, previous = _journal_paths(out, journal)
    for name in journal["old"]["names"]:
        if not os.path.exists(os.path.join(previous, name)) and os.path.isfile(os.path.join(out, name)):
            _move(os.path.join(out, name), os.path.join(previous, name))
    for name in journal["new"]["names"]:
        if os.path.exists(os.path.join(staging, name)):
            _move(os.path.join(staging, name), os.path.join(out, name))
    _move(os.path.join(out, JOURNAL), os.path.join(previous, JOURNAL))


def _roll_back(out: str, journal: Dict) -> None:
    """Undoes a replacement from wherever it stopped (the reverse of ``_roll_forward``): the new files back
    into the staging folder, the old ones back into --out, then the journal out."""
    staging, previous = _journal_paths(out, journal)
    for name in reversed(journal["new"]["names"]):
        if not os.path.exists(os.path.join(staging, name)) and os.path.isfile(os.path.join(out, name)):
            _move(os.path.join(out, name), os.path.join(staging, name))
    for name in reversed(journal["old"]["names"]):
        if os.path.exists(os.path.join(previous, name)):
            _move(os.path.join(previous, name), os.path.join(out, name))
    _move(os.path.join(out, JOURNAL), os.path.join(staging, JOURNAL))


def _complete(out: str, journal: Dict, side: str) -> bool:
    """Whether every file of the journal's ``side`` ("old" or "new") is still somewhere: in --out, or in
    the folder it waits in."""
    staging, previous = _journal_paths(out, journal)
    waiting = previous if side == "old" else staging
    return all(os.path.isfile(os.path.join(out, name)) or os.path.isfile(os.path.join(waiting, name))
               for name in journal[side]["names"])


def read_journal(out: str) -> Optional[Dict]:
    """The journal of a replacement that did not finish, or None. One that does not parse is refused:
    only this tool writes it (written whole in the staging folder, then moved in)."""
    path = os.path.join(out, JOURNAL)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            journal = json.load(f)
        for key in ("process", "staging", "previous", "old", "new"):
            journal[key]  # noqa: B018 (a KeyError names what is missing)
        if not all(isinstance(name, str) for side in ("old", "new") for name in journal[side]["names"]):
            raise TypeError("a file name that is not a string")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorpusError(f"{path} is not a journal this tool can read ({e}): it says a preparation into {out} "
                          "stopped while moving files, but not which; move the folder aside and prepare again")
    return journal


def finish_interrupted_preparation(out: str, head: Dict, force: bool) -> None:
    """Repairs --out after a preparation that was killed while it moved its files in (its journal is
    there): the same inputs and options as ``head`` finish it; anything else undoes it, so the corpus
    that was there before is back. Either way no file is lost: until the journal goes, the new files
    wait in the staging folder and the old ones in the previous-corpus folder. When those folders were
    removed by hand neither is possible: refused, or with ``force`` the files either corpus wrote are
    removed (no other file is touched)."""
    journal = read_journal(out)
    if journal is None:
        return
    from fairseq_wae.save_dir_lock import process_alive

    path, pid = os.path.join(out, JOURNAL), journal["process"]
    if pid != os.getpid() and process_alive(pid):
        raise CorpusError(f"--out {out} is being written by another preparation (process {pid}, see {path}): "
                          "wait for it to end, or choose another --out")
    staging, previous = _journal_paths(out, journal)
    same = {key: journal["new"].get(key) for key in ("inputs", "options")} == \
        {key: head.get(key) for key in ("inputs", "options")}
    if same and _complete(out, journal, "new"):
        logger.warning(f"{out}: finishing the same preparation, which was killed while it moved its files in "
                       f"({path})")
        _roll_forward(out, journal)
    elif _complete(out, journal, "old"):
        logger.warning(f"{out}: undoing a preparation of {_describe_inputs(journal['new'])} that was killed while "
                       f"it moved its files in ({path}): the corpus that was there before is back")
        _roll_back(out, journal)
    elif force:
        names = sorted(set(journal["old"]["names"]) | set(journal["new"]["names"]))
        logger.warning(f"{out}: a preparation was killed while it moved its files in, and {staging} or {previous} "
                       f"is incomplete, so it can be neither finished nor undone: --force removes what the two "
                       f"preparations wrote ({', '.join(names)})")
        for name in names:
            if os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        os.remove(path)
    else:
        raise CorpusError(f"--out {out} holds a preparation that was killed while it moved its files in ({path}), "
                          f"and {staging} or {previous}, which it needs to finish or undo it, is incomplete: its "
                          "files come from two corpora. Pass --force to replace them (only the files the journal "
                          "lists), or choose another --out")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def _describe_inputs(side: Dict) -> str:
    return ", ".join(item.get("path", "?") for item in side.get("inputs") or []) or "(no inputs recorded)"


def replace_corpus(out: str, staging: str, old_names: Sequence[str], new_names: Sequence[str],
                   old_head: Optional[Dict], new_manifest: Dict) -> None:
    """Moves the files of the corpus in --out (``old_names``, those its manifest lists) into a
    previous-corpus folder and the new ones (``new_names``, all in ``staging``, manifest.json among them)
    in, with a journal in --out from before the first move until after the last: killed at any instant,
    --out holds the old corpus, the new one, or the journal, which fairseq-train refuses and the next
    preparation uses to finish or undo the replacement (``finish_interrupted_preparation``).

    manifest.json leaves first and arrives last. An exception (not a kill) undoes what was done."""
    previous = os.path.join(out, f"{PREVIOUS_PREFIX}{os.getpid()}")
    shutil.rmtree(previous, ignore_errors=True)
    os.makedirs(previous)
    order = lambda names: sorted(names, key=lambda name: (name == MANIFEST, name))  # noqa: E731
    journal = {
        "process": os.getpid(), "staging": os.path.basename(staging), "previous": os.path.basename(previous),
        "old": {"names": list(reversed(order(old_names))), **(old_head or {})},
        "new": {"names": order(new_names), "inputs": new_manifest["inputs"], "options": new_manifest["options"],
                "sha256": new_manifest["files"]},
    }
    written = os.path.join(staging, JOURNAL)
    with open(written, "w") as f:
        json.dump(journal, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _move(written, os.path.join(out, JOURNAL))
    try:
        _roll_forward(out, journal)
    except BaseException:
        _roll_back(out, journal)  # if this fails too, the journal stays for the next run
        raise
    shutil.rmtree(previous, ignore_errors=True)
