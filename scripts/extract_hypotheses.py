#!/usr/bin/env python
"""fairseq-generate output to plain text: one hypothesis a line, in the original sentence order.

    fairseq-generate ... > gen.out && python scripts/extract_hypotheses.py gen.out > hypotheses.txt
    python scripts/extract_hypotheses.py gen.out --kind T > references.txt

--kind H: tokenised hypotheses (default); D: detokenised; T: references; S: sources. With several
hypotheses per sentence (--nbest), the first (best) is taken.
"""
import argparse
import sys


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generate_output", help="what fairseq-generate printed ('-' for standard input)")
    parser.add_argument("--kind", default="H", choices=["H", "D", "T", "S"])
    args = parser.parse_args(argv)
    if args.generate_output == "-":
        lines = sys.stdin.readlines()
    else:
        try:
            with open(args.generate_output, encoding="utf-8") as f:
                lines = f.readlines()
        except OSError as e:
            sys.exit(f"extract_hypotheses.py: {e}")
    found = extract(lines, args.kind)
    if not found:
        sys.exit(f"extract_hypotheses.py: no {args.kind}- lines in {args.generate_output}")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        sys.exit(f"extract_hypotheses.py: {len(missing)} sentence ids have no {args.kind}- line "
                 f"(first: {missing[:5]}); was the output cut short?")
    sys.stdout.write("".join(found[i] + "\n" for i in range(len(found))))


if __name__ == "__main__":
    main()
