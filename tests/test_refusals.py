"""The plugin's refusals through the real commands: one line naming the flag, file or line, exit status 2,
the traceback only when asked (FAIRSEQ_WAE_TRACEBACK=1), and every bad value refused at start-up."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from helpers import CLI_ENV, REPO, USER_DIR, built_once, run, train_command


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
    ("--imq-scales", "1,nan", "--imq-scales and --imq-c-base-per-dim must be finite and positive"),
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
    # asked for, the traceback comes too (a short command of the plugin's: the hook is the same in every one)
    missing = os.path.join(REPO, "no-such-output.txt")
    extract = [sys.executable, os.path.join(REPO, "scripts", "extract_hypotheses.py"), missing]
    asked = subprocess.run(extract, env={**CLI_ENV, "FAIRSEQ_WAE_TRACEBACK": "1"}, capture_output=True, text=True,
                           timeout=300)
    assert asked.returncode == 2 and "Traceback (most recent call last)" in asked.stderr
    assert asked.stderr.strip().splitlines()[-1] == f"fairseq_wae.errors.MissingFile: no such file: {missing}"


def test_a_program_of_the_users_keeps_pythons_own_display_of_a_refusal():
    """Importing the plugin changes nothing in a user's own program: the traceback points to its line."""
    code = "import fairseq_wae.errors as e\nraise e.Refusal('--flag: why')"
    result = subprocess.run([sys.executable, "-c", code], env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and 'File "<string>", line 2' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "fairseq_wae.errors.Refusal: --flag: why"


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
    line = refused([sys.executable, os.path.join(REPO, "scripts", "prepare_corpus.py"),
                    "--input", missing, "--out", tmp_path / "out"])
    assert line == f"prepare_corpus.py: error: no such file: {missing}", line


PREPARE = [sys.executable, os.path.join(REPO, "scripts", "prepare_corpus.py")]
EXPORT = [sys.executable, os.path.join(REPO, "scripts", "export_model.py")]
VERIFY = [sys.executable, os.path.join(REPO, "scripts", "verify.py")]


@pytest.fixture(scope="module")
def fairseq_lstm(tmp_path_factory, toy_data):
    """A checkpoint of fairseq's own lstm, trained one update on the translation task (toy -> toy)."""
    def build(folder):
        text = (toy_data.parent / "train.txt").read_text().splitlines()[:64]
        for lang in ("de", "en"):
            (folder / f"train.{lang}").write_text("\n".join(text) + "\n")
        run(["fairseq-preprocess", "--source-lang", "de", "--target-lang", "en", "--trainpref", folder / "train",
             "--destdir", folder / "bin", "--workers", "1"])
        size = ["--encoder-embed-dim", "8", "--decoder-embed-dim", "8", "--encoder-hidden-size", "8",
                "--decoder-hidden-size", "8", "--decoder-out-embed-dim", "8"]
        run(["fairseq-train", folder / "bin", "--arch", "lstm", *size, "--optimizer", "adam", "--lr", "0.001",
             "--max-update", "1", "--batch-size", "16", "--cpu", "--save-dir", folder / "ckpt",
             "--no-epoch-checkpoints", "--disable-validation", "--num-workers", "0"])
        return folder / "ckpt" / "checkpoint_last.pt"

    return built_once(tmp_path_factory, "fairseq-lstm", build)


def test_another_fairseq_models_checkpoint_is_named_as_not_a_fairseq_wae_model(fairseq_lstm, toy_data, tmp_path):
    """Read from the pickle's opcodes, unrun: fairseq's lstm keeps its config in an argparse Namespace,
    which weights-only loading refuses."""
    expected = f"{fairseq_lstm} is not a fairseq-wae model (fairseq's lstm, translation task)"
    for cmd in (["fairseq-generate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                 "--path", fairseq_lstm, "--cpu"],
                [*EXPORT, "--checkpoint", fairseq_lstm, "--data", toy_data, "--out", tmp_path / "export"]):
        assert expected in refused(cmd)
    assert not (tmp_path / "export").exists()
    # a foreign model whose config loads weights-only is named from it
    from fairseq_wae.checkpoint_utils import check_checkpoint
    from fairseq_wae.errors import CheckpointError

    path = tmp_path / "transformer.pt"
    torch.save({"model": {}, "cfg": {"model": {"_name": "transformer"}, "task": {"_name": "translation"}}}, path)
    with pytest.raises(CheckpointError, match=r"is not a fairseq-wae model \(fairseq's transformer, translation task\)"):
        check_checkpoint(str(path), {"sha256": "-"})


def test_a_cut_short_index_is_caught_by_its_size_naming_it(toy_data, tmp_path):
    """With a manifest (its recorded sizes) and without (the index's own header), before fairseq reads it."""
    sentences = (toy_data.parent / "train.txt").read_text().splitlines()[:200]
    (tmp_path / "s.txt").write_text("\n".join(sentences) + "\n")
    run([*PREPARE, "--input", tmp_path / "s.txt", "--out", tmp_path / "data"])
    index = tmp_path / "data" / "train.idx"
    whole = index.read_bytes()
    index.write_bytes(whole[:-100])
    line = refused(train_command(tmp_path / "data", tmp_path / "ckpt"))
    assert f"{index} is {len(whole) - 100:,} bytes but {tmp_path / 'data' / 'manifest.json'} records {len(whole):,}" in line
    (tmp_path / "data" / "manifest.json").unlink()
    line = refused(train_command(tmp_path / "data", tmp_path / "ckpt"))
    assert f"{index} is {len(whole) - 100:,} bytes but its header describes" in line and "cut short" in line
    result = run([*VERIFY, tmp_path / "data"], check=False)
    assert result.returncode == 2 and f"{index} is {len(whole) - 100:,} bytes" in result.stderr



def test_a_dictionary_that_is_not_one_is_named_with_its_link(toy_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in toy_data.iterdir():
        (data / path.name).symlink_to(path)
    (data / "dict.txt").unlink()
    (data / "dict.txt").symlink_to(toy_data.parent / "train.txt")
    line = refused(train_command(data, tmp_path / "ckpt"))
    assert f"{data / 'dict.txt'} (a link to {toy_data.parent / 'train.txt'}) is not a fairseq dictionary" in line


def test_preparation_and_export_refuse_what_sentencepiece_and_a_json_file_cannot_give(toy_data, tmp_path):
    sentences = (toy_data.parent / "train.txt").read_text().splitlines()[:100]
    (tmp_path / "s.txt").write_text("\n".join(sentences) + "\n")
    line = refused([*PREPARE, "--input", tmp_path / "s.txt", "--out", tmp_path / "data", "--spm-vocab-size", "5"])
    assert "--spm-vocab-size 5: sentencepiece cannot train on this corpus (Vocabulary size is smaller" in line
    assert not (tmp_path / "data").exists()


def test_one_writer_per_folder_and_no_replacing_another_models_export_without_force(overfit_dae, tmp_path):
    from fairseq_wae.save_dir_lock import hold_folder

    data, ckpt, _ = overfit_dae
    out = tmp_path / "export"
    run([*EXPORT, "--checkpoint", ckpt / "checkpoint_best.pt", "--data", data, "--out", out])
    run([*EXPORT, "--checkpoint", ckpt / "checkpoint_best.pt", "--data", data, "--out", out])  # a rerun replaces its own
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = [*EXPORT, "--checkpoint", ckpt / "checkpoint_last.pt", "--data", data, "--out", out]
    line = refused(other)
    assert f"--out {out} holds the export of another checkpoint ({ckpt / 'checkpoint_best.pt'}): pass --force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (tmp_path / "evaluation.json").write_text('{"name": "wae"}')
    assert "holds no 'metrics' object" in refused([*other, "--force", "--evaluation", tmp_path / "evaluation.json"])
    assert ("--evaluation /dev/zero is not an evaluate.py --json file (/dev/zero, line 1: longer than 1,048,576 bytes"
            in refused([*other, "--force", "--evaluation", "/dev/zero"]))  # read in bounded memory, as every input
    inode = out.stat().st_ino
    left = tmp_path / ".export.export-swap-999999999"  # what an export killed mid-swap leaves beside --out
    left.mkdir()
    run([*other, "--force"])
    # swapped in as one folder (the earlier one whole until then), nothing left beside it
    assert out.stat().st_ino != inode and sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.json", "export"]
    assert str(ckpt / "checkpoint_last.pt") in (out / "export.json").read_text()
    # a second writer, export or preparation, is refused while the first holds the folder
    held = hold_folder(str(out), "test", ".staging-")
    try:
        for cmd in ([*other, "--force"], [*PREPARE, "--input", data.parent / "train.txt", "--out", out, "--force"]):
            assert f"{out} is being written by another fairseq-wae command" in refused(cmd)
    finally:
        os.close(held)


def test_a_line_longer_than_the_cap_is_refused_while_it_is_read_in_bounded_memory(tmp_path):
    """A 200 MB line: refused naming the file and line at 1 MiB, the process never above 500 MB."""
    path = tmp_path / "one-line.txt"
    with open(path, "wb") as f:
        f.write(b"a short first line\n")
        for _ in range(200):
            f.write(b"word " * 209715)
    # the peak of this process's own memory (VmHWM): getrusage's ru_maxrss would also count the pytest worker
    # it was forked from, whose peak Linux carries across exec
    code = ("import sys\nfrom fairseq_wae.errors import one_line\nfrom fairseq_wae.cli.prepare_corpus "
            "import main\ntry:\n    main(sys.argv[1:])\nexcept Exception as e:\n    print(one_line(e), file=sys.stderr)\n"
            "peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
            "print('peak', peak, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, "--input", str(path), "--out", str(tmp_path / "out")],
                            env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert f"{path}, line 2: longer than 1,048,576 bytes" in result.stderr, result.stderr[-3000:]
    peak_kb = int(result.stderr.split("peak ")[-1].split()[0])
    assert peak_kb < 500 * 1024, peak_kb
    assert not (tmp_path / "out").exists()


def test_the_language_model_script_never_replaces_a_model_without_force(tmp_path):
    (tmp_path / "lm.bin").write_bytes(b"an earlier model")
    line = refused([sys.executable, os.path.join(REPO, "scripts", "train_lm.py"), "--corpus",
                    tmp_path / "corpus.txt", "--out", tmp_path / "lm.bin"])
    assert f"--out {tmp_path / 'lm.bin'} exists: pass --force to replace it" in line
    assert (tmp_path / "lm.bin").read_bytes() == b"an earlier model"


WRONG_TASK = ("cannot run a fairseq-wae autoencoder: give --task sentence_autoencoding (sentences reconstructed: "
              "fairseq-train, fairseq-generate, fairseq-interactive) or --task prior_sampling (fairseq-generate: "
              "sentences drawn from the prior)")


@pytest.mark.parametrize("command", ["fairseq-generate", "fairseq-interactive"])
def test_another_task_with_an_autoencoder_checkpoint_is_refused_naming_the_plugins_tasks(overfit_dae, fairseq_lstm,
                                                                                          command):
    """Where fairseq's language_modeling task builds the model (an AttributeError in it before), and where
    fairseq's translation task fails setting itself up on the autoencoder's data folder, before any model."""
    data, ckpt, _ = overfit_dae
    for task in ("language_modeling", "translation"):
        line = refused([command, data, "--user-dir", USER_DIR, "--task", task, "--path", ckpt / "checkpoint_best.pt",
                        "--cpu"])
        assert line == f"{command}: error: --task {task} {WRONG_TASK}", line
    # a translation data folder: the task sets up, and the model refuses to be built under it
    translation_data = fairseq_lstm.parent.parent / "bin"
    line = refused([command, translation_data, "--user-dir", USER_DIR, "--task", "translation", "-s", "de", "-t", "en",
                    "--path", ckpt / "checkpoint_best.pt", "--cpu"])
    assert line == f"{command}: error: --task translation {WRONG_TASK}", line


def test_a_binary_dictionary_is_named(overfit_dae, tmp_path):
    import gzip

    source, ckpt, _ = overfit_dae
    data = tmp_path / "data"
    data.mkdir()
    for path in source.iterdir():
        (data / path.name).symlink_to(path)
    (data / "dict.txt").unlink()
    (data / "dict.txt").write_bytes(gzip.compress((source / "dict.txt").read_bytes()))
    line = refused(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                    ckpt / "checkpoint_best.pt", "--cpu"])
    assert line == (f"fairseq-generate: error: {data / 'dict.txt'} is not a fairseq dictionary, one '<token> <count>' "
                    "a line: line 1 holds NUL bytes (is it a binary or compressed file?); give the dict.txt that the "
                    "data was binarized with"), line


def test_a_script_copied_out_of_the_repository_refuses_in_one_line(tmp_path):
    """The plugin's commands declare themselves (fairseq_wae.errors.command): not found by the script's path."""
    elsewhere = tmp_path / "my-tools"
    elsewhere.mkdir()
    shutil.copy(REPO / "scripts" / "evaluate.py", elsewhere / "evaluate.py")
    line = refused([sys.executable, elsewhere / "evaluate.py", "--corpus", tmp_path / "missing.txt"], cwd=tmp_path)
    assert line == f"evaluate.py: error: --corpus: no such file: {tmp_path / 'missing.txt'}", line
