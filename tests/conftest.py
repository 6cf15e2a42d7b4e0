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
    """1200 training, 100 validation and 100 test sentences from the toy grammar, binarized."""
    sentences = toy_sentences(1400)
    return preprocess(tmp_path_factory.mktemp("toy"),
                      {"train": sentences[:1200], "valid": sentences[1200:1300], "test": sentences[1300:]})


def train(data, save_dir, *extra, arch="lstm_wae_tiny", criterion="wae_mmd", epochs=3, batch_size=32):
    """fairseq-train through the real CLI with a json log; returns the parsed log records."""
    result = run([
        "fairseq-train", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch,
        "--criterion", criterion, "--optimizer", "adam", "--lr", "0.005", "--clip-norm", "5",
        "--batch-size", batch_size, "--max-epoch", epochs, "--cpu", "--seed", "1", "--save-dir", save_dir,
        "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "10", *extra,
    ])
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
