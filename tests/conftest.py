import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_wae")
# keep every CLI run on the CPU and quiet about warnings we cannot fix
CLI_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}


def run(cmd, cwd=None, check=True, timeout=600):
    """Runs a command (a list), returning the CompletedProcess; on failure shows its output."""
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=CLI_ENV, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def toy_sentences(n, seed=1):
    out = run([sys.executable, REPO / "scripts" / "make_toy_corpus.py", "--num-sentences", n, "--seed", seed])
    return out.stdout.splitlines()


def preprocess(folder: Path, splits: dict) -> Path:
    """Writes ``splits`` ({name: sentences}) as text and binarizes them with fairseq-preprocess."""
    folder.mkdir(parents=True, exist_ok=True)
    args = ["fairseq-preprocess", "--only-source", "--destdir", folder / "bin", "--workers", "1"]
    for name, sentences in splits.items():
        (folder / f"{name}.txt").write_text("\n".join(sentences) + "\n")
        args += [f"--{'train' if name == 'train' else name}pref", folder / f"{name}.txt"]
    run(args)
    return folder / "bin"


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """1200 training, 100 validation and 101 test sentences from the toy grammar, binarized.

    101 is on purpose: fairseq drops a last batch that is not a multiple of 8 unless the task prevents it."""
    sentences = toy_sentences(1401)
    return preprocess(tmp_path_factory.mktemp("toy"),
                      {"train": sentences[:1200], "valid": sentences[1200:1300], "test": sentences[1300:]})


@pytest.fixture(scope="session")
def overfit_dae(tmp_path_factory):
    """A tiny DAE trained on 50 sentences until it reconstructs them: (data, checkpoint dir, log)."""
    folder = tmp_path_factory.mktemp("overfit")
    sentences = toy_sentences(50, seed=7)
    data = preprocess(folder, {"train": sentences, "valid": sentences, "test": sentences})
    log = train(data, folder / "ckpt", "--lr", "0.01", arch="lstm_ae_tiny", criterion="ae_cross_entropy",
                epochs=300, batch_size=10)
    return data, folder / "ckpt", log


def train_command(data, save_dir, *extra, arch="lstm_wae_tiny", criterion="wae_mmd", epochs=3, batch_size=32):
    """The fairseq-train command line the tests train with (json log)."""
    return [
        "fairseq-train", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch,
        "--criterion", criterion, "--optimizer", "adam", "--lr", "0.005", "--clip-norm", "5",
        "--batch-size", batch_size, "--max-epoch", epochs, "--cpu", "--seed", "1", "--save-dir", save_dir,
        "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "10", *extra,
    ]


def train(data, save_dir, *extra, **options):
    """fairseq-train through the real CLI; returns the parsed json log records."""
    result = run(train_command(data, save_dir, *extra, **options))
    return parse_json_log(result.stdout + result.stderr)


def parse_json_log(text):
    import json

    records = []
    for line in text.splitlines():
        start = line.find("{")
        if start >= 0 and ('"epoch"' in line):
            try:
                records.append(json.loads(line[start:]))
            except ValueError:
                pass
    return records
