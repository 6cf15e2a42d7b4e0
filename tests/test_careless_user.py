"""The mistakes of a careless user, each through the real command: nothing lost, nothing silently wrong."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import CLI_ENV, REPO, USER_DIR, built_once, run, toy_sentences, train_command

PREPARE_CORPUS = [sys.executable, REPO / "scripts" / "prepare_corpus.py"]
INTERPOLATE = [sys.executable, REPO / "scripts" / "interpolate.py"]
EVALUATE = [sys.executable, REPO / "scripts" / "evaluate.py"]
VERIFY = [sys.executable, REPO / "scripts" / "verify.py"]


def failure(cmd, **kwargs):
    result = run(cmd, check=False, **kwargs)
    assert result.returncode != 0, result.stdout[-2000:]
    return result.stdout + result.stderr


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def write_sentences(path, n, seed=1):
    path.write_text("\n".join(toy_sentences(n, seed=seed)) + "\n")
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A corpus made by prepare_corpus.py (with its manifest) and a tiny DAE trained on it for 2 epochs,
    saving every 5 updates: (data folder, save dir). Shared by the pytest-xdist workers: read, never written."""
    def build(folder):
        data = folder / "data"
        run([*PREPARE_CORPUS, "--input", write_sentences(folder / "sentences.txt", 300), "--out", data])
        save_dir = folder / "ckpt"
        run(train_command(data, save_dir, "--save-interval-updates", "5", arch="lstm_ae_tiny",
                          criterion="ae_cross_entropy", epochs=2))
        return data, save_dir

    return built_once(tmp_path_factory, "careless", build)


def reordered_copy(data, target, with_manifest):
    """The binaries of ``data`` with a dictionary of the same words in reverse order."""
    target.mkdir()
    for path in data.iterdir():
        if path.suffix in (".bin", ".idx", ".txt") or (with_manifest and path.name == "manifest.json"):
            (target / path.name).write_bytes(path.read_bytes())
    words = (data / "dict.txt").read_text().splitlines()
    (target / "dict.txt").write_text("\n".join(reversed(words)) + "\n")
    return target


def copied(data, target, with_manifest=True):
    """A copy of the data folder ``data``; without its manifest.json it is like fairseq-preprocess output."""
    target.mkdir()
    for path in data.iterdir():
        if path.is_file() and (with_manifest or path.name != "manifest.json"):
            (target / path.name).write_bytes(path.read_bytes())
    return target


def with_token(path, position, token_id):
    """Writes ``token_id`` over the ``position``-th token of a .bin of 16-bit ids (the size stays)."""
    ids = bytearray(path.read_bytes())
    ids[2 * position:2 * position + 2] = token_id.to_bytes(2, "little")
    path.write_bytes(bytes(ids))


# 1. --force deletes nothing it did not write

def test_force_never_deletes_the_input_or_files_it_did_not_write(tmp_path):
    corp = tmp_path / "corp"
    corp.mkdir()
    write_sentences(corp / "my.txt", 60)
    (corp / "notes.md").write_text("mine")
    before = snapshot(corp)
    for flags in ([], ["--force"]):
        message = failure([*PREPARE_CORPUS, "--input", corp / "my.txt", "--out", corp, *flags])
        assert f"--out {corp} contains the input {corp / 'my.txt'}" in message
        assert snapshot(corp) == before

    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", corp / "my.txt", "--out", out, "--vocab-size", "40"])
    (out / "notes.md").write_text("mine too")
    listed = set(json.loads((out / "manifest.json").read_text())["files"])
    assert {"train.txt", "dict.txt", "train.bin", "test.idx"} <= listed
    other = write_sentences(tmp_path / "other.txt", 60, seed=2)
    assert "already holds another corpus" in failure([*PREPARE_CORPUS, "--input", other, "--out", out])
    run([*PREPARE_CORPUS, "--input", other, "--out", out, "--force"])
    assert (out / "notes.md").read_text() == "mine too"
    assert (out / "train.txt").read_text() != before["my.txt"].decode() and (corp / "my.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["path"] == "other.txt"

    # a file with one of the output names that no manifest lists is never overwritten, even with --force
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.txt").write_text("my own training notes\n")
    assert "holds files that no manifest.json of this tool lists" in failure(
        [*PREPARE_CORPUS, "--input", other, "--out", foreign])
    assert "holds train.txt, which no manifest.json of this tool lists" in failure(
        [*PREPARE_CORPUS, "--input", other, "--out", foreign, "--force"])
    assert snapshot(foreign) == {"train.txt": b"my own training notes\n"}


# 2. a dictionary that does not belong to the data or the checkpoint

def test_a_reordered_dictionary_beside_a_manifest_is_refused(prepared, tmp_path):
    data, _ = prepared
    mixed = reordered_copy(data, tmp_path / "mixed", with_manifest=True)
    message = failure(train_command(mixed, tmp_path / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy"))
    assert f"{mixed / 'dict.txt'} is not the file {mixed / 'manifest.json'} lists" in message
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_a_shard_binarized_with_another_dictionary_is_refused_naming_it(prepared, tmp_path):
    data, _ = prepared
    shard = tmp_path / "shard"
    run([*PREPARE_CORPUS, "--input", write_sentences(tmp_path / "more.txt", 100, seed=2), "--out", shard,
         "--vocab-size", "40"])
    # every id of the shard falls inside the first dictionary: only the dictionaries tell it is foreign
    largest = max(json.loads((shard / "manifest.json").read_text())["largest_token_id"].values())
    assert largest < len((data / "dict.txt").read_text().splitlines())
    message = failure(train_command(f"{data}:{shard}", tmp_path / "ckpt", arch="lstm_ae_tiny",
                                    criterion="ae_cross_entropy", epochs=2))
    assert f"{shard / 'dict.txt'} is not the dictionary of the first data folder" in message
    assert f"the shard {shard} was binarized with another dictionary" in message
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
    # a shard binarized with the first one's dictionary trains, its epoch reading the second folder
    same = copied(data, tmp_path / "same")
    log = run(train_command(f"{data}:{same}", tmp_path / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy",
                            epochs=2))
    assert f"train: 270 sentences from {same / 'train'}" in log.stdout + log.stderr


def test_a_binary_of_another_size_is_refused_and_verify_finds_a_same_size_change(prepared, tmp_path):
    data, _ = prepared
    folder = copied(data, tmp_path / "copy")
    assert f"{folder}: 10 checksums" in run([*VERIFY, folder]).stdout  # a clean folder passes
    train_bin, manifest = folder / "train.bin", folder / "manifest.json"
    whole = train_bin.read_bytes()
    train_bin.write_bytes(whole + whole[:2])  # one token more
    message = failure(train_command(folder, tmp_path / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy"))
    assert f"{train_bin} is {len(whole) + 2:,} bytes but {manifest} records {len(whole):,}" in message
    assert f"fairseq-wae-verify {folder} lists every file that differs" in message
    train_bin.write_bytes(whole)
    with_token(train_bin, 0, 5 if whole[:2] != (5).to_bytes(2, "little") else 6)  # the same size: not read at load
    message = failure([*VERIFY, folder])
    assert f"{train_bin}: its sha256 differs from the one {manifest} records" in message
    assert message.strip().endswith(f"verify.py: error: 1 problem in {folder}")


def test_a_folder_without_manifest_gets_cheap_checks_at_load_and_every_id_read_by_verify(prepared, tmp_path):
    data, _ = prepared
    plain = copied(data, tmp_path / "plain", with_manifest=False)
    with_token(plain / "train.bin", (plain / "train.bin").stat().st_size // 4, 60000)
    assert f"{plain / 'train.bin'} holds token id 60000 but the dictionary has" in failure([*VERIFY, plain])
    # a dictionary too large for the binaries' 16-bit ids: they were made with another one
    big = copied(data, tmp_path / "big", with_manifest=False)
    (big / "dict.txt").write_text("".join(f"w{i} 1\n" for i in range(70000)))
    message = failure(train_command(big, tmp_path / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy"))
    assert "stores token ids as uint16, but fairseq-preprocess writes uint32 for the 70,004 entries of " \
           f"{big / 'dict.txt'}" in message


def test_a_checkpoint_refuses_a_same_size_foreign_dictionary_everywhere(prepared, tmp_path):
    data, save_dir = prepared
    plain = reordered_copy(data, tmp_path / "plain", with_manifest=False)  # like fairseq-preprocess output
    both = [f"trained with the dictionary {data / 'dict.txt'}", f"this run's dictionary is {plain / 'dict.txt'}"]
    generate = failure(["fairseq-generate", plain, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                        "--path", save_dir / "checkpoint_last.pt", "--gen-subset", "test", "--cpu"])
    interpolate = failure([*INTERPOLATE, "--path", save_dir / "checkpoint_last.pt", "--data", plain,
                           "a man is sleeping .", "a dog runs ."])
    for message in (generate, interpolate):
        assert all(part in message for part in both), message[-1500:]
    # resuming into the save dir on other data
    before = snapshot(save_dir)
    resume = failure(train_command(plain, save_dir, arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=3))
    assert f"{save_dir / 'checkpoint_last.pt'}, which this run would resume from, was trained with" in resume
    assert plain.name in resume and "another --save-dir" in resume
    assert snapshot(save_dir) == before


# 3. empty, binary and compressed input; empty splits; skipped lines in the manifest

def test_empty_binary_and_gzip_input_and_empty_splits(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n\n")
    assert "blank.txt holds no sentence" in failure([*PREPARE_CORPUS, "--input", blank, "--out", tmp_path / "a"])
    binary = tmp_path / "program"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 20 + b"\nsome text\n")
    assert "program looks like a binary file" in failure([*PREPARE_CORPUS, "--input", binary, "--out", tmp_path / "b"])
    text = write_sentences(tmp_path / "s.txt", 60)
    assert "leaves the valid and test splits without a sentence" in failure(
        [*PREPARE_CORPUS, "--input", text, "--out", tmp_path / "c", "--split", "50,0,0"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()

    disguised = tmp_path / "disguised.txt"  # gzip under a plain-text name is read as gzip
    disguised.write_bytes(gzip.compress(text.read_bytes()))
    run([*PREPARE_CORPUS, "--input", text, "--out", tmp_path / "plain"])
    run([*PREPARE_CORPUS, "--input", disguised, "--out", tmp_path / "gz"])
    assert (tmp_path / "gz" / "train.txt").read_text() == (tmp_path / "plain" / "train.txt").read_text()

    messy = tmp_path / "messy.txt"
    messy.write_bytes(b"\xef\xbb\xbfa man sleeps .\n\n\xff broken\n" + text.read_bytes())
    run([*PREPARE_CORPUS, "--input", messy, "--out", tmp_path / "m"])
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["skipped_lines"] == [{"path": "messy.txt", "kept": 61, "skipped": {
        "empty": {"count": 1, "first_lines": [2]}, "non-UTF-8": {"count": 1, "first_lines": [3]}}}]
    written = sum(((tmp_path / "m" / f"{s}.txt").read_text().splitlines() for s in ("train", "valid", "test")), [])
    assert "a man sleeps ." in written and not any("\ufeff" in line for line in written)

    jsonl = '{"sentence1": "A man sleeps.", "sentence2": "A dog runs."}\n'
    for name, content in (("bom.txt", "\ufeff" + jsonl), ("lead.txt", "\n" + jsonl)):
        (tmp_path / name).write_text(content, encoding="utf-8")
        assert f"{name} looks like JSON lines" in failure([*PREPARE_CORPUS, "--input", tmp_path / name,
                                                           "--out", tmp_path / "j"])


# 4. a kill during a save

@pytest.mark.parametrize("cut", ["empty", "half"])
def test_a_truncated_checkpoint_last_resumes_from_the_newest_readable_one(prepared, tmp_path, cut):
    data, trained = prepared
    save_dir = tmp_path / "ckpt"
    save_dir.mkdir()
    for path in trained.glob("checkpoint*.pt"):
        (save_dir / path.name).write_bytes(path.read_bytes())
        os.utime(save_dir / path.name, (path.stat().st_atime, path.stat().st_mtime))
    last = save_dir / "checkpoint_last.pt"
    whole = last.read_bytes()
    last.write_bytes(b"" if cut == "empty" else whole[: len(whole) // 2])
    result = run(train_command(data, save_dir, arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=3))
    log = result.stdout + result.stderr
    assert f"{last} was unreadable (moved to {last}.broken): resuming from" in log
    newest = max((p for p in trained.glob("checkpoint*.pt") if p.name != "checkpoint_last.pt"),
                 key=lambda p: p.stat().st_mtime)
    assert f"resuming from {save_dir / newest.name}" in log or "checkpoint_best.pt" in log
    epochs = [json.loads(line[line.index("{"):]) for line in log.splitlines() if '"train_loss"' in line]
    assert [record["epoch"] for record in epochs] == [3]  # went on, did not start over
    assert (save_dir / "checkpoint_last.pt.broken").stat().st_size == (0 if cut == "empty" else len(whole) // 2)


# 5. one training per save dir: tests/test_interrupted.py


# 6. reruns repair or skip

def test_a_rerun_repairs_a_damaged_corpus_and_skips_an_intact_one(tmp_path):
    text = write_sentences(tmp_path / "s.txt", 80)
    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", text, "--out", out])
    intact = snapshot(out)
    (out / "train.bin").unlink()
    (out / "valid.txt").write_text("edited\n")
    log = run([*PREPARE_CORPUS, "--input", text, "--out", out]).stderr
    assert "these files are missing or changed: train.bin, valid.txt; writing them again" in log
    assert snapshot(out) == intact
    assert "nothing to do" in run([*PREPARE_CORPUS, "--input", text, "--out", out]).stderr

    os.makedirs(out / ".staging-999999999")  # left by a killed preparation
    (out / "dict.txt").unlink()
    run([*PREPARE_CORPUS, "--input", text, "--out", out])
    assert not (out / ".staging-999999999").exists() and snapshot(out) == intact


def test_a_manifest_without_sizes_is_hashed_at_every_load_until_a_rerun_records_them(tmp_path):
    text = write_sentences(tmp_path / "s.txt", 80)
    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", text, "--out", out])
    manifest = json.loads((out / "manifest.json").read_text())
    earlier = {key: value for key, value in manifest.items() if key not in ("sizes", "largest_token_id")}
    (out / "manifest.json").write_text(json.dumps(earlier))  # as an earlier fairseq-wae wrote it
    whole = (out / "train.bin").read_bytes()
    with_token(out / "train.bin", 0, 5 if whole[:2] != (5).to_bytes(2, "little") else 6)
    message = failure(train_command(out, tmp_path / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy"))
    assert "records checksums but no file sizes" in message
    assert f"{out / 'train.bin'} is not the file {out / 'manifest.json'} lists (checksum differs)" in message
    (out / "train.bin").write_bytes(whole)
    assert "records no file sizes, so every load hashes every file: writing it again with sizes" in run(
        [*PREPARE_CORPUS, "--input", text, "--out", out]).stderr
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert "nothing to do" in run([*PREPARE_CORPUS, "--input", text, "--out", out]).stderr


def test_the_quick_start_works_every_time_it_is_run(tmp_path):
    """Run, then run again with the prepared data deleted: the rerun prepares the data again, keeps the
    finished training and samples the same sentences (a rerun with everything intact takes the same path,
    minus the preparation)."""
    quick = ["bash", REPO / "examples" / "toy" / "run.sh", tmp_path / "qs"]
    env = {**CLI_ENV, "EPOCHS": "1"}

    def sampled():
        result = subprocess.run([str(c) for c in quick], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout.split("sampled from the prior")[1].splitlines()[1:]

    first = sampled()
    assert len(first) == 8
    for name in os.listdir(tmp_path / "qs" / "data"):
        os.remove(tmp_path / "qs" / "data" / name)
    assert sampled() == first
    # the rerun kept the first run's logs: its training is in train.log.1, and the rerun trained nothing
    logs = {name: (tmp_path / "qs" / name).read_text() for name in ("train.log.1", "train.log")}
    assert "epoch 001" in logs["train.log.1"] and "epoch 001 |" not in logs["train.log"]
    assert (tmp_path / "qs" / "prepare.log.1").exists() and (tmp_path / "qs" / "generate.log.1").exists()
    assert (tmp_path / "qs" / "data" / "dict.txt").exists()


# 7. evaluation counts every line

def test_an_empty_line_is_a_sentence_of_length_zero_wherever_it_stands(tmp_path):
    (tmp_path / "ref.txt").write_text("a b c\nd e f\ng h\n")
    (tmp_path / "rec.txt").write_text("a b c\nd e f\n\n")
    (tmp_path / "corpus.txt").write_text("a b\nc d\n")
    rows = {}
    for name, samples in (("end", "a b\n\n"), ("start", "\na b\n")):
        (tmp_path / f"{name}.txt").write_text(samples)
        run([*EVALUATE, "--reference", tmp_path / "ref.txt", "--reconstructions", tmp_path / "rec.txt",
             "--samples", tmp_path / f"{name}.txt", "--corpus", tmp_path / "corpus.txt",
             "--json", tmp_path / f"{name}.json"])
        rows[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert rows["end"]["meta"]["reconstructions"] == 3 and rows["end"]["meta"]["sentences"] == 2
    assert rows["end"]["metrics"]["avg_len"] == rows["start"]["metrics"]["avg_len"] == 1.0


# 8. a sentence where a traceback was

def test_wrong_files_and_flags_get_a_sentence(prepared, tmp_path):
    data, save_dir = prepared
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    for checkpoint, expected in (("text.pt", "is not a readable PyTorch checkpoint"),
                                 ("empty.pt", "is empty (0 bytes)")):
        path = tmp_path / checkpoint
        for command in (["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling",
                         "--num-samples", "2", "--path", path, "--cpu"],
                        [*INTERPOLATE, "--path", path, "--data", data, "a man .", "a dog ."]):
            message = failure(command)
            assert f"{path} {expected}" in message and "EOFError" not in message and "IndexError" not in message

    ckpt = save_dir / "checkpoint_last.pt"
    assert "--latent-temperature must be a finite number > 0, got inf" in failure(
        ["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples", "2",
         "--latent-temperature", "inf", "--path", ckpt, "--cpu"])
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert f"the data folder {a_file} is a file" in failure(
        train_command(a_file, tmp_path / "c", arch="lstm_ae_tiny", criterion="ae_cross_entropy"))
    saved_to_a_file = run(train_command(data, a_file, arch="lstm_ae_tiny", criterion="ae_cross_entropy"), check=False)
    assert saved_to_a_file.returncode == 2 and "Traceback" not in saved_to_a_file.stderr
    assert f"--save-dir {a_file} is a file, not a folder" in saved_to_a_file.stderr  # before fairseq's own check
    assert f"--out {a_file} is a file, not a folder" in failure(
        [*PREPARE_CORPUS, "--input", data / "train.txt", "--out", a_file])
    assert f"{data} is a folder, not a text file" in failure(
        [*PREPARE_CORPUS, "--input", data, "--out", tmp_path / "o"])

    for sentences, expected in ((["", "a man ."], "sentence 1 is empty"),
                                (["a man .", "xyzzy plugh"], "sentence 2 ('xyzzy plugh') has no word in the model's")):
        assert expected in failure([*INTERPOLATE, "--path", ckpt, "--data", data, *sentences])

    crash_dir = tmp_path / "swae"
    message = failure(train_command(data, crash_dir, "--kl-variance-penalty", "1", arch="lstm_wae_tiny"))
    assert "--kl-variance-penalty (the stochastic WAE) needs a Gaussian latent head" in message
    assert "num_updates" not in message and not (crash_dir / "crash.pt").exists()


def test_evaluate_checkpoint_checks_its_inputs_first_and_shows_why_generation_failed(prepared, tmp_path):
    data, save_dir = prepared
    script = ["bash", REPO / "scripts" / "evaluate_checkpoint.sh", save_dir / "checkpoint_last.pt"]
    lm = tmp_path / "lm.arpa"
    lm.write_text("placeholder")
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in data.iterdir():
        if path.name != "train.txt":
            (plain / path.name).write_bytes(path.read_bytes())
    message = failure([*script, plain, lm, tmp_path / "out" / "row"])
    assert f"no {plain}/train.txt" in message and not (tmp_path / "out").exists()
    message = failure([*script, data, lm, tmp_path / "out" / "row", "5", "--no-such-flag"])
    assert "fairseq-generate failed; the end of" in message and "unrecognized arguments: --no-such-flag" in message


# 12. checkpoints that cannot prove their dictionary, code in a checkpoint, interrupted exports

EXPORT = [sys.executable, REPO / "scripts" / "export_model.py"]
BIND = [sys.executable, REPO / "scripts" / "bind_dictionary.py"]


def generate_command(data, checkpoint):
    return ["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path", checkpoint,
            "--gen-subset", "test", "--cpu"]


def rewritten_checkpoint(source, target, change):
    """A copy of the checkpoint ``source`` at ``target``, its contents passed through ``change`` first."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    change(state)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target


def unbind(state):
    """What a checkpoint written before the dictionary fingerprint existed lacks."""
    del state["model"]["dictionary_binding._extra_state"]


def test_a_checkpoint_without_a_fingerprint_is_refused_everywhere_until_bound(prepared, tmp_path):
    from fairseq.data import Dictionary

    from fairseq_wae import LSTMAutoencoderModel
    from fairseq_wae.checkpoint_utils import CheckpointError, checkpoint_dictionary, load_checkpoint_state

    data, save_dir = prepared
    old_dir = tmp_path / "old"
    old = rewritten_checkpoint(save_dir / "checkpoint_last.pt", old_dir / "checkpoint_last.pt", unbind)
    plain = reordered_copy(data, tmp_path / "plain", with_manifest=False)  # same words and size, other ids
    unbound = f"{old} holds no fingerprint of the dictionary it was trained with"
    commands = [(plain, [*INTERPOLATE, "--path", old, "--data", plain, "a man .", "a dog ."]),
                (plain, [*EXPORT, "--checkpoint", old, "--data", plain, "--out", tmp_path / "model"]),
                (plain, generate_command(plain, old)),
                (data, generate_command(data, old))]  # the right folder cannot be told from a wrong one either
    for given, command in commands:
        message = failure(command)
        assert unbound in message and f"fairseq-wae-bind-dictionary {old} {given}" in message, message[-1500:]
    for given in (plain, data):
        with pytest.raises(CheckpointError, match=unbound):
            LSTMAutoencoderModel.from_pretrained(str(old_dir), "checkpoint_last.pt", str(given))
    assert not (tmp_path / "model").exists()
    before = snapshot(old_dir)
    resume = failure(train_command(plain, old_dir, arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=3))
    assert f"{old}, which this run would resume from, holds no fingerprint" in resume
    assert snapshot(old_dir) == before  # nothing stamped, nothing trained

    # binding checks what it can: the data folder the config records, the size
    message = failure([*BIND, old, plain])
    assert f"{old}'s config records that it was trained on --data {data}, whose dict.txt differs from " \
           f"{plain / 'dict.txt'}" in message
    bigger = copied(data, tmp_path / "bigger", with_manifest=False)
    with open(bigger / "dict.txt", "a") as f:
        f.write("newword 1\n")
    size = len(Dictionary.load(str(data / "dict.txt")))
    assert f"have {size} rows, but {bigger / 'dict.txt'} has {size + 1} entries" in failure([*BIND, old, bigger])
    assert snapshot(old_dir) == before
    mtime = old.stat().st_mtime_ns
    printed = run([*BIND, old, data]).stdout
    assert f"{old}: bound to {data / 'dict.txt'}" in printed and f"the same words as {data / 'dict.txt'}" in printed
    assert checkpoint_dictionary(load_checkpoint_state(str(old))) == \
        checkpoint_dictionary(load_checkpoint_state(str(save_dir / "checkpoint_last.pt")))
    assert old.stat().st_mtime_ns == mtime  # a save dir's newest-first order stays

    # bound: used with its dictionary, refused with the other, and resumed
    hypotheses = [line for line in run(generate_command(data, old)).stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == len((data / "test.txt").read_text().splitlines())
    assert f"this run's dictionary is {plain / 'dict.txt'}" in failure(generate_command(plain, old))
    run(train_command(data, old_dir, arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=3))
    assert checkpoint_dictionary(load_checkpoint_state(str(old)))["path"] == str(data / "dict.txt")


# 9. text as it is typed: Unicode, invisible characters, special symbols, sentencepiece pieces

NFC_CAFE, NFD_CAFE = "caf\u00e9", "cafe\u0301"
INVISIBLE = "\u200b\ufeff\u00ad\u200d"  # zero-width space, byte-order mark, soft hyphen, zero-width joiner


def interactive(data, checkpoint, lines, *flags):
    """fairseq-interactive's (S-, H-) lines for ``lines`` typed one per line, or its failure's output."""
    result = run(["fairseq-interactive", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                  checkpoint, "--cpu", "--beam", "1", *flags], input="".join(line + "\n" for line in lines),
                 check=False)
    if result.returncode != 0:
        return result.stdout + result.stderr
    out = result.stdout.splitlines()
    return ([line.split("\t")[1] for line in out if line.startswith("S-")],
            [line.split("\t")[-1] for line in out if line.startswith("H-")])


@pytest.fixture(scope="module")
def unicode_corpus(tmp_path_factory):
    """A corpus whose input holds the same word composed and decomposed, invisible characters inside
    lines and a line of invisible characters alone, and a tiny DAE trained on it:
    (data, checkpoint, number of the invisible line)."""
    def build(folder):
        lines = toy_sentences(300) + [f"A man drinks {NFC_CAFE} .", f"A man drinks {NFD_CAFE} .",
                                      f"the {NFD_CAFE} is o\u00adpen .",
                                      f"\ufeffa wo\u200bman likes {NFC_CAFE}\u200d .", INVISIBLE]
        source = folder / "sentences.txt"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        data = folder / "data"
        run([*PREPARE_CORPUS, "--input", source, "--out", data])
        run(train_command(data, folder / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=2))
        return data, folder / "ckpt" / "checkpoint_last.pt", len(lines)

    return built_once(tmp_path_factory, "unicode", build)


def test_text_is_normalised_alike_in_preparation_the_interface_interpolation_and_interactive(unicode_corpus):
    import unicodedata

    from fairseq_wae.models.hub_interface import from_checkpoint

    data, checkpoint, invisible_line = unicode_corpus
    written = sum(((data / f"{split}.txt").read_text(encoding="utf-8").splitlines()
                   for split in ("train", "valid", "test")), [])
    assert not [line for line in written if any(unicodedata.category(c) == "Cf" for c in line)]
    assert written.count("a man drinks café .") == 1  # composed and decomposed: one sentence
    assert {"the café is open .", "a woman likes café ."} <= set(written)
    words = [line.split()[0] for line in (data / "dict.txt").read_text(encoding="utf-8").splitlines()]
    assert NFC_CAFE in words and not [w for w in words if unicodedata.normalize("NFC", w) != w or "\u0301" in w]
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["skipped_lines"][0]["skipped"] == {"empty": {"count": 1, "first_lines": [invisible_line]}}

    hub = from_checkpoint(str(checkpoint), str(data))
    typed = [f"A man drinks {NFD_CAFE}.", f"A man drinks {NFC_CAFE}.", f"A\u200b man drinks\ufeff {NFC_CAFE}\u00ad."]
    assert len({hub.codec.encode(t) for t in typed}) == 1 and hub.codec.encode(typed[0]) == "a man drinks café ."
    codes = hub.encode(typed)
    assert (codes[0] == codes[1]).all() and (codes[0] == codes[2]).all()
    with pytest.raises(ValueError, match="sentence 2 is empty"):
        hub.encode(["a man .", INVISIBLE])

    walks = [run([*INTERPOLATE, "--path", checkpoint, "--data", data, "--steps", "3", first, "a dog runs ."]).stdout
             for first in typed]
    assert walks[0] == walks[1] == walks[2]
    assert "sentence 1 is empty" in failure([*INTERPOLATE, "--path", checkpoint, "--data", data, INVISIBLE, "a ."])

    sources, hypotheses = interactive(data, checkpoint, typed, "--tokenizer", "normalized_moses")
    assert sources == ["a man drinks café ."] * 3 and len(set(hypotheses)) == 1


def test_special_symbols_typed_as_tokens_are_refused_and_read_as_text_otherwise(prepared, tmp_path):
    from fairseq_wae.models.hub_interface import from_checkpoint

    data, save_dir = prepared
    checkpoint = save_dir / "checkpoint_last.pt"
    hub = from_checkpoint(str(checkpoint), str(data))
    for symbol in ("<pad>", "</s>", "<s>"):
        with pytest.raises(ValueError, match=f"sentence 2 \\('a {symbol} man .'\\) holds {symbol}, a special symbol"):
            hub.encode(["a man .", f"a {symbol} man ."], tokenize=False)
        assert f"holds {symbol}, a special symbol" in failure(
            [*INTERPOLATE, "--path", checkpoint, "--data", data, "--no-tokenize", "a man .", f"{symbol} a man ."])
        # as raw text, the characters they are made of, as preparation read them
        assert hub.codec.encode(f"a {symbol} man") == f"a < {symbol.strip('<>').replace('/', '/ ')} > man"
    # fairseq-interactive reads typed lines only with the corpus's tokeniser, which reads them as text
    assert "read typed text as the corpus was prepared, with --tokenizer normalized_moses" in interactive(data, checkpoint, ["<pad> a man ."])
    unknown = hub.encode(["<unk> man ."], tokenize=False)  # <unk> is what an out-of-vocabulary word is
    assert (unknown == hub.encode(["xyzzy man ."], tokenize=False)).all()


@pytest.fixture(scope="module")
def sentencepiece_corpus(tmp_path_factory):
    def build(folder):
        data = folder / "data"
        run([*PREPARE_CORPUS, "--input", write_sentences(folder / "s.txt", 300), "--out", data,
             "--spm-vocab-size", "80"])
        run(train_command(data, folder / "ckpt", arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=2))
        return data, folder / "ckpt" / "checkpoint_last.pt"

    return built_once(tmp_path_factory, "spm", build)


def test_interpolation_on_a_sentencepiece_corpus_prints_words(sentencepiece_corpus):
    from fairseq_wae.models.hub_interface import from_checkpoint

    data, checkpoint = sentencepiece_corpus
    hub = from_checkpoint(str(checkpoint), str(data))
    a, b = "A man is playing a guitar.", "Two dogs run in the snow."
    words = run([*INTERPOLATE, "--path", checkpoint, "--data", data, a, b, "--steps", "4"]).stdout.splitlines()
    pieces = run([*INTERPOLATE, "--path", checkpoint, "--data", data, "--no-tokenize", "--steps", "4",
                  hub.codec.encode(a), hub.codec.encode(b)]).stdout.splitlines()
    assert len(words) == 4 and "\u2581" in "".join(pieces) and "\u2581" not in "".join(words)
    # pieces joined as fairseq-generate --post-process sentencepiece joins them
    assert words == [p.replace(" ", "").replace("\u2581", " ").strip().replace("\t ", "\t") for p in pieces]
    # fairseq-interactive with the same tokenizer and fairseq's sentencepiece reads text as the interface does
    sources, _ = interactive(data, checkpoint, [a, b], "--tokenizer", "normalized_moses", "--bpe", "sentencepiece",
                             "--sentencepiece-model", data / "spm.model")
    assert sources == [hub.codec.encode(a), hub.codec.encode(b)]


# 10. samples: streaming, the size of a list, temperatures, seeds

def test_samples_stream_in_batches_and_a_list_beyond_the_limit_is_refused(prepared):
    import torch

    from fairseq_wae.models.hub_interface import from_checkpoint

    data, save_dir = prepared
    hub = from_checkpoint(str(save_dir / "checkpoint_last.pt"), str(data))
    drawn = []
    draw = hub._prior_codes
    hub._prior_codes = lambda ids, *args: drawn.append(len(ids)) or draw(ids, *args)
    stream = hub.iter_sample(10**9, seed=3, batch_size=4, sampling=True)  # nothing is drawn before it is read
    assert drawn == []
    state = torch.get_rng_state()
    first = [next(stream) for _ in range(8)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched between sentences
    assert drawn == [4, 4]  # memory bounded by the batch, not by n
    hub._prior_codes = draw
    # sampled words depend on the batches, as in fairseq-generate: the same batches, the same sentences
    assert hub.sample(8, seed=3, batch_size=4, sampling=True) == first
    assert list(hub.iter_sample(6, seed=3, batch_size=5, tokenize=False)) == hub.sample(6, seed=3, tokenize=False)
    with pytest.raises(ValueError, match="sample\\(n=1,000,001\\) would hold all of them at once .* use iter_sample"):
        hub.sample(hub.SAMPLE_LIST_LIMIT + 1)


def test_latent_and_softmax_temperatures_and_seeds_are_told_apart_and_checked(prepared, caplog):
    import torch

    from fairseq_wae.models.hub_interface import from_checkpoint

    data, save_dir = prepared
    checkpoint = save_dir / "checkpoint_last.pt"
    hub = from_checkpoint(str(checkpoint), str(data))
    assert torch.allclose(hub.prior_codes(3, seed=2, latent_temperature=2.5), 2.5 * hub.prior_codes(3, seed=2))
    # temperature= is fairseq's softmax temperature: the same codes, other sampled words
    hot = hub.sample(8, seed=2, sampling=True, temperature=50.0, tokenize=False)
    assert hot != hub.sample(8, seed=2, sampling=True, tokenize=False)
    hub.sample(2, temperature=0.5)
    assert "it changes nothing in greedy decoding" in caplog.text
    for call, message in (
            (lambda: hub.sample(2, latent_temperature=1e39), "latent_temperature 1e+39 draws codes beyond the range"),
            (lambda: hub.sample(2, seed=2**70), "seed must be in 0 .. 2**32 - 1"),
            (lambda: hub.iter_sample(2, seed=-1), "seed must be in 0 .. 2**32 - 1")):
        with pytest.raises(ValueError) as caught:
            call()
        assert message in str(caught.value)
    message = failure(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples",
                       "2", "--latent-temperature", "1e39", "--path", checkpoint, "--cpu"])
    assert "--latent-temperature 1e+39 draws codes beyond the range of the model's torch.float32" in message
    assert "AssertionError" not in message


# 11. what reads its input as a stream, and sentences too long for fairseq's batches

def test_a_fifo_or_a_pipe_is_read_like_the_file_it_carries(tmp_path):
    from fairseq_wae.preprocess.manifest import sha256_of

    text = write_sentences(tmp_path / "s.txt", 80)
    run([*PREPARE_CORPUS, "--input", text, "--out", tmp_path / "file"])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["cp", str(text), str(fifo)])
    run([*PREPARE_CORPUS, "--input", fifo, "--out", tmp_path / "from_fifo"])
    writer.wait()
    piped = subprocess.run(f"cat {text} | {sys.executable} {REPO / 'scripts' / 'prepare_corpus.py'} "
                           f"--input - --out {tmp_path / 'piped'}", shell=True, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr[-2000:]
    for out in ("from_fifo", "piped"):
        assert (tmp_path / out / "train.txt").read_text() == (tmp_path / "file" / "train.txt").read_text()
        assert json.loads((tmp_path / out / "manifest.json").read_text())["inputs"][0]["sha256"] == sha256_of(text)
    empty = tmp_path / "empty_fifo"
    os.mkfifo(empty)
    writer = subprocess.Popen(["cp", "/dev/null", str(empty)])
    assert f"{empty} is empty" in failure([*PREPARE_CORPUS, "--input", empty, "--out", tmp_path / "e"])
    writer.wait()


def test_a_sentence_longer_than_fairseq_batches_is_refused_not_dropped(tmp_path):
    from helpers import parse_json_log, preprocess

    sentences = toy_sentences(40)
    longest = " ".join(["a man"] * 550)  # 1,100 words: fairseq's default 1,024 positions would drop it
    data = preprocess(tmp_path, {"train": sentences[:30] + [longest], "valid": sentences[30:35],
                                 "test": sentences[35:]})
    options = dict(arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=1, batch_size=40)
    message = failure(train_command(data, tmp_path / "c1", **options))
    assert "1 sentence(s) of the train split are longer than fairseq can batch" in message
    assert "the longest has 1,101 tokens with EOS" in message and "--max-sentence-len N" in message
    for flags in (["--max-sentence-len", "50"], ["--max-target-positions", "2000"]):
        log = run(train_command(data, tmp_path / flags[0], *flags, **options))
        trained = [record for record in parse_json_log(log.stdout + log.stderr) if "train_loss" in record]
        assert trained[-1]["train_bsz"] == "31", flags  # every sentence, the long one too, in the one batch


class RunsACommand:
    """What a booby-trapped checkpoint holds: unpickling it runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_pickled_into_a_checkpoint_or_an_export_never_runs(prepared, tmp_path):
    import pickle

    from fairseq_wae import LSTMAutoencoderModel
    from fairseq_wae.checkpoint_utils import CheckpointError

    pickle.loads(pickle.dumps(RunsACommand(tmp_path / "control")))
    assert (tmp_path / "control").exists()  # the payload works: unpickled, it runs
    data, save_dir = prepared
    marker = tmp_path / "ran"

    def booby_trap(state):
        state["extra_state"]["payload"] = RunsACommand(marker)

    trapped_dir = tmp_path / "trapped"
    trapped = rewritten_checkpoint(save_dir / "checkpoint_last.pt", trapped_dir / "checkpoint_last.pt", booby_trap)
    model = tmp_path / "model"
    run([*EXPORT, "--checkpoint", save_dir / "checkpoint_last.pt", "--data", data, "--out", model])
    rewritten_checkpoint(model / "model.pt", model / "model.pt", booby_trap)
    lm = tmp_path / "lm.arpa"
    lm.write_text("placeholder")
    refused = "holds pickled objects (posix.system), not only tensors and plain values: unpickling them could run " \
              "code from the file, so it was not loaded"
    for path, command in ((trapped, [*EXPORT, "--checkpoint", trapped, "--data", data, "--out", tmp_path / "out"]),
                          (trapped, train_command(data, trapped_dir, arch="lstm_ae_tiny", criterion="ae_cross_entropy",
                                                  epochs=3)),
                          (trapped, generate_command(data, trapped)),
                          (trapped, [*INTERPOLATE, "--path", trapped, "--data", data, "a man .", "a dog ."]),
                          (trapped, ["bash", REPO / "scripts" / "evaluate_checkpoint.sh", trapped, data, lm,
                                     tmp_path / "eval" / "row", "5"]),
                          (model / "model.pt", [*INTERPOLATE, "--path", model / "model.pt", "--data", model, "a man .",
                                                "a dog ."])):
        message = failure(command)
        assert f"{path} {refused}" in message, message[-1500:]
    for folder, name, data_folder in ((model, "model.pt", "."), (trapped_dir, "checkpoint_last.pt", str(data))):
        with pytest.raises(CheckpointError) as caught:
            LSTMAutoencoderModel.from_pretrained(str(folder), name, data_folder)
        assert f"{folder / name} {refused}" in str(caught.value)
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and sorted(p.name for p in trapped_dir.iterdir()) == ["checkpoint_last.pt"]


def unwritable_folder(tmp_path):
    """An empty folder this process cannot write into: read-only by its mode, or (for root, whom modes do
    not stop) one of sysfs's, where nobody may create a file."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for folder in ("/sys/kernel/software_nodes", "/sys/kernel/iommu_groups", "/sys/fs/bpf"):
        if os.path.isdir(folder) and not os.listdir(folder):
            return folder
    pytest.skip("running as root without an empty sysfs folder: no folder here is read-only to this process")


def test_an_interrupted_export_is_cleaned_up_by_the_next_and_bad_export_inputs_get_a_sentence(prepared, tmp_path):
    data, save_dir = prepared
    checkpoint = save_dir / "checkpoint_last.pt"
    out = tmp_path / "model"
    export = [*EXPORT, "--checkpoint", checkpoint, "--data", data, "--out", out]
    limited = ["bash", "-c", 'ulimit -f 64 && exec "$@"', "limited", *export]  # 64 KiB: model.pt cannot be written
    message = failure(limited)
    assert "could not write the export into" in message and "file-size limit (ulimit -f)" in message
    assert not out.exists()  # a new folder: removed again
    run(export)
    exported = snapshot(out)
    assert "could not write the export into" in failure(limited)
    assert snapshot(out) == exported and sorted(p.name for p in out.iterdir()) == sorted(exported)

    # a kill leaves the staging folder of a process that no longer runs, earlier versions a model.pt.tmp
    ended = subprocess.Popen(["true"])
    ended.wait()
    leftover = out / f".export-staging-{ended.pid}"
    leftover.mkdir()
    (leftover / "model.pt").write_bytes(b"half a model")
    (out / "model.pt.tmp").write_bytes(b"half a model")
    log = run(export).stderr
    assert f"removing {leftover}, left by an interrupted export" in log and "model.pt.tmp" in log
    assert snapshot(out) == exported and not leftover.exists()
    (out / "notes.txt").write_text("mine")  # what the export did not write stays, and is refused
    assert f"--out {out} holds notes.txt, not written by an export" in failure(export)
    (out / "notes.txt").unlink()

    (out / "export.json").write_text('{"files": ["model.pt", "dict')  # cut short
    message = failure(export)
    assert f"{out / 'export.json'} is unreadable" in message and f"Move {out} aside" in message
    (out / "export.json").write_text('{"files": ["../elsewhere.txt"]}')
    assert f"{out / 'export.json'} is not the record an export writes" in failure(export)
    unwritable = unwritable_folder(tmp_path)
    assert f"cannot write into --out {unwritable}" in failure([*export[:-1], unwritable])

    import torch

    torch.save({"weights": torch.zeros(2)}, tmp_path / "a_dict.pt")
    zipped = tmp_path / "archive.zip"
    with __import__("zipfile").ZipFile(zipped, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    for path, expected in ((tmp_path / "a_dict.pt", "was saved with torch.save but is not a fairseq checkpoint"),
                           (zipped, "is not a readable PyTorch checkpoint")):
        for command in ([*EXPORT, "--checkpoint", path, "--data", data, "--out", tmp_path / "o"],
                        generate_command(data, path), [*INTERPOLATE, "--path", path, "--data", data, "a .", "b ."]):
            message = failure(command)
            assert f"{path} {expected}" in message and "give a checkpoint written by fairseq-train" in message
            assert "KeyError" not in message


# 13. a preparation killed at any instant of putting its files in place

KILLED = 77


def prepare_in_a_child(argv, log, stop_at_move=None, tool="prepare_corpus"):
    """fairseq_wae.cli.<tool>.main(argv) in a forked child (this process's imports: no start-up cost). With
    ``stop_at_move`` k the child dies (os._exit: no cleanup runs, as under kill -9) as it begins its
    k-th file move; without, it prints how many moves it made. Returns its exit status; its output is
    in ``log``."""
    pid = os.fork()
    if pid:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    import logging
    import traceback

    status = 1
    try:  # the child never returns into pytest
        sys.stdout = sys.stderr = open(log, "w", buffering=1)
        logging.getLogger().handlers = [logging.StreamHandler(sys.stderr)]  # pytest's capture handler sat there
        logging.getLogger().setLevel(logging.INFO)
        import importlib

        from fairseq_wae.errors import EXIT_STATUS, Refusal, one_line
        from fairseq_wae.preprocess import staging

        moves, move = [], staging._move

        def counted_move(source, destination):
            moves.append(destination)
            if len(moves) == stop_at_move:
                os._exit(KILLED)
            move(source, destination)

        staging._move = counted_move
        try:
            importlib.import_module(f"fairseq_wae.cli.{tool}").main([str(a) for a in argv])
            status = 0
        except SystemExit as e:
            print(e.code, file=sys.stderr)
            status = e.code if isinstance(e.code, int) else 1
        except Refusal as e:  # as the plugin's sys.excepthook shows it
            print(one_line(e), file=sys.stderr)
            status = EXIT_STATUS
        print(f"moves: {len(moves)}")
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


def test_a_preparation_killed_at_any_file_move_leaves_a_corpus_or_one_the_next_run_repairs(tmp_path):
    from fairseq_wae.preprocess.manifest import JOURNAL
    from fairseq_wae.tasks.sentence_autoencoding import SentenceAutoencodingConfig, SentenceAutoencodingTask

    old_text, new_text = write_sentences(tmp_path / "old.txt", 60, seed=1), write_sentences(tmp_path / "new.txt", 60, seed=2)
    old_command = lambda out: ["--input", old_text, "--out", out, "--vocab-size", "40"]  # noqa: E731
    new_command = lambda out: ["--input", new_text, "--out", out, "--force"]  # noqa: E731
    log = tmp_path / "child.log"

    def prepared(command, out, stop_at_move=None, expected=(0,)):
        status = prepare_in_a_child(command(out), log, stop_at_move)
        assert status in expected, log.read_text()[-3000:]
        return log.read_text()

    def leftovers(out):
        return sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.name == JOURNAL)

    for name, command in (("old", old_command), ("new", new_command)):
        prepared(command, tmp_path / name)
    old, new = snapshot(tmp_path / "old"), snapshot(tmp_path / "new")
    assert old != new and set(old) == set(new)
    pristine = tmp_path / "pristine"
    shutil.copytree(tmp_path / "old", pristine)
    (pristine / "notes.md").write_text("mine")  # a file the tool did not write: it must survive everything
    old, new = {**old, "notes.md": b"mine"}, {**new, "notes.md": b"mine"}

    shutil.copytree(pristine, tmp_path / "counted")
    moves = int(prepared(new_command, tmp_path / "counted").rsplit("moves: ", 1)[1])
    assert snapshot(tmp_path / "counted") == new and moves == 2 + 2 * len(json.loads(old["manifest.json"])["files"]) + 2
    trained_on_a_half = False
    for k in range(1, moves + 1):
        killed = tmp_path / f"killed-{k}"
        shutil.copytree(pristine, killed)
        prepared(new_command, killed, stop_at_move=k, expected=(KILLED,))
        if (killed / JOURNAL).exists():
            with pytest.raises(ValueError, match=f"{killed} is in the middle of a preparation"):
                SentenceAutoencodingTask.setup_task(SentenceAutoencodingConfig(data=str(killed)))
            if not trained_on_a_half and k > moves // 2:  # once through the real command
                message = failure(train_command(killed, tmp_path / "ckpt", arch="lstm_ae_tiny",
                                                criterion="ae_cross_entropy", epochs=1))
                assert f"{killed} is in the middle of a preparation" in message
                trained_on_a_half = True
        else:
            assert snapshot(killed) == old, k  # killed before its journal: nothing of the old corpus moved
        copies = {name: tmp_path / f"{name}-{k}" for name in ("back", "forward")}
        for copy in copies.values():
            shutil.copytree(killed, copy)

        # the original command brings the earlier corpus back; the same command finishes the new one
        prepared(old_command, copies["back"])
        assert snapshot(copies["back"]) == old and not leftovers(copies["back"]), k
        prepared(new_command, copies["forward"])
        assert snapshot(copies["forward"]) == new and not leftovers(copies["forward"]), k
        # a repair killed after its first move (an undo of one move is done by then) is repaired in turn
        if (killed / JOURNAL).exists() and prepared(old_command, killed, stop_at_move=2, expected=(0, KILLED)):
            assert (killed / JOURNAL).exists() or snapshot(killed) == old
        prepared(new_command, killed)
        assert snapshot(killed) == new and not leftovers(killed), k
    assert trained_on_a_half


# 14. line endings, a damaged gzip, an --out that cannot be written

def test_cr_and_crlf_line_endings_end_sentences_in_every_reader(tmp_path):
    sentences = toy_sentences(300, seed=3)
    log = tmp_path / "child.log"

    def prepared(out, *argv, tool="prepare_corpus"):
        flags = ["--num-sentences", "all"] if tool == "prepare_snli" else []
        status = prepare_in_a_child([*argv, "--out", out, "--split", "0.8,0.1,0.1", *flags], log, tool=tool)
        assert status == 0, log.read_text()[-3000:]
        return {name: (out / name).read_bytes() for name in ("train.txt", "valid.txt", "test.txt", "dict.txt",
                                                               "train.bin", "train.idx")}

    def lines(items, end):
        return "".join(item + end for item in items).encode()

    (tmp_path / "lf.txt").write_bytes(lines(sentences, "\n"))
    reference = prepared(tmp_path / "lf", "--input", tmp_path / "lf.txt")
    (tmp_path / "cr.txt").write_bytes(lines(sentences, "\r"))  # old Mac
    (tmp_path / "crlf.txt").write_bytes(lines(sentences, "\r\n"))
    (tmp_path / "mixed.txt").write_bytes(lines(sentences[:50], "\r") + lines(sentences[50:], "\n"))
    (tmp_path / "cr.gz").write_bytes(gzip.compress(lines(sentences, "\r")))
    (tmp_path / "first.txt").write_bytes(lines(sentences[:150], "\r"))
    (tmp_path / "second.txt").write_bytes(lines(sentences[150:], "\n"))
    for name, inputs in (("cr", ["cr.txt"]), ("crlf", ["crlf.txt"]), ("mixed", ["mixed.txt"]), ("gz", ["cr.gz"]),
                         ("two", ["first.txt", "second.txt"])):
        flags = [flag for path in inputs for flag in ("--input", tmp_path / path)]
        assert prepared(tmp_path / name, *flags) == reference, name

    # SNLI's readers: jsonl, tab-separated txt and the official zip, each with CR line ends
    pairs = list(zip(sentences[0::2], sentences[1::2]))
    records = [json.dumps({"gold_label": "neutral", "sentence1": a, "sentence2": b}) for a, b in pairs]
    table = ["gold_label\tsentence1\tsentence2"] + [f"neutral\t{a}\t{b}" for a, b in pairs]
    (tmp_path / "lf.jsonl").write_bytes(lines(records, "\n"))
    snli_reference = prepared(tmp_path / "snli-lf", "--snli-path", tmp_path / "lf.jsonl", tool="prepare_snli")
    (tmp_path / "cr.jsonl").write_bytes(lines(records, "\r"))
    (tmp_path / "cr_tab.txt").write_bytes(lines(table, "\r"))
    with __import__("zipfile").ZipFile(tmp_path / "snli_1.0.zip", "w") as archive:
        archive.writestr("snli_1.0/snli_1.0_train.jsonl", lines(records, "\r"))
    for name in ("cr.jsonl", "cr_tab.txt", "snli_1.0.zip"):
        assert prepared(tmp_path / f"snli-{name}", "--snli-path", tmp_path / name, tool="prepare_snli") == \
            snli_reference, name


def test_a_cut_gzip_and_an_unwritable_out_are_refused_naming_them(tmp_path):
    log = tmp_path / "child.log"

    def refused(*argv):
        assert prepare_in_a_child(argv, log) == 2
        message = log.read_text()
        assert "Traceback" not in message and "Error:" not in message, message[-3000:]
        return message

    whole = gzip.compress(("\n".join(toy_sentences(2000)) + "\n").encode())
    for cut in (len(whole) // 2, 15):  # cut after many lines, or inside the first block
        damaged = tmp_path / f"cut{cut}.txt.gz"
        damaged.write_bytes(whole[:cut])
        message = refused("--input", damaged, "--out", tmp_path / "o")
        assert f"{damaged} is cut short or damaged" in message and "gzip -t" in message
        assert not (tmp_path / "o").exists()

    text = write_sentences(tmp_path / "s.txt", 60)
    unwritable = unwritable_folder(tmp_path)
    for out in (unwritable, os.path.join(unwritable, "new")):
        assert f"cannot write into --out {out} (" in refused("--input", text, "--out", out)
    assert os.path.isdir(unwritable) and not os.listdir(unwritable)
