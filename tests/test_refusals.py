"""The plugin's refusals through the real commands: one line naming the flag, file or line, exit status 2,
the traceback only when asked (FAIRSEQ_WAE_TRACEBACK=1), and every bad value refused at start-up."""
import os
import subprocess
import sys

import pytest

from helpers import CLI_ENV, USER_DIR, run, train_command


def refused(cmd, **kwargs):
    """(the one-line error, the whole output) of a command that must refuse with status 2."""
    result = run(cmd, check=False, **kwargs)
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert ": error: " in line, result.stderr[-3000:]
    return line


@pytest.mark.parametrize("flag, value, named", [
    ("--mmd-lambda", "inf", "--mmd-lambda (criterion.mmd_lambda in hydra) must be a finite number, got inf"),
    ("--clip-norm", "nan", "--clip-norm (optimization.clip_norm in hydra) must be a finite number, got nan"),
    ("--weight-decay", "-inf", "--weight-decay (optimizer.weight_decay in hydra) must be a finite number, got -inf"),
    ("--imq-scales", "1,nan", "--imq-scales and --imq-c-base-per-dim must be finite and positive"),
    ("--kl-variance-penalty", "inf", "must be a finite number, got inf"),
])
def test_a_non_finite_number_is_refused_at_start_up_naming_its_flag(toy_data, tmp_path, flag, value, named):
    line = refused(train_command(toy_data, tmp_path / "ckpt", f"{flag}={value}"))
    assert line.startswith("fairseq-train: error: ") and named in line, line
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_a_refusal_is_one_line_with_status_2_and_its_traceback_only_when_asked(toy_data, tmp_path):
    """Through a real process: the plugin's sys.excepthook, installed by --user-dir, formats it."""
    cmd = train_command(toy_data, tmp_path / "ckpt", "--mmd-lambda", "inf")
    cmd = ["fairseq-train", *map(str, cmd[1:])]
    plain = subprocess.run(cmd, env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2, plain.stderr[-3000:]
    assert plain.stderr.strip().splitlines()[-1] == (
        "fairseq-train: error: --mmd-lambda (criterion.mmd_lambda in hydra) must be a finite number, got inf")
    assert "Traceback" not in plain.stderr
    asked = subprocess.run(cmd, env={**CLI_ENV, "FAIRSEQ_WAE_TRACEBACK": "1"}, capture_output=True, text=True,
                           timeout=300)
    assert asked.returncode == 2 and "Traceback (most recent call last)" in asked.stderr
    assert asked.stderr.strip().splitlines()[-1].startswith("fairseq_wae.errors.Refusal: --mmd-lambda")


def test_an_unexpected_error_keeps_its_traceback_and_status_1():
    """Only refusals are shortened: a defect shows where it is."""
    code = "import fairseq_wae; raise KeyError('a defect')"
    result = subprocess.run([sys.executable, "-c", code], env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" in result.stderr and "KeyError: 'a defect'" in result.stderr


def test_resuming_with_another_criterion_is_refused_naming_both(toy_data, tmp_path):
    save_dir = tmp_path / "ckpt"
    run(train_command(toy_data, save_dir, "--max-update", "2", arch="lstm_wae_tiny", criterion="aae"))
    line = refused(train_command(toy_data, save_dir, "--max-update", "4"))
    assert "was trained with --criterion aae, but this run trains with --criterion wae_mmd" in line, line
    assert "--reset-optimizer" in line
    # what the message offers works: only the weights are kept
    run(train_command(toy_data, save_dir, "--max-update", "4", "--reset-optimizer"))


def test_the_plugins_console_scripts_refuse_the_same_way(tmp_path):
    missing = tmp_path / "no-such-file.txt"
    line = refused([sys.executable, os.path.join(os.path.dirname(USER_DIR), "scripts", "prepare_corpus.py"),
                    "--input", missing, "--out", tmp_path / "out"])
    assert line == f"prepare_corpus.py: error: no such file: {missing}", line
