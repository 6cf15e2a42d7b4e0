"""Lines of text read in bounded memory: the one way the plugin's tools read a file line by line.

A line longer than ``MAX_LINE_BYTES`` is refused while it is read, naming the file and line: no
sentence is that long, and holding one (a file with no line ends, a binary file) would take memory
without bound. The interface takes sentences up to the same length.
"""
from typing import BinaryIO, Iterator, Optional

from fairseq_wae.errors import Refusal

#: The longest line (in bytes, without its end) and sentence (in UTF-8 bytes) the tools take: 1 MiB.
MAX_LINE_BYTES = 1 << 20


class LineTooLong(Refusal):
    pass


def too_long(where: str, number: int, cap: int = MAX_LINE_BYTES) -> LineTooLong:
    return LineTooLong(f"{where}, line {number}: longer than {cap:,} bytes; no sentence is that long (is it one "
                       "sentence a line, with line ends?)")


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


def text_file_lines(path: str, cap: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a UTF-8 text file as strings, each read in bounded memory; a line that is not UTF-8
    is refused naming the file and line."""
    with open(path, "rb") as f:
        for number, line in enumerate(text_lines(f, path, cap=cap), start=1):
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise Refusal(f"{path}, line {number}: not valid UTF-8 (is it a text file?)") from None
