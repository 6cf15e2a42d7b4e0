"""End to end through the real fairseq-preprocess / fairseq-train / fairseq-generate CLI."""
import math
import os
import re
import shutil

import pytest
import torch

from helpers import REPO, USER_DIR, built_once, preprocess, run, train, train_command, validate_record

TRAINING = {
    "dae": ("lstm_ae_tiny", "ae_cross_entropy", [], []),
    "vae": ("lstm_vae_tiny", "vae_kl",
            ["--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "60", "--kl-anneal-steepness", "0.05",
             "--kl-anneal-stop-at-peak", "--word-dropout-increment", "0.05"], ["kl", "kl_weight", "weighted_kl",
                                                                                "active_units", "posterior_var"]),
    # bidirectional, as the authors' encoder: the one-way tiny encoder's reconstructions after 8 epochs
    # were barely closer to their own inputs than to others (corpus BLEU 6.2 against 4.4), this one's are
    "wae": ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "10", "--encoder-bidirectional"],
            ["mmd", "weighted_mmd", "mmd_weight"]),
    "swae": ("lstm_vae_tiny", "wae_mmd", ["--mmd-lambda", "3", "--kl-variance-penalty", "1"],
             ["mmd", "variance_kl", "posterior_var"]),
}


@pytest.fixture(scope="session")
def trained(toy_data, tmp_path_factory):
    """Each flavour trained for 8 epochs (304 updates) on the toy data: {name: (checkpoint dir, log)}.
    Shared by every worker: a test that trains in one of these folders works on a copy."""
    def build(folder):
        return {name: (folder / name, train(toy_data, folder / name, *flags, arch=arch, criterion=criterion, epochs=8))
                for name, (arch, criterion, flags, _) in TRAINING.items()}

    return built_once(tmp_path_factory, "cli-trained", build)


@pytest.mark.parametrize("name", list(TRAINING))
def test_training_lowers_validation_loss_and_logs_the_metrics(trained, name):
    save_dir, log = trained[name]
    valid = [r for r in log if "valid_loss" in r]
    train_records = [r for r in log if "train_loss" in r]
    assert len(valid) == 8 and train_records[-1]["train_num_updates"] == "304"
    assert float(valid[-1]["valid_nll_loss"]) < 0.7 * float(valid[0]["valid_nll_loss"])
    assert float(valid[-1]["valid_loss"]) < float(valid[0]["valid_loss"])
    for metric in ["nll_loss", "ppl", "word_dropout"] + TRAINING[name][3]:
        assert f"train_{metric}" in train_records[-1] and f"valid_{metric}" in valid[-1], metric
    # every validation sentence counted: 100 sentences in batches of 32
    assert float(valid[-1]["valid_bsz"]) == pytest.approx(100 / 4)


def epoch_batch_sizes(data, epochs, batch_size=32):
    """The sentences in each update of each epoch, in the order fairseq-train (--seed 1) gives them."""
    from helpers import configure

    task, _ = configure(data, "lstm_vae_tiny", "vae_kl")
    task.load_dataset("train")
    batches = task.get_batch_iterator(task.dataset("train"), max_sentences=batch_size, seed=1)
    return [[len(batch["id"]) for batch in batches.next_epoch_itr(shuffle=True)] for _ in range(epochs)]


def test_vae_schedules_show_in_the_log_and_the_checkpoint(trained, toy_data):
    save_dir, log = trained["vae"]
    epochs = [r for r in log if "train_loss" in r]
    assert [float(r["train_word_dropout"]) for r in epochs] == pytest.approx([0.05 * i for i in range(8)])
    from fairseq_wae.schedules import PeakStopper

    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert state["model"]["schedule_state._extra_state"].shape == (len(PeakStopper.FIELDS),)
    saved = PeakStopper()
    saved.load_state_dict(state["model"]["schedule_state._extra_state"])

    # lambda(t) = 1 / (1 + exp(-0.05 (t - 60))) at each update's count t before its step, until the
    # stop-at-peak rule froze it (at the end of the update whose weight it keeps), averaged over each
    # epoch's sentences as the log averages them
    def schedule(t):
        return 1 / (1 + math.exp(-0.05 * (t - 60)))

    frozen_at = math.inf
    if saved.frozen_weight is not None:
        frozen_at = next(t for t in range(304) if schedule(t) == pytest.approx(saved.frozen_weight, rel=1e-12))
    expected, t = [], 0
    for sizes in epoch_batch_sizes(toy_data, 8):
        assert sum(sizes) == 1200
        expected.append(sum(size * schedule(min(t + i, frozen_at)) for i, size in enumerate(sizes)) / 1200)
        t += len(sizes)
    assert t == 304
    assert [float(r["train_kl_weight"]) for r in epochs] == pytest.approx(expected, abs=5e-5)  # 4 decimals


def test_fairseq_validate_gives_the_loss_the_training_validated(toy_data, tmp_path):
    """The annealed KL weight is that of the checkpoint's last update, not of update 0."""
    log = train(toy_data, tmp_path, "--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "60", "--kl-anneal-steepness",
                "0.05", arch="lstm_vae_tiny", criterion="vae_kl")
    last = [r for r in log if "valid_loss" in r][-1]
    out = run(["fairseq-validate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
               tmp_path / "checkpoint_last.pt", "--valid-subset", "valid", "--batch-size", "32", "--cpu",
               "--log-format", "json"])
    validated = validate_record(out)
    assert float(last["valid_kl_weight"]) > 0.5  # at update 114; at update 0 it is 0.047
    for key in ("valid_loss", "valid_nll_loss", "valid_kl", "valid_kl_weight"):
        assert validated[key] == last[key], key


def test_the_checkpoint_reloads_and_decodes_every_test_sentence_closer_to_its_own_input(trained, toy_data):
    import sacrebleu

    save_dir, _ = trained["wae"]
    out = run(["fairseq-generate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
               "--path", save_dir / "checkpoint_best.pt", "--gen-subset", "test", "--beam", "1", "--cpu",
               "--batch-size", "8"]).stdout
    lines = out.splitlines()
    references = {int(l.split("\t")[0][2:]): l.split("\t")[1] for l in lines if l.startswith("T-")}
    hypotheses = {int(l.split("\t")[0][2:]): l.split("\t")[2] for l in lines if l.startswith("H-")}
    test = (toy_data.parent / "test.txt").read_text().splitlines()
    assert sorted(hypotheses) == list(range(101)) and [references[i] for i in range(101)] == test
    # 8 epochs on 1200 sentences: far from exact (BLEU about 17), yet the outputs are reconstructions of
    # their own inputs, much closer to them than to the other test sentences (references shifted by one)
    outputs = [hypotheses[i] for i in range(101)]
    own = sacrebleu.corpus_bleu(outputs, [test], tokenize="none").score
    shifted = sacrebleu.corpus_bleu(outputs, [test[1:] + test[:1]], tokenize="none").score
    assert own > 1.5 * shifted, (own, shifted)


def test_training_resumes_from_the_last_checkpoint(trained, toy_data, tmp_path):
    save_dir = shutil.copytree(trained["wae"][0], tmp_path / "wae")
    arch, criterion, flags, _ = TRAINING["wae"]
    log = train(toy_data, save_dir, *flags, arch=arch, criterion=criterion, epochs=9)
    assert [r["epoch"] for r in log if "train_loss" in r] == [9]


def test_a_resumed_stop_at_peak_vae_keeps_the_weight_frozen_at_the_peak(trained, toy_data, tmp_path):
    """From a checkpoint written the old way too (the model state's values not all tensors)."""
    from fairseq_wae.models.dictionary_binding import BINDING_KEY, saved_fingerprint
    from fairseq_wae.schedules import PeakStopper

    save_dir = shutil.copytree(trained["vae"][0], tmp_path / "vae")
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    saved = PeakStopper()
    saved.load_state_dict(state["model"]["schedule_state._extra_state"])
    assert saved.first_weight < 0.1
    # as if the rule had frozen lambda at 0.3; the schedule itself is at 1.0 by update 304
    saved.frozen_weight = 0.3
    # written as fairseq-wae wrote both before every value of a model state was a tensor: as dicts
    state["model"]["schedule_state._extra_state"] = {key: getattr(saved, key) for key in PeakStopper.FIELDS}
    state["model"][BINDING_KEY] = saved_fingerprint(state["model"][BINDING_KEY])
    torch.save(state, save_dir / "checkpoint_last.pt")
    arch, criterion, flags, _ = TRAINING["vae"]
    log = train(toy_data, save_dir, *flags, arch=arch, criterion=criterion, epochs=9)
    epochs = [r for r in log if "train_loss" in r]
    assert [r["epoch"] for r in epochs] == [9] and float(epochs[0]["train_kl_weight"]) == 0.3
    resumed = PeakStopper()
    resumed_state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)["model"]
    resumed.load_state_dict(resumed_state["schedule_state._extra_state"])
    assert vars(resumed) == vars(saved)


def test_resuming_a_stop_at_peak_vae_without_saved_state_refuses_instead_of_losing_the_frozen_weight(
        trained, toy_data, tmp_path):
    save_dir = shutil.copytree(trained["vae"][0], tmp_path / "vae")
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    del state["model"]["schedule_state._extra_state"]  # as written before the model carried it
    torch.save(state, save_dir / "checkpoint_last.pt")
    before = (save_dir / "checkpoint_last.pt").read_bytes()
    arch, criterion, flags, _ = TRAINING["vae"]
    result = run(train_command(toy_data, save_dir, *flags, arch=arch, criterion=criterion, epochs=9), check=False)
    assert result.returncode != 0
    assert "resumes at update 304" in result.stderr and "frozen_weight" in result.stderr
    assert (save_dir / "checkpoint_last.pt").read_bytes() == before


def test_dae_overfits_fifty_sentences(overfit_dae):
    data, save_dir, log = overfit_dae
    assert float([r for r in log if "valid_loss" in r][-1]["valid_nll_loss"]) < 0.05


def test_user_dir_as_relative_path_and_as_installed_package(toy_data, tmp_path):
    common = ["--task", "sentence_autoencoding", "--arch", "lstm_ae_tiny", "--criterion", "ae_cross_entropy",
              "--optimizer", "adam", "--lr", "0.001", "--batch-size", "64", "--max-update", "2", "--cpu",
              "--no-save", "--disable-validation"]
    run(["fairseq-train", toy_data, "--user-dir", "fairseq_wae", *common], cwd=REPO)
    import fairseq_wae

    installed = os.path.dirname(fairseq_wae.__file__)  # where pip put it (the repository's folder when editable)
    run(["fairseq-train", toy_data, "--user-dir", installed, *common], cwd=tmp_path)


def test_a_dictionary_from_other_data_is_refused(toy_data, tmp_path):
    other = preprocess(tmp_path, {"train": ["just a few words ."] * 3, "valid": ["a few ."]})
    (toy_data.parent / "mixed").mkdir(exist_ok=True)
    mixed = toy_data.parent / "mixed"
    for name in os.listdir(toy_data):
        target = (other if name == "dict.txt" else toy_data) / name
        if not (mixed / name).exists():
            os.symlink(target, mixed / name)
    result = run(["fairseq-train", mixed, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                  "--arch", "lstm_ae_tiny", "--criterion", "ae_cross_entropy", "--optimizer", "adam",
                  "--batch-size", "8", "--max-update", "1", "--cpu", "--no-save"], check=False)
    assert result.returncode != 0
    assert "does not belong to this data" in result.stderr
    assert re.search(r"(train|valid)\.bin holds token id \d+ but the dictionary has 16 entries", result.stderr)


def test_a_missing_split_names_the_file(overfit_dae):
    data, ckpt, _ = overfit_dae
    result = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                  "--path", ckpt / "checkpoint_best.pt", "--gen-subset", "valid7", "--cpu"], check=False)
    assert result.returncode != 0
    assert f"split 'valid7' not found: no {data / 'valid7'}.bin/.idx in {data}" in result.stderr


def test_frozen_pretrained_embeddings_train_and_the_checkpoint_outlives_the_file(toy_data, tmp_path):
    words = [line.split()[0] for line in (toy_data / "dict.txt").read_text().splitlines()[:20]]
    vectors = tmp_path / "glove.txt"
    vectors.write_text("".join(f"{w} " + " ".join(f"{(i + j) % 7 / 7:.3f}" for j in range(32)) + "\n"
                               for i, w in enumerate(words)))
    log = train(toy_data, tmp_path / "ckpt", "--embed-path", vectors, "--freeze-embed", arch="lstm_wae_tiny",
                epochs=1)
    assert log
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=True)
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(str(toy_data / "dict.txt"))
    row = state["model"]["encoder.embed_tokens.weight"][dictionary.index(words[3])]
    assert torch.allclose(row, torch.tensor([(3 + j) % 7 / 7 for j in range(32)]), atol=1e-3)  # loaded, frozen
    vectors.unlink()
    out = run(["fairseq-generate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
               "--path", tmp_path / "ckpt" / "checkpoint_last.pt", "--gen-subset", "valid", "--cpu"]).stdout
    assert sum(line.startswith("H-") for line in out.splitlines()) == 100
