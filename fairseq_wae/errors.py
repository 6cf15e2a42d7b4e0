"""The plugin's refusals: one error type, shown as one line.

Every refusal (a bad flag, file or line, a checkpoint that must not be used) is a ``Refusal`` whose
message names what to change. Under fairseq's commands (``fairseq-train --user-dir fairseq_wae`` ...)
and the plugin's own (its console scripts and scripts/*.py: ``command``), an uncaught refusal prints
``<command>: error: <message>`` and exits with status 2, as argparse does for a bad flag, under
``fairseq-hydra-train`` too; ``FAIRSEQ_WAE_TRACEBACK=1`` (and hydra's own ``HYDRA_FULL_ERROR=1``) shows the
traceback as well. Any other error keeps Python's (or hydra's) traceback: it is a defect, and the
traceback is what finds it.
"""
import contextlib
import functools
import os
import signal
import sys
import threading

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
    in the parent (as ProcessRaisedException, holding the worker's traceback as text), or under fairseq's
    commands the refusal an error of fairseq's stands for (``explain_failures_of_fairseq``); else None."""
    if isinstance(error, Refusal):
        return str(error)
    if type(error).__name__ == "ProcessRaisedException":
        last = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        for kind in _refusal_types():
            prefix = f"{kind.__module__}.{kind.__qualname__}: "
            if last.startswith(prefix):
                return last[len(prefix):]
    return _explained(error) if runs_fairseqs_command() else None


def command_name() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else "python"


#: Set on an error that escaped a command of the plugin's (``command``): shown as one line when a refusal.
ESCAPED_A_COMMAND = "escaped_a_fairseq_wae_command"


def runs_fairseqs_command() -> bool:
    """Whether this process is one of fairseq's commands (fairseq-train, ...): they give the plugin no
    other place to format their errors than sys.excepthook, installed by --user-dir."""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program).startswith("fairseq-")


def command(main):
    """Declares ``main`` a command of the plugin (each console script's and scripts/*.py's entry): a
    refusal that escapes it ends the process with its one line and status 2 (``show_refusals_as_one_line``),
    wherever the script lies and whatever it is named; any other error, and every refusal a program of the
    user's raises itself, keeps Python's traceback. Called from another program, ``main`` raises as it
    would. While it runs, SIGTERM (a scheduler's preemption, ``kill``) ends it as Ctrl-C does, with status
    143 once its cleanup has run: temporary copies, staging folders and locks are given back."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        with sigterm_unwinds():
            try:
                return main(*args, **kwargs)
            except BaseException as error:
                setattr(error, ESCAPED_A_COMMAND, True)
                raise

    return run


@contextlib.contextmanager
def sigterm_unwinds():
    """SIGTERM raises SystemExit(143) in this process while the block runs, so that ``finally`` blocks and
    atexit run. Processes forked meanwhile (worker pools, which are ended by SIGTERM) start with the
    default action, set around the fork: a handler inherited would be lost for a SIGTERM that arrives
    before the child's interpreter has settled (it clears pending signals), and a pool's
    ``terminate()`` then waited for ever on such a worker. Off the main thread, or with a handler of the
    program's own, nothing changes."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupted(number, frame):
        raise SystemExit(128 + number)

    interrupted.unwinds = True
    signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_handler_while_forking = []  # the unwinding handler taken off around a fork, put back in the parent


def _default_sigterm_while_forking():
    handler = signal.getsignal(signal.SIGTERM)
    if getattr(handler, "unwinds", False) and threading.current_thread() is threading.main_thread():
        _handler_while_forking.append(handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _sigterm_handler_back_in_the_parent():
    if _handler_while_forking:
        signal.signal(signal.SIGTERM, _handler_while_forking.pop())


os.register_at_fork(before=_default_sigterm_while_forking, after_in_parent=_sigterm_handler_back_in_the_parent,
                    after_in_child=_handler_while_forking.clear)


_EXPLANATIONS = []


def explain_failures_of_fairseq(explain):
    """Registers ``explain(error)``: the refusal (a message) that an error of fairseq's own code stands
    for, or None. Under fairseq's commands an uncaught error so explained is shown as that refusal: a
    mistake the plugin can name, which fairseq meets before any of the plugin's code runs."""
    _EXPLANATIONS.append(explain)
    return explain


def _explained(error: BaseException):
    for explain in _EXPLANATIONS:
        try:
            message = explain(error)
        except Exception:  # explaining must never hide the error itself
            message = None
        if message:
            return message
    return None


def one_line(error: BaseException):
    """``<command>: error: <message>`` for a refusal shown without its traceback; None for any other
    error, and for every error when ``FAIRSEQ_WAE_TRACEBACK=1``."""
    message = refusal_message(error)
    if message is None or any(os.environ.get(name, "") not in ("", "0")
                              for name in (TRACEBACK_VARIABLE, HYDRA_TRACEBACK_VARIABLE)):
        return None
    return f"{command_name()}: error: {message}"


def show_refusals_as_one_line() -> None:
    """Makes an uncaught refusal end fairseq's commands and the plugin's (``command``) with its one-line
    message and status 2; with ``FAIRSEQ_WAE_TRACEBACK=1`` after its traceback. Other programs that
    import the plugin, and interactive sessions, keep Python's own display. Installed when the plugin is
    imported: fairseq's commands import it through ``--user-dir`` before they read a flag."""
    previous = sys.excepthook
    if getattr(previous, "shows_refusals", False):
        return

    def hook(kind, error, traceback):
        declared = runs_fairseqs_command() or getattr(error, ESCAPED_A_COMMAND, False)
        if bool(sys.flags.interactive) or hasattr(sys, "ps1") or not declared:
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
        line = one_line(job._return_value) if job.status == JobStatus.FAILED and runs_fairseqs_command() else None
        if line is None:
            return read.fget(job)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS)

    return_value.shows_refusals = True
    JobReturn.return_value = property(return_value, read.fset)


class MissingFile(Refusal, FileNotFoundError):
    """A file or folder the user named (or the one a folder must hold) is not there."""
