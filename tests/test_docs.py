"""The Markdown files render as written: every code fence closes, and none swallows a heading."""
import re
import subprocess

import pytest

from helpers import REPO

MARKDOWN = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True).stdout.split()
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def fences(text):
    """(line number, opening?, info string) of each fence line, pairing them as CommonMark does."""
    found, open_marker = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if not match:
            continue
        if open_marker is None:
            open_marker = match.group(1)
            found.append((number, True, line.strip()[3:]))
        elif match.group(1) == open_marker and not line.strip()[3:]:
            open_marker = None
            found.append((number, False, ""))
    return found, open_marker


def test_the_fence_parser_sees_an_early_close():
    text = "```bash\nls\n```\n# comment\nmore\n```\n## Heading\n"
    found, still_open = fences(text)
    assert still_open == "```" and [f[1] for f in found] == [True, False, True]


@pytest.mark.parametrize("path", MARKDOWN)
def test_every_code_fence_closes_and_no_shell_comment_renders_as_a_heading(path):
    text = (REPO / path).read_text(encoding="utf-8")
    found, still_open = fences(text)
    assert still_open is None, f"{path}: the fence opened on line {found[-1][0]} never closes"
    inside = set()
    for (start, opening, _), (end, closing, _) in zip(found[::2], found[1::2]):
        assert opening and not closing
        inside.update(range(start, end + 1))
    for number, line in enumerate(text.splitlines(), start=1):
        if number not in inside and re.match(r"^#+ ", line):
            command_like = re.match(r"^# [a-z].*(\.py|\.sh|fairseq-|--)", line)
            assert not command_like, f"{path}:{number}: a shell comment outside a code block: {line!r}"
        if number in inside and re.match(r"^#{2,} [A-Z]", line):
            raise AssertionError(f"{path}:{number}: a heading inside a code block: {line!r}")
