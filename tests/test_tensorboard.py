"""--tensorboard-logdir writes event files that hold the plugin's metrics, read back with TensorBoard's reader."""
import pytest

from helpers import train


@pytest.mark.parametrize("arch,criterion,flags,expected", [
    ("lstm_wae_tiny", "wae_mmd", [], {"mmd", "weighted_mmd", "nll_loss", "loss"}),
    ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "linear", "--kl-anneal-steps", "20"],
     {"kl", "kl_weight", "nll_loss", "active_units"}),
])
def test_tensorboard_event_files_hold_the_metrics(toy_data, tmp_path, arch, criterion, flags, expected):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    train(toy_data, tmp_path / "ckpt", "--tensorboard-logdir", logdir, "--max-update", "20", "--no-save", *flags,
          arch=arch, criterion=criterion)
    for subset in ("train", "valid"):
        events = EventAccumulator(str(logdir / subset))
        events.Reload()
        scalars = set(events.Tags()["scalars"])
        assert expected <= scalars, (subset, sorted(scalars))
        values = [event.value for event in events.Scalars("nll_loss")]
        assert values and all(v > 0 for v in values)
