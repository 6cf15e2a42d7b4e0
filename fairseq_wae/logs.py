"""fairseq's ``--log-format json`` output, read back."""
import json
from typing import Dict, Iterable, List, Optional


def json_log_records(lines: Iterable[str], kind: Optional[str] = None) -> List[Dict]:
    """The JSON records of the train_inner, train and valid lines, in order; ``kind`` keeps one kind."""
    records = []
    for line in lines:
        start = line.find("{")
        if start < 0 or '"epoch"' not in line or (kind is not None and f"| {kind} |" not in line):
            continue
        try:
            records.append(json.loads(line[start:]))
        except ValueError:
            pass
    return records
