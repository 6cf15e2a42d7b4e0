"""What the tests share: running the real CLI, the toy corpus, fairseq-train command lines, json logs, and
the criterions built in process by fairseq's own option parsing. Fixtures live in conftest.py."""
import os
import subprocess
import sys
from pathlib import Path

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
    from fairseq_wae.logs import json_log_records

    return json_log_records(text.splitlines())


def build(data, arch, criterion, *flags):
    """(task, model, criterion) as fairseq-train would build them from these flags."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch,
        "--criterion", criterion, "--cpu", "--batch-size", "16", *flags,
    ])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model), task.build_criterion(cfg.criterion)


def first_batch(task, size=16):
    task.load_dataset("train")
    dataset = task.dataset("train")
    return dataset.collater([dataset[i] for i in range(size)])
