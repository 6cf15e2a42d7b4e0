"""The plugin's refusals: one error type, shown as one line.

Every refusal (a bad flag, file or line, a checkpoint that must not be used) is a ``Refusal`` whose
message names what to change. Under fairseq's commands (``fairseq-train --user-dir fairseq_wae`` ...)
and the plugin's console scripts, an uncaught refusal prints ``<command>: error: <message>`` and exits
with status 2, as argparse does for a bad flag; ``FAIRSEQ_WAE_TRACEBACK=1`` shows the traceback as
well. Any other error keeps Python's traceback: it is a defect, and the traceback is what finds it.
"""
import os
import sys

TRACEBACK_VARIABLE = "FAIRSEQ_WAE_TRACEBACK"
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
    if message is None or os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
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


class MissingFile(Refusal, FileNotFoundError):
    """A file or folder the user named (or the one a folder must hold) is not there."""
