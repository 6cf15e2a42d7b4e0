"""Reading a corpus's inputs: plain text (gzip or zip compressed, any line ending, a pipe or a fifo),
UTF-8 decoding and what reading skipped (``ReadReport``)."""
import gzip
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List

from fairseq_wae.errors import MissingFile, Refusal
from fairseq_wae.lines import (
    GZIP_MAGIC, HEAD_BYTES, ZIP_MAGIC, binary_input, display_name, rereadable_path, text_lines,
)
from fairseq_wae.tokenizer import without_invisible_characters


class CorpusError(Refusal):
    """Bad input: the message names the file, line or option."""


@dataclass
class ReadReport:
    """What reading skipped, by reason: how many lines, and the first ten line numbers (a count, not a
    list of every line, whatever the file's size)."""

    path: str
    kept: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    first_lines: Dict[str, List[int]] = field(default_factory=dict)

    def skip(self, reason: str, line_number: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        lines = self.first_lines.setdefault(reason, [])
        if len(lines) < 10:
            lines.append(line_number)

    def as_json(self) -> Dict:
        return {"path": os.path.basename(self.path), "kept": self.kept,
                "skipped": {reason: {"count": count, "first_lines": self.first_lines[reason]}
                            for reason, count in self.skipped.items()}}

    def summary(self) -> str:
        parts = [f"{count} {reason} (lines {', '.join(map(str, self.first_lines[reason][:5]))}"
                 f"{', ...' if count > 5 else ''})" for reason, count in self.skipped.items()]
        return f"{self.path}: kept {self.kept}" + (f", skipped {'; '.join(parts)}" if parts else "")


def _open_binary(path: str):
    """Opens a text input (a file, a stream or ``-``: ``lines.rereadable_path``) for reading bytes: gzip
    by its magic bytes (whatever its name), refusing folders, empty inputs, other archives and binary
    files (a NUL byte in the first 8 KiB)."""
    try:
        source = rereadable_path(path)
    except MissingFile as e:
        raise CorpusError(str(e)) from None
    if os.path.getsize(source) == 0:
        raise CorpusError(f"{display_name(path)} is empty")
    with open(source, "rb") as f:
        magic = f.read(4)
    if magic.startswith(ZIP_MAGIC):
        raise CorpusError(f"{path} is a zip archive, not a text file (only the official SNLI zip is read as one)")
    f = gzip.open(source, "rb") if magic.startswith(GZIP_MAGIC) else open(source, "rb")
    try:
        head = f.peek(HEAD_BYTES)[:HEAD_BYTES] if hasattr(f, "peek") else b""
    except (OSError, EOFError, zlib.error) as e:
        f.close()
        raise CorpusError(f"{path} is cut short or damaged: it starts as gzip but does not inflate ({e}). Copy or "
                          "download it again (gzip -t checks a .gz file)")
    if b"\x00" in head:
        f.close()
        raise binary_input(display_name(path))
    return f


def _lines_of(f, path: str) -> Iterator[bytes]:
    """``text_lines`` of an opened input, a damaged one refused naming ``path``: gzip cut short (an
    interrupted download or copy) or corrupt, a zip member that does not inflate, a read error."""
    number = 0
    try:
        for number, line in enumerate(text_lines(f, path), start=1):
            yield line
    except (EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile) as e:
        raise CorpusError(f"{path} is cut short or damaged: its compressed data breaks off after line {number} "
                          f"({e}). Copy or download it again (gzip -t checks a .gz file)")
    except OSError as e:
        raise CorpusError(f"{path}: reading failed after line {number} ({e.strerror or e})")


def _decoded_lines(f, path: str, report: ReadReport, strict: bool):
    """(line number, text) of the non-empty UTF-8 lines of the opened input ``f``; bad ones are skipped
    and counted, or fatal. A line of invisible characters alone (a zero-width space, a byte-order mark)
    is an empty line."""
    for number, raw in enumerate(_lines_of(f, path), start=1):
        try:
            text = without_invisible_characters(raw.decode("utf-8")).strip()
        except UnicodeDecodeError:
            if strict:
                raise CorpusError(f"{report.path}, line {number}: not valid UTF-8")
            report.skip("non-UTF-8", number)
            continue
        if not text:
            if strict:
                raise CorpusError(f"{report.path}, line {number}: empty line")
            report.skip("empty", number)
            continue
        yield number, text


def plain_sentences(path: str, strict: bool, reports: List[ReadReport]) -> Iterator[str]:
    """The sentences of a one-sentence-a-line file (``.gz`` allowed), read as they are iterated; what
    reading skips goes into a report appended to ``reports``. The file is checked at once (it exists,
    holds text, is not JSON lines: that is not plain text), so a wrong input is refused before anything
    is read in full."""
    with _open_binary(path) as f:
        first = next((text for _, text in _decoded_lines(f, path, ReadReport(path), strict=False)), "")
    if first.startswith("{") and _is_json(first):
        raise CorpusError(f"{path} looks like JSON lines, not one sentence a line "
                          "(for SNLI jsonl use scripts/prepare_snli.py --snli-path)")
    report = ReadReport(path)
    reports.append(report)
    return _plain_sentences(path, strict, report)


def _plain_sentences(path: str, strict: bool, report: ReadReport) -> Iterator[str]:
    with _open_binary(path) as f:
        for _, text in _decoded_lines(f, path, report, strict):
            report.kept += 1
            yield text
    if not report.kept:
        raise CorpusError(f"{path} holds no sentence: {report.summary()}")


def read_plain_sentences(path: str, strict: bool = False) -> (List[str], ReadReport):
    """``plain_sentences`` as a list (for files that fit in memory), with its report."""
    reports = []
    sentences = list(plain_sentences(path, strict, reports))
    return sentences, reports[0]


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
