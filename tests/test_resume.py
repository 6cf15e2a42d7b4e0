"""A resumed fairseq-train run repeats the uninterrupted one, loss for loss (fairseq's own standard on CPU)."""
import pytest

from helpers import parse_json_log, preprocess, run, toy_sentences, train_command

FLAVOURS = {
    # word dropout grows each epoch, so the interruptions fall mid-schedule
    "dae": ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.1", "--word-dropout-increment", "0.1"]),
    "wae": ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "10"]),
    # annealed so that lambda*KL peaks and the weight freezes near update 23 (after the epoch-boundary
    # interruption at 20, before the mid-epoch one at 35)
    "vae": ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "20",
                                        "--kl-anneal-steepness", "0.15", "--kl-anneal-stop-at-peak",
                                        "--word-dropout-increment", "0.05"]),
    # BN-VAE: the running statistics move once an update, from sums that no checkpoint holds
    "bn-vae": ("lstm_vae_tiny", "vae_kl", ["--bn-posterior-mean", "0.6"]),
    # the discriminator's weights and Adam state come back from the checkpoint's "criterion" entry; the
    # input noise's draws are keyed by update and micro-batch
    "daae": ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01", "--noise-drop", "0.3", "--noise-blank", "0.1",
                                      "--noise-substitute", "0.1", "--noise-shuffle-distance", "2"]),
}
COMPARED = ("loss", "nll_loss", "kl", "kl_weight", "mmd", "word_dropout", "adversarial", "discriminator_loss")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """160 training sentences: 10 updates an epoch at batch 16."""
    sentences = toy_sentences(200, seed=9)
    return preprocess(tmp_path_factory.mktemp("resume"), {"train": sentences[:160], "valid": sentences[160:]})


def updates(save_dir, data, flavour, *flags):
    """{update: logged values} of every update (and validation) of one 50-update run through the real
    CLI that keeps a checkpoint at each epoch's end and at update 35, mid-epoch; with dropout, whose
    masks are keyed by update and micro-batch like every other draw."""
    arch, criterion, options = FLAVOURS[flavour]
    command = train_command(data, save_dir, *options, "--seed", "3", "--log-interval", "1", "--dropout", "0.2",
                            "--save-interval-updates", "35", *flags,
                            arch=arch, criterion=criterion, epochs=5, batch_size=16)
    result = run([arg for arg in command if arg != "--no-epoch-checkpoints"])
    by_update = {}
    for record in parse_json_log(result.stdout + result.stderr):
        if "num_updates" in record and "loss" in record:
            by_update[int(record["num_updates"])] = {k: record[k] for k in COMPARED if k in record}
        elif "valid_loss" in record:
            by_update[f"valid {record['epoch']}"] = {k: record[f"valid_{k}"] for k in COMPARED
                                                     if f"valid_{k}" in record}
    return by_update


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_resuming_at_an_epoch_boundary_and_mid_epoch_repeats_the_uninterrupted_run(small_data, tmp_path, flavour):
    whole = updates(tmp_path / "whole", small_data, flavour)
    assert [u for u in whole if isinstance(u, int)] == list(range(1, 51))

    # restarted from the uninterrupted run's own checkpoints: after epoch 2 and at update 35 of epoch 4
    boundary = updates(tmp_path / "boundary", small_data, flavour, "--restore-file", tmp_path / "whole" / "checkpoint2.pt")
    mid = updates(tmp_path / "mid", small_data, flavour, "--restore-file", tmp_path / "whole" / "checkpoint_4_35.pt")
    assert [u for u in boundary if isinstance(u, int)] == list(range(21, 51))
    assert [u for u in mid if isinstance(u, int)] == list(range(36, 51))
    for resumed in (boundary, mid):
        for update, values in resumed.items():
            assert values == whole[update], (update, values, whole[update])

    if flavour == "vae":  # the peak stopper froze the weight inside the run, after the first interruption
        weights = [float(whole[u]["kl_weight"]) for u in range(1, 51)]
        frozen = weights[-1]
        assert 0.2 < frozen < 0.9 and weights[20] < frozen and weights[-15:] == [frozen] * 15
    if flavour == "dae":
        assert [float(whole[u]["word_dropout"]) for u in (5, 25, 45)] == pytest.approx([0.1, 0.3, 0.5])
