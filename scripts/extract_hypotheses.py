#!/usr/bin/env python
"""fairseq-generate output to plain text: one hypothesis a line, in the original sentence order.

    fairseq-generate ... > gen.out && python scripts/extract_hypotheses.py gen.out > hypotheses.txt
    python scripts/extract_hypotheses.py gen.out --kind T > references.txt

--kind H: tokenised hypotheses (default); D: detokenised; T: references; S: sources. With several
hypotheses per sentence (--nbest), the first (best) is taken.
"""
import argparse
import re
import sys

from fairseq_wae.errors import Refusal, command
from fairseq_wae.lines import text_file_lines

#: fairseq-generate's closing summary: "Translated 1,000 sentences (12,345 tokens) in ..."
TRANSLATED = re.compile(r"Translated ([\d,]+) sentences")


def extract(lines, kind="H"):
    """{sentence id: text} for lines ``KIND-id<TAB>[score<TAB>]text``, the first one per id."""
    found = {}
    prefix = kind + "-"
    for line in lines:
        if not line.startswith(prefix):
            continue
        head, _, rest = line.rstrip("\n").partition("\t")
        index = head[len(prefix):]
        if not index.isdigit():
            continue
        text = rest.split("\t", 1)[1] if kind in "HDP" and "\t" in rest else rest
        found.setdefault(int(index), text)
    return found


def read(path: str):
    """The lines of fairseq-generate's output (a file, or '-' for standard input), each read in bounded
    memory; a binary file or one that is not UTF-8 is refused naming the line."""
    return list(text_file_lines(path))


def complete(found, lines, kind: str, where: str):
    """The texts of ``found`` in sentence order, once every sentence the output names (in any S-, T-,
    H-, D- or P- line, and its "Translated N sentences" summary) has its ``kind`` line: an interrupted
    fairseq-generate leaves sources without hypotheses, which must not shorten the output unnoticed."""
    named = set(found)
    for line in lines:
        head = line.split("\t", 1)[0]
        if len(head) > 2 and head[0] in "STHDP" and head[1] == "-" and head[2:].isdigit():
            named.add(int(head[2:]))
        summary = TRANSLATED.search(line)
        if summary:
            named.update(range(int(summary.group(1).replace(",", ""))))
    missing = sorted(set(range(max(named) + 1)) - set(found)) if named else []
    if missing:
        raise Refusal(f"{where}: {len(missing)} sentence id{'s' if len(missing) > 1 else ''} of {max(named) + 1} "
                      f"{'have' if len(missing) > 1 else 'has'} no {kind}- line (first: {missing[:10]}): was "
                      "fairseq-generate interrupted? Run it again to the end")
    return [found[i] for i in range(len(found))]


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generate_output", help="what fairseq-generate printed ('-' for standard input)")
    parser.add_argument("--kind", default="H", choices=["H", "D", "T", "S"])
    args = parser.parse_args(argv)
    where = "standard input" if args.generate_output == "-" else args.generate_output
    lines = read(args.generate_output)
    found = extract(lines, args.kind)
    if not found:
        raise Refusal(f"no {args.kind}- lines in {where}: is it what fairseq-generate printed?")
    sys.stdout.write("".join(text + "\n" for text in complete(found, lines, args.kind, where)))


if __name__ == "__main__":
    main()
