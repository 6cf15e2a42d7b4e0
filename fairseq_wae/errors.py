"""The plugin's refusals: one error type, shown as one line.

Every refusal (a bad flag, file or line, a checkpoint that must not be used) is a ``Refusal`` whose
message names what to change. Under fairseq's commands (``fairseq-train --user-dir fairseq_wae`` ...)
and the plugin's console scripts, an uncaught refusal prints ``<command>: error: <message>`` and exits
with status 2, as argparse does for a bad flag, under ``fairseq-hydra-train`` too; ``FAIRSEQ_WAE_TRACEBACK=1``
(and hydra's own ``HYDRA_FULL_ERROR=1``) shows the traceback as well. Any other error keeps Python's (or
hydra's) traceback: it is a defect, and the traceback is what finds it.
"""
import os
import sys

TRACEBACK_VARIABLE = "FAIRSEQ_WAE_TRACEBACK"
#: hydra's own switch for a full traceback, honoured as ours
HYDRA_TRACEBACK_VARIABLE = "HYDRA_FULL_ERROR"
EXIT_STATUS = 2


class Refusal(ValueError):
    """Bad input the user can fix: the message names the flag, file or line and what to do."""


class CheckpointError(Refusal):
    """A checkpoint or save dir that must not be used: the message names the files."""


def _refusal_types():
    found, pending = [], [Refusal]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


def refusal_message(error: BaseException):
    """The message of a refusal, also one raised in a worker that torch.multiprocessing.spawn re-raises
    in the parent (as ProcessRaisedException, holding the worker's traceback as text); else None."""
    if isinstance(error, Refusal):
        return str(error)
    if type(error).__name__ == "ProcessRaisedException":
        last = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        for kind in _refusal_types():
            prefix = f"{kind.__module__}.{kind.__qualname__}: "
            if last.startswith(prefix):
                return last[len(prefix):]
    return None


def command_name() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else "python"


PLUGIN_FOLDERS = (os.path.dirname(os.path.abspath(__file__)),  # python -m fairseq_wae.cli.*
                  os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))


def runs_a_command() -> bool:
    """Whether this process is one of fairseq's commands (fairseq-train, ...) or the plugin's console
    scripts and scripts/*.py, whose refusals are shown as one line; a program of the user's that imports
    the plugin keeps Python's own display, a traceback to its own line."""
    program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    return os.path.basename(program).startswith("fairseq-") or any(
        program.startswith(folder + os.sep) for folder in PLUGIN_FOLDERS)


def one_line(error: BaseException):
    """``<command>: error: <message>`` for a refusal shown without its traceback; None for any other
    error, and for every error when ``FAIRSEQ_WAE_TRACEBACK=1``."""
    message = refusal_message(error)
    if message is None or any(os.environ.get(name, "") not in ("", "0")
                              for name in (TRACEBACK_VARIABLE, HYDRA_TRACEBACK_VARIABLE)):
        return None
    return f"{command_name()}: error: {message}"


def show_refusals_as_one_line() -> None:
    """Makes an uncaught refusal end fairseq's commands and the plugin's scripts with its one-line
    message and status 2; with ``FAIRSEQ_WAE_TRACEBACK=1`` after its traceback. Other programs that
    import the plugin, and interactive sessions, keep Python's own display. Installed when the plugin is imported: fairseq's commands import it through
    ``--user-dir`` before they read a flag, and give no other place to format their errors."""
    previous = sys.excepthook
    if getattr(previous, "shows_refusals", False):
        return

    def hook(kind, error, traceback):
        if bool(sys.flags.interactive) or hasattr(sys, "ps1") or not runs_a_command():
            return previous(kind, error, traceback)
        line = one_line(error)
        if line is None:
            previous(kind, error, traceback)
        else:
            print(line, file=sys.stderr, flush=True)
        if refusal_message(error) is not None:
            raise SystemExit(EXIT_STATUS)

    hook.shows_refusals = True
    sys.excepthook = hook
    show_refusals_of_hydra_jobs_as_one_line()


def show_refusals_of_hydra_jobs_as_one_line() -> None:
    """fairseq-hydra-train runs its job inside hydra's handler (``run_and_report``), which prints the
    traceback of any exception and exits 1, never reaching sys.excepthook. Hydra keeps the failed job's
    exception on its ``JobReturn`` and raises it when it reads the job's return value, after the job and
    its callbacks ended: that read shows a refusal as one line and exits 2. Hydra's display stays for
    every other error, and for refusals under either traceback variable."""
    try:
        from hydra.core.utils import JobReturn, JobStatus
    except ImportError:  # no hydra: no fairseq-hydra-train either
        return
    read = JobReturn.return_value
    if getattr(read.fget, "shows_refusals", False):
        return

    def return_value(job):
        line = one_line(job._return_value) if job.status == JobStatus.FAILED and runs_a_command() else None
        if line is None:
            return read.fget(job)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS)

    return_value.shows_refusals = True
    JobReturn.return_value = property(return_value, read.fset)


class MissingFile(Refusal, FileNotFoundError):
    """A file or folder the user named (or the one a folder must hold) is not there."""
