"""Reading a data or model folder's ``dict.txt``: a file that is not a fairseq dictionary is refused
naming it (and what it links to), not with fairseq's echo of its first line."""
import os

from fairseq_wae.errors import MissingFile, Refusal
from fairseq_wae.lines import text_lines


def load_dictionary(path: str):
    """fairseq's ``Dictionary.load(path)``, its errors named."""
    from fairseq.data import Dictionary

    shown = path + (f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else "")
    if not os.path.isfile(path):
        raise MissingFile(f"no dictionary at {shown}: give the data folder fairseq-preprocess or fairseq-wae-prepare "
                          "wrote (or a fairseq-wae-export folder)")
    not_text = _why_not_text(path)
    if not_text:
        raise Refusal(f"{shown} is not a fairseq dictionary, one '<token> <count>' a line: {not_text} (is it a "
                      "binary or compressed file?); give the dict.txt that the data was binarized with")
    try:
        return Dictionary.load(path)
    except (ValueError, RuntimeError, UnicodeDecodeError, OSError) as e:
        reason = str(e) if len(str(e)) <= 160 else str(e)[:160] + "..."
        raise Refusal(f"{shown} is not a fairseq dictionary, one '<token> <count>' a line ({type(e).__name__}: "
                      f"{reason}): give the dict.txt that the data was binarized with") from None


def _why_not_text(path: str):
    """Why ``path`` is not UTF-8 text ("line 3 is not UTF-8"), or None: fairseq's own check says only
    "Incorrect encoding detected", in a traceback, and takes NUL bytes."""
    with open(path, "rb") as f:
        for number, line in enumerate(text_lines(f, path), start=1):
            if b"\x00" in line:
                return f"line {number} holds NUL bytes"
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f"line {number} is not UTF-8"
    return None
