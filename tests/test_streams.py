"""Every reader takes a file, a FIFO, a pipe or '-' (standard input) alike, its bounds applied while it
reads; a stream read twice is copied into $TMPDIR, bounded, and the copy is removed however the command
ends: on a refusal, at exit, on SIGTERM and SIGINT."""
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, toy_sentences

SCRIPTS = {name: str(REPO / "scripts" / f"{name}.py") for name in ("prepare_corpus", "train_lm", "train_word2vec")}
HAS_KENLM = bool(shutil.which("lmplz") or os.path.exists(os.path.expanduser("~/.cache/fairseq-wae/kenlm/bin/lmplz")))


def arguments(script, source, out):
    """``script``'s command line reading ``source`` and writing ``out``."""
    if script == "train_lm":
        return ["--corpus", source, "--out", out]
    if script == "train_word2vec":
        return ["--input", source, "--out", out, "--dim", "8", "--epochs", "1"]
    return ["--input", source, "--out", out]


def in_a_child(script, argv, tmp, stdin=None, pid_file=None, **variables):
    """scripts/<script>.py run as ``__main__`` in a forked child of this process (its imports: no start-up
    cost), $TMPDIR at ``tmp``, standard input from the descriptor ``stdin``, its process id written into
    ``pid_file``; an uncaught error shown by
    the plugin's sys.excepthook, as in a process of its own. Returns (exit status, stdout, stderr, the
    most memory Python held meanwhile, in KiB: tracemalloc's peak)."""
    logs = [tmp.parent / f"{script}.{kind}" for kind in ("out", "err")]
    import fairseq_wae.cli.prepare_corpus  # noqa: F401  (imported here once, not in every child)
    from fairseq_wae.preprocess.tokenize import Tokenizer

    Tokenizer()  # and so is sacremoses, which compiles its expressions as it is imported
    if script == "train_word2vec":
        import gensim.models  # noqa: F401
    pid = os.fork()
    if pid:
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        out, err = (log.read_text() for log in logs)
        peak = int(err.rsplit("memory-peak-kb ", 1)[1]) if "memory-peak-kb " in err else None
        return status, out, err, peak
    status = 1
    try:  # the child never returns into pytest
        sys.stdout, sys.stderr = (open(log, "w", buffering=1) for log in logs)
        os.dup2(sys.stderr.fileno(), 2)
        if stdin is not None:
            os.dup2(stdin, 0)
        if pid_file is not None:
            pid_file.write_text(str(os.getpid()))
        import logging
        import tempfile
        import tracemalloc

        # as a process started from a shell: pytest-xdist's workers ignore SIGINT, which a fork inherits
        signal.signal(signal.SIGINT, signal.default_int_handler)

        logging.getLogger().handlers = [logging.StreamHandler(sys.stderr)]  # pytest's capture handler sat there
        os.environ.update(TMPDIR=str(tmp), **variables)
        tempfile.tempdir = None  # read $TMPDIR again
        tracemalloc.start()  # what Python holds: a stream read whole would show here
        sys.argv = [SCRIPTS[script], *map(str, argv)]
        try:
            runpy.run_path(SCRIPTS[script], run_name="__main__")
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 1
        except BaseException:
            try:
                sys.excepthook(*sys.exc_info())
            except SystemExit as e:
                status = e.code
        print(f"memory-peak-kb {tracemalloc.get_traced_memory()[1] // 1024}", file=sys.stderr)
    finally:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(status)


def refusal(result):
    """The one line of a refusal (status 2, no traceback) and the memory peak of ``in_a_child``'s result."""
    status, _, err, peak = result
    assert status == 2 and "Traceback" not in err, (status, err[-3000:])
    return [line for line in err.splitlines() if ": error: " in line][-1], peak


@pytest.mark.parametrize("script", SCRIPTS)
def test_dev_zero_and_an_endless_pipe_are_refused_at_once_in_bounded_memory_leaving_nothing(script, tmp_path):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    line, _ = refusal(in_a_child(script, arguments(script, "/dev/zero", out), tmp))
    assert line == (f"{script}.py: error: /dev/zero looks like a binary file (it holds NUL bytes), not one sentence "
                    "a line"), line
    assert not os.listdir(tmp) and not out.exists()
    # `yes |`: short lines without end, refused at the copy's limit (lowered from 8G to 64M here), the
    # memory held a few blocks of 1 MiB whatever is copied
    began = time.monotonic()
    endless = subprocess.Popen(["yes", "a man sleeps ."], stdout=subprocess.PIPE)
    try:
        line, peak_kb = refusal(in_a_child(script, arguments(script, "-", out), tmp, stdin=endless.stdout.fileno(),
                                           FAIRSEQ_WAE_STREAM_COPY_LIMIT="64M"))
    finally:
        endless.kill()
        endless.wait()
    assert line == (f"{script}.py: error: standard input (-): a stream (a pipe, a FIFO, standard input) that is read "
                    f"twice is copied into $TMPDIR ({tmp}) first, and this one passed the copy's limit of 67,108,864 "
                    "bytes. Give a file instead, or raise the limit: FAIRSEQ_WAE_STREAM_COPY_LIMIT=20G (with that much "
                    "room in $TMPDIR)"), line
    assert time.monotonic() - began < 60
    assert peak_kb < 8 * 1024, peak_kb
    assert not os.listdir(tmp) and not out.exists()
    # one line without an end: refused at 1 MiB
    endless = subprocess.Popen("yes | tr -d '\\n'", shell=True, stdout=subprocess.PIPE)
    try:
        line, _ = refusal(in_a_child(script, arguments(script, "-", out), tmp, stdin=endless.stdout.fileno()))
    finally:
        endless.kill()
        endless.wait()
    assert line == (f"{script}.py: error: standard input (-), line 1: longer than 1,048,576 bytes; no sentence is "
                    "that long (is it one sentence a line, with line ends?)"), line
    assert not os.listdir(tmp) and not out.exists()


def test_a_fifo_and_standard_input_are_read_like_the_file_they_carry(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(toy_sentences(300)) + "\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def outputs(script, suffix, sources):
        """The outputs from ``sources`` (the file first)."""
        found = []
        for source in sources:
            out = tmp_path / f"{script}-{len(found)}{suffix}"
            writer = subprocess.Popen(["cp", str(text), str(fifo)]) if source == fifo else None
            with open(text) as stdin:
                status, printed, err, _ = in_a_child(script, arguments(script, source, out), tmp, stdin=stdin.fileno())
            if writer:
                writer.wait()
            assert status == 0, err[-3000:]
            found.append((printed, out))
        return found

    for printed, out in outputs("train_word2vec", ".txt", (text, "-")):
        assert " words x 8 dims from 300 sentences -> " in printed, printed
        assert out.read_bytes() == (tmp_path / "train_word2vec-0.txt").read_bytes()
    if HAS_KENLM:
        for _, out in outputs("train_lm", ".bin", (text, fifo)):
            arpa = out.with_suffix(".arpa").read_text()
            assert arpa == (tmp_path / "train_lm-0.arpa").read_text() and "\\3-grams:" in arpa
    # the preparation's FIFO and standard input: test_careless_user.py, in processes of their own; each reader's
    # other kind of stream goes through the same lines.rereadable_path


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_streamed_preparation_interrupted_leaves_no_copy_and_no_staging_folder(number, tmp_path):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    reading, writing = os.pipe()
    os.write(writing, ("\n".join(toy_sentences(50)) + "\n").encode())  # and the pipe stays open: still copying
    child = {}
    pid_file = tmp_path / "pid"

    def interrupt_when_copying():
        deadline = time.monotonic() + 120
        while not os.listdir(tmp) and time.monotonic() < deadline:
            time.sleep(0.05)
        child["copy"] = os.listdir(tmp)
        time.sleep(0.3)  # inside its copy loop, waiting for more
        os.kill(int(pid_file.read_text()), number)

    import threading

    interrupter = threading.Thread(target=interrupt_when_copying)
    interrupter.start()
    try:
        status, _, err, _ = in_a_child("prepare_corpus", ["--input", "-", "--out", out], tmp, stdin=reading,
                                       pid_file=pid_file)
    finally:
        interrupter.join()
        os.close(writing)
        os.close(reading)
    assert child["copy"] and child["copy"][0].startswith("fairseq-wae-input-"), child
    # SIGTERM ends a command of the plugin's as SystemExit(143); SIGINT as KeyboardInterrupt, its traceback shown
    assert status == (143 if number == signal.SIGTERM else 1), (status, err[-2000:])
    assert number == signal.SIGTERM or err.rstrip().splitlines()[-2] == "KeyboardInterrupt", err[-2000:]
    assert not os.listdir(tmp), os.listdir(tmp)
    assert not out.exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A function making a folder a tmpfs of the given size, unmounted at the end (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(folder, size):
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_full_tmpdir_or_out_during_a_preparation_is_one_line_leaving_the_earlier_corpus(tmp_path, small_tmpfs):
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("\n".join(toy_sentences(100)) + "\n")
    large.write_text("\n".join(toy_sentences(4000, seed=2)) + "\n")  # about 170 KB
    out = small_tmpfs(tmp_path / "disk", "200k") / "out"
    assert in_a_child("prepare_corpus", arguments("prepare_corpus", small, out), tmp_path)[0] == 0
    before = snapshot(out)

    # $TMPDIR full while the stream is copied: the partial copy removed, --out as it was
    tmp = small_tmpfs(tmp_path / "tmp", "64k")
    with open(large) as stdin:
        line, _ = refusal(in_a_child("prepare_corpus", [*arguments("prepare_corpus", "-", out), "--force"], tmp,
                                     stdin=stdin.fileno()))
    assert line.startswith(f"prepare_corpus.py: error: standard input (-): copying the stream into $TMPDIR ({tmp}) "
                           "failed after ") and line.endswith(" bytes: No space left on device. Free space there, or "
                                                              "set TMPDIR to a folder with room, or give a file instead")
    assert not os.listdir(tmp) and snapshot(out) == before

    # --out full while the corpus is written: the corpus there before intact, nothing half-written beside it
    line, _ = refusal(in_a_child("prepare_corpus", [*arguments("prepare_corpus", large, out), "--force"], tmp_path))
    assert line.startswith(f"prepare_corpus.py: error: writing the corpus into --out {out} failed: No space left on "
                           "device"), line
    assert snapshot(out) == before
