"""Reading a data or model folder's ``dict.txt``: a file that is not a fairseq dictionary is refused
naming it (and what it links to), not with fairseq's echo of its first line."""
import os

from fairseq_wae.errors import MissingFile, Refusal


def load_dictionary(path: str):
    """fairseq's ``Dictionary.load(path)``, its errors named."""
    from fairseq.data import Dictionary

    shown = path + (f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else "")
    if not os.path.isfile(path):
        raise MissingFile(f"no dictionary at {shown}: give the data folder fairseq-preprocess or fairseq-wae-prepare "
                          "wrote (or a fairseq-wae-export folder)")
    try:
        return Dictionary.load(path)
    except (ValueError, RuntimeError, UnicodeDecodeError, OSError) as e:
        reason = str(e) if len(str(e)) <= 160 else str(e)[:160] + "..."
        raise Refusal(f"{shown} is not a fairseq dictionary, one '<token> <count>' a line ({type(e).__name__}: "
                      f"{reason}): give the dict.txt that the data was binarized with") from None
