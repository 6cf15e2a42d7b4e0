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


def test_transformer_rows_next_to_the_committed_lstm_rows_keep_the_written_reading(tmp_path):
    work, data = tmp_path / "work", tmp_path / "data"
    for folder in (work / "eval", work / "logs", data):
        folder.mkdir(parents=True)
    (data / "test.txt").write_text("a man sleeps .\n")
    measured = {"bleu": 1.3, "nll_bits_per_word": 7.71, "unigram_kl": 2.065, "entropy": 1.77, "avg_len": 7.0}
    (work / "eval" / "tvae.json").write_text(json.dumps({"name": "tvae", "metrics": measured}))
    (work / "eval" / "tvae.latent.json").write_text(json.dumps({"kl": 0.0045, "mutual_information": -0.4,
                                                                "active_units": 0}))
    (work / "eval" / "tvae.samples.txt").write_text("".join(f"sample {i}\n" for i in range(8)))
    # epoch 2 logged twice (a run killed after logging it, then resumed): counted once
    epochs = [(1, 300, 418), (2, 290, 836), (2, 290, 836), (3, 310, 1254)]
    (work / "logs" / "tvae.log").write_text("".join(
        "2026-11-26 16:00:00 | INFO | train | " + json.dumps({"epoch": e, "train_train_wall": str(w),
                                                              "train_num_updates": str(u), "train_wall": "20"}) + "\n"
        for e, w, u in epochs))
    # the LSTM rows come from a results folder (by default the committed one): here, one made for the test
    lstm = tmp_path / "lstm"
    (lstm / "eval").mkdir(parents=True)
    (lstm / "logs").mkdir()
    (lstm / "eval" / "vae.json").write_text(json.dumps({"name": "vae", "metrics": {
        "bleu": 8.336, "nll_bits_per_word": 8.064, "unigram_kl": 0.5631, "entropy": 3.834, "avg_len": 9.94}}))
    (lstm / "eval" / "vae.latent.json").write_text(json.dumps({"kl": 6.153, "mutual_information": 4.436,
                                                               "active_units": 11}))
    (lstm / "logs" / "vae.jsonl").write_text("".join(
        "train " + json.dumps({"epoch": e, "train_train_wall": "60", "train_num_updates": str(418 * e)}) + "\n"
        for e in (1, 2)))
    out = tmp_path / "transformer.md"
    out.write_text("# old\n\n## Reading\n\nWhat the numbers say.\n")
    run([*REPORT, "transformer", "--work", work, "--data", data, "--out", out, "--lstm-results", lstm])
    text = out.read_text()
    assert ("| Transformer VAE (annealed) | 1.30 | 7.71 | 2.065 | 1.77 | 7.0 | 0.00 | -0.40 | 0 / 100 | "
            "3 epochs, 1,254 updates, 15 min |") in text
    assert ("| LSTM VAE (annealed) | 8.34 | 8.06 | 0.563 | 3.83 | 9.9 | 6.15 | 4.44 | 11 / 100 | "
            "2 epochs, 836 updates, 2 min |") in text
    assert "| LSTM DAE |" not in text and "| LSTM WAE" not in text  # not in that folder, no row
    assert "- sample 4\n" in text and "sample 5" not in text
    assert "# old" not in text and text.rstrip().endswith("## Reading\n\nWhat the numbers say.")
    assert "| Transformer DAE |" not in text  # no evaluation, no row


def test_compare_rows_and_a_trade_off_figure_with_one_point_per_evaluated_model(tmp_path):
    lstm, transformers = tmp_path / "compare", tmp_path / "results"
    for folder in (lstm / "eval", lstm / "logs", transformers / "eval"):
        folder.mkdir(parents=True)
    aae = {"bleu": 61.234, "nll_bits_per_word": 9.871, "unigram_kl": 0.1234, "entropy": 5.01, "avg_len": 10.44}
    (lstm / "eval" / "aae.json").write_text(json.dumps({"name": "aae", "metrics": aae}))
    (lstm / "eval" / "aae.latent.json").write_text(json.dumps({"kl": 40.123, "mutual_information": 6.5,
                                                               "active_units": 97}))
    (lstm / "logs" / "aae.jsonl").write_text("".join(
        "train " + json.dumps({"epoch": e, "train_train_wall": "90", "train_num_updates": str(418 * e)}) + "\n"
        for e in (1, 2, 3)))
    twae = {"bleu": 50.04, "nll_bits_per_word": 9.81, "unigram_kl": 0.232, "entropy": 5.17, "avg_len": 10.5}
    (transformers / "eval" / "twae.json").write_text(json.dumps({"name": "twae", "metrics": twae}))
    out = tmp_path / "text-autoencoders.md"
    out.write_text("# old\n\n## Reading\n\nThe AAE wins here.\n")
    printed = run([*REPORT, "compare", "--work", lstm, "--out", out, "--lstm-results", transformers]).stdout
    text = out.read_text()
    assert "| LSTM AAE (`aae`) | 61.23 | 9.87 | 0.123 | 5.01 | 10.4 | 40.12 | 6.50 | 97 | 3 epochs, 1,254 updates, 4 min |" in text
    assert "| Transformer WAE lambda=3 (`twae`) | 50.04 | 9.81 | 0.232 | 5.17 | 10.5 | - | - | - | - |" in text
    assert text.count("| LSTM ") == 1 and text.count("| Transformer ") == 1  # evaluated models only
    assert "no evaluation of dae in" in printed
    assert "# old" not in text and text.rstrip().endswith("## Reading\n\nThe AAE wins here.")
    figure = tmp_path / "text-autoencoders.png"
    assert "![BLEU against sample NLL](text-autoencoders.png)" in text
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
