"""--tensorboard-logdir writes event files that hold the plugin's metrics, read back with TensorBoard's reader:
the values the JSON log records, at the same updates."""
import pytest

from helpers import train

UPDATES = 20


def series(logdir, subset, metric):
    """{step: value} of one metric in the event files of one subset (train_inner, train, valid)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir / subset))
    events.Reload()
    return {event.step: event.value for event in events.Scalars(metric)} if metric in events.Tags()["scalars"] else None


def logged(log, subset, metric):
    """{update: value} of one metric in the JSON log's records of one subset (train_inner's have no prefix)."""
    prefix = "" if subset == "train_inner" else f"{subset}_"
    return {int(r[f"{prefix}num_updates"]): float(r[prefix + metric]) for r in log
            if prefix + metric in r and f"{prefix}num_updates" in r}


@pytest.mark.parametrize("arch,criterion,flags,expected", [
    ("lstm_wae_tiny", "wae_mmd", [], {"mmd", "weighted_mmd", "nll_loss", "loss"}),
    ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "linear", "--kl-anneal-steps", "20"],
     {"kl", "kl_weight", "nll_loss", "active_units"}),
])
def test_tensorboard_event_files_hold_the_logged_metrics(toy_data, tmp_path, arch, criterion, flags, expected):
    logdir = tmp_path / "tb"
    log = train(toy_data, tmp_path / "ckpt", "--tensorboard-logdir", logdir, "--max-update", UPDATES, "--no-save",
                "--log-interval", "1", *flags, arch=arch, criterion=criterion)
    # every update (log interval 1), the epoch's average where the run stopped, and the validation there
    for subset, steps in (("train_inner", list(range(1, UPDATES + 1))), ("train", [UPDATES]), ("valid", [UPDATES])):
        for metric in expected:
            values = series(logdir, subset, metric)
            assert values is not None, (subset, metric)
            assert sorted(values) == steps, (subset, metric)
            assert values == pytest.approx(logged(log, subset, metric), rel=1e-6), (subset, metric)
    if criterion == "vae_kl":  # linear from 0 to 1 over 20 updates, at each update's count before its step
        schedule = {step: min(1.0, (step - 1) / 20) for step in range(1, UPDATES + 1)}
        assert series(logdir, "train_inner", "kl_weight") == pytest.approx(schedule, abs=5e-5)
