"""examples/snli/report.py: Table 1 from evaluation JSON, fairseq json logs and prepare's manifest."""
import json
import sys

from helpers import REPO, run

REPORT = [sys.executable, REPO / "examples" / "snli" / "report.py"]


def test_table1_rows_side_by_side_with_the_paper_and_its_provenance(tmp_path):
    work, data = tmp_path / "work", tmp_path / "data"
    (work / "eval").mkdir(parents=True)
    (work / "logs").mkdir()
    data.mkdir()
    measured = {"bleu": 41.237, "nll_bits_per_word": 10.5, "unigram_kl": 0.0871, "entropy": 5.123, "avg_len": 9.96}
    (work / "eval" / "wae3.json").write_text(json.dumps({"name": "wae3", "metrics": measured,
                                                         "meta": {"sentences": 1234}}))
    (work / "eval" / "wae3.samples.log").write_text("INFO:fairseq_cli.generate:{'generation': {'beam': 1, "
                                                    "'max_len_a': 0.0, 'max_len_b': 17, 'min_len': 1}}\n")
    (work / "eval" / "corpus.json").write_text(json.dumps(
        {"name": "corpus", "metrics": {"nll_bits_per_word": 9.4, "entropy": 5.4, "avg_len": 10.1}}))
    valid = {"epoch": 25, "valid_loss": "2.1", "valid_num_updates": "10450"}
    (work / "logs" / "wae3.log").write_text(
        "2026-11-25 20:00:00 | INFO | valid | " + json.dumps({**valid, "epoch": 24, "valid_num_updates": "10032"})
        + "\n2026-11-25 20:01:00 | INFO | valid | " + json.dumps(valid) + "\n")
    (data / "manifest.json").write_text(json.dumps({
        "unique_sentences": 3000, "counts": {"train": 2700, "valid": 150, "test": 150},
        "inputs": [{"path": "/somewhere/snli.txt.gz"}], "options": {"split": "0.9,0.05,0.05"},
        "vocabulary_size": 812}))
    out = tmp_path / "table1.md"
    run([*REPORT, "table1", "--work", work, "--data", data, "--out", out])
    text = out.read_text()
    assert "| WAE lambda=3 | 41.24 | 10.50 | 0.087 | 5.12 | 10.0 | 72.72 | 12.04 | 0.078 | 5.52 | 10.0 |" in text
    assert "| Corpus | - | 9.40 | - | 5.40 | 10.1 | - | 9.92 | - | 5.65 | 9.7 |" in text
    assert "split 2,700 / 150 / 150" in text and "snli.txt.gz" in text and "Not the paper's 100k" in text
    assert "wae3 25 epochs / 10,450 updates" in text
    assert "1,234 greedy decodings of prior samples, at most 17 words" in text
    assert "| DAE |" not in text  # no evaluation, no row
