"""The user's inputs, read in bounded memory: the one way the plugin's tools open and read a file.

Every input may be a file, a FIFO, a pipe (``/dev/stdin``), a device or ``-`` (standard input):
``open_input`` opens any of them, ``text_lines`` reads lines and ``rereadable_path`` gives a path that
can be read more than once. A line longer than ``MAX_LINE_BYTES`` is refused while it is read, naming
the file and line: no sentence is that long, and holding one (a file with no line ends, a binary file)
would take memory without bound. The interface takes sentences up to the same length.

A stream is read once; a tool that reads its input twice (to hash it, to sniff its format, an archive,
word2vec's epochs) reads a copy in ``$TMPDIR``, made by ``rereadable_path`` with the same bounds applied
as the stream is copied, refused past ``FAIRSEQ_WAE_STREAM_COPY_LIMIT`` bytes, and removed at exit, on
an error, and on SIGINT and SIGTERM (the plugin's commands unwind on SIGTERM: ``errors.command``).
"""
import atexit
import os
import re
import stat
import tempfile
from typing import BinaryIO, Dict, Iterator, Optional

from fairseq_wae.errors import MissingFile, Refusal

#: The longest line (in bytes, without its end) and sentence (in UTF-8 bytes) the tools take: 1 MiB.
MAX_LINE_BYTES = 1 << 20
STANDARD_INPUT = "-"
COPY_LIMIT_VARIABLE = "FAIRSEQ_WAE_STREAM_COPY_LIMIT"
DEFAULT_COPY_LIMIT = "8G"
COPY_PREFIX = "fairseq-wae-input-"
#: What a text input's first bytes must not hold (a NUL byte there: a binary file).
HEAD_BYTES = 8192
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class LineTooLong(Refusal):
    pass


def too_long(where: str, number: int, cap: int = MAX_LINE_BYTES) -> LineTooLong:
    return LineTooLong(f"{where}, line {number}: longer than {cap:,} bytes; no sentence is that long (is it one "
                       "sentence a line, with line ends?)")


def binary_input(where: str) -> Refusal:
    return Refusal(f"{where} looks like a binary file (it holds NUL bytes), not one sentence a line")


def display_name(path: str) -> str:
    return "standard input (-)" if path == STANDARD_INPUT else path


def open_input(path: str) -> BinaryIO:
    """``path`` opened for reading bytes, whatever it is: a file, a FIFO, a pipe, a device, or ``-``
    (standard input, which closing the returned reader leaves open). A missing path or a folder is
    refused, naming it."""
    if path == STANDARD_INPUT:
        return os.fdopen(os.dup(0), "rb")
    if os.path.isdir(path):
        raise Refusal(f"{path} is a folder, not a text file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise MissingFile(f"no such file: {path}") from None
    except OSError as e:
        raise Refusal(f"cannot read {path} ({e.strerror or e})") from None


def text_lines(f: BinaryIO, where: Optional[str] = None, block_size: int = 1 << 20,
               cap: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a binary stream without their ends; a line ends at \\n, \\r\\n or a lone \\r (old
    Mac files). Python's binary line iteration knows only \\n, which made a CR-only file one sentence.
    Read in blocks of ``block_size`` bytes; a \\r\\n split between two blocks is one line end. A line
    longer than ``cap`` bytes is refused as soon as that many are read, naming ``where`` (the file)."""
    pending, number = b"", 0
    for block in iter(lambda: f.read(block_size), b""):
        data = pending + block
        held = data.endswith(b"\r")  # may be the first half of a \r\n
        if held:
            data = data[:-1]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        pending = lines.pop() + (b"\r" if held else b"")
        for line in lines:
            number += 1
            if len(line) > cap:
                raise too_long(where or "the input", number, cap)
            yield line
        if len(pending) > cap + 1:
            raise too_long(where or "the input", number + 1, cap)
    if pending:
        lines = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for line in lines[:-1] if lines[-1] == b"" else lines:
            number += 1
            if len(line) > cap:
                raise too_long(where or "the input", number, cap)
            yield line


def text_file_lines(path: str, cap: int = MAX_LINE_BYTES, where: Optional[str] = None) -> Iterator[str]:
    """The lines of a UTF-8 text input (``open_input``: a file, a stream or ``-``) as strings, each read
    in bounded memory; a line that is not UTF-8 is refused naming the input (or ``where``) and line."""
    where = display_name(where or path)
    with open_input(path) as f:
        for number, line in enumerate(text_lines(f, where, cap=cap), start=1):
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise Refusal(f"{where}, line {number}: not valid UTF-8 (is it a text file?)") from None


# -- a second pass over a stream: its bounded copy ------------------------------------------------------

_COPIES: Dict[str, str] = {}


def _remove_copies() -> None:
    for copy in list(_COPIES.values()):
        if os.path.exists(copy):
            os.remove(copy)
    _COPIES.clear()


atexit.register(_remove_copies)


def copy_limit() -> int:
    """The most bytes ``rereadable_path`` copies: ``FAIRSEQ_WAE_STREAM_COPY_LIMIT`` (a number of bytes,
    or with K, M, G or T: powers of 1024), 8G unless set."""
    value = os.environ.get(COPY_LIMIT_VARIABLE, "") or DEFAULT_COPY_LIMIT
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", value, re.IGNORECASE)
    if match is None or int(match.group(1)) < 1:
        raise Refusal(f"{COPY_LIMIT_VARIABLE}={value!r}: give a positive number of bytes, e.g. 500M or 20G")
    return int(match.group(1)) << (10 * " KMGT".index(match.group(2).upper() or " "))


def _copy_failed(where: str, copied: int, error: OSError) -> Refusal:
    return Refusal(f"{where}: copying the stream into $TMPDIR ({tempfile.gettempdir()}) failed after {copied:,} "
                   f"bytes: {error.strerror or error}. Free space there, or set TMPDIR to a folder with room, or give "
                   "a file instead")


class _LineBounds:
    """``text_lines``'s refusal of a long line, applied to blocks of at most ``MAX_LINE_BYTES`` bytes as
    they are copied, with the same line numbers, without splitting them into lines: only a line that
    crosses a block's edge can be too long."""

    def __init__(self, where: str):
        self.where, self.ended, self.run, self.held = where, 0, 0, False

    def check(self, block: bytes) -> None:
        ends = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
        if not ends:
            self.run += len(block)
            if self.run > MAX_LINE_BYTES:
                raise too_long(self.where, self.ended + 1)
            return
        if self.run + min(ends) > MAX_LINE_BYTES:
            raise too_long(self.where, self.ended + 1)
        split = self.held and block.startswith(b"\n")  # the \n of a \r\n cut by the block's edge
        self.ended += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n") - split
        self.run = len(block) - 1 - max(block.rfind(b"\n"), block.rfind(b"\r"))
        self.held = block.endswith(b"\r")


def _copy(stream: BinaryIO, copy: BinaryIO, where: str, limit: int, text: bool) -> None:
    """Copies ``stream`` into ``copy``, refusing as the bytes pass a copy beyond ``limit``, a full
    $TMPDIR, and in a ``text`` input that is not gzip or zip, NUL bytes in its first 8 KiB or a line
    longer than ``MAX_LINE_BYTES``."""
    copied, lines = 0, _LineBounds(where)
    while True:
        try:
            block = stream.read(MAX_LINE_BYTES)  # a buffered read: this many bytes unless at the end
        except OSError as e:
            raise Refusal(f"{where}: reading failed after {copied:,} bytes ({e.strerror or e})") from None
        if not block:
            return
        if not copied:
            text = text and not block.startswith((GZIP_MAGIC, ZIP_MAGIC))  # read by their own readers
            if text and b"\x00" in block[:HEAD_BYTES]:
                raise binary_input(where)
        if copied + len(block) > limit:
            raise Refusal(f"{where}: a stream (a pipe, a FIFO, standard input) that is read twice is copied into "
                          f"$TMPDIR ({tempfile.gettempdir()}) first, and this one passed the copy's limit of "
                          f"{limit:,} bytes. Give a file instead, or raise the limit: {COPY_LIMIT_VARIABLE}=20G "
                          "(with that much room in $TMPDIR)")
        if text:
            lines.check(block)
        try:
            copy.write(block)
        except OSError as e:
            raise _copy_failed(where, copied, e) from None
        copied += len(block)


def rereadable_path(path: str, text: bool = True) -> str:
    """A path that reads the bytes of ``path`` as often as needed: ``path`` itself for a regular file;
    for a stream (``-``, a FIFO, a pipe, a device) a copy in $TMPDIR, made at the first call while the
    stream's bounds are applied (``_copy``), and removed at exit. A stream's size says nothing (0), and
    once read it is empty."""
    if path != STANDARD_INPUT:
        try:
            if stat.S_ISREG(os.stat(path).st_mode):
                return path
        except FileNotFoundError:
            raise MissingFile(f"no such file: {path}") from None
    if path in _COPIES:
        return _COPIES[path]
    limit, where = copy_limit(), display_name(path)
    with open_input(path) as stream:
        try:
            descriptor, copy = tempfile.mkstemp(prefix=COPY_PREFIX)
        except OSError as e:
            raise Refusal(f"{where}: cannot make its copy in $TMPDIR ({tempfile.gettempdir()}): {e.strerror or e}. "
                          "Set TMPDIR to a folder you can write to, or give a file instead") from None
        _COPIES[path] = copy  # from here on removed at exit, also when interrupted
        try:
            try:
                with os.fdopen(descriptor, "wb") as f:
                    _copy(stream, f, where, limit, text)
            except OSError as e:  # writing the copy's last bytes as it is closed
                raise _copy_failed(where, os.path.getsize(copy), e) from None
        except BaseException:
            del _COPIES[path]
            os.remove(copy)
            raise
    return copy
