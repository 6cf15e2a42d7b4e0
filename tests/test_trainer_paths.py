"""The trainer-level paths a GPU user runs, through the real fairseq-train on the CPU: --bf16 and --fp16
(fairseq's own optimizers and, for --fp16, its loss scaler), the hydra route to bfloat16, and validation
(fairseq-train's logged valid loss against fairseq-validate on the saved checkpoint; a non-finite one
refused in every precision)."""
import math

import pytest

from helpers import USER_DIR, parse_json_log, run, train, validate_record
from test_hydra import hydra_train

FLAVOURS = {
    "dae": ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.2"]),
    "vae": ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "2"]),
    "wae": ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "10"]),
    "swae": ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"]),
    "aae": ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01"]),
}
#: Each logged value of a half-precision run at updates 1-3 stays within this many unit roundoffs of
#: float32's, relative: the network's codes and scores carry about 1u, the MMD magnifies that about
#: tenfold (tests/test_precision.py), and two updates add their rounding; a run with another seed
#: differs by far more (checked below, so the tolerance can fail).
ROUNDOFFS = 16
UNIT_ROUNDOFF = {"--bf16": 2.0**-8}
#: the gradient norm among them: the loss at initialisation hardly depends on the weights (about log V per
#: token), so it alone could not tell two seeds apart at this tolerance
COMPARED = ("loss", "nll_loss", "mmd", "kl", "variance_kl", "adversarial", "logvar_l1", "gnorm")


def first_updates(tmp_path, flavour, *flags, seed=1):
    arch, criterion, extra = FLAVOURS[flavour]
    records = train(tmp_path / "data", tmp_path / f"ckpt{len(flags)}{seed}", *extra, *flags, "--max-update", "3",
                    "--log-interval", "1", "--no-save", "--disable-validation", "--seed", seed, "--dropout", "0.2",
                    arch=arch, criterion=criterion, batch_size=64)
    return [r for r in records if "num_updates" in r and "loss" in r]


def largest_relative_difference(a, b):
    return max(abs(float(x[key]) - float(y[key])) / max(abs(float(x[key])), 1e-3)
               for x, y in zip(a, b) for key in COMPARED if key in x)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_half_precision_trains_every_flavour_through_fairseq_train_with_float32_numbers(toy_data, tmp_path, flavour):
    """fairseq-train --bf16 (fairseq's parser turns it into --tpu; the task sets that back where there is no
    torch_xla) trains each flavour end to end, logging float32's numbers within the stated tolerance."""
    (tmp_path / "data").symlink_to(toy_data)
    reference = first_updates(tmp_path, flavour)
    assert [int(r["num_updates"]) for r in reference] == [1, 2, 3]
    other_seed = first_updates(tmp_path, flavour, seed=2)
    for precision, u in UNIT_ROUNDOFF.items():
        records = first_updates(tmp_path, flavour, precision)
        assert [int(r["num_updates"]) for r in records] == [1, 2, 3], precision
        assert all(math.isfinite(float(r["loss"])) for r in records)
        assert largest_relative_difference(reference, records) <= ROUNDOFFS * u, (precision, reference, records)
        # the control: the tolerance is tighter than what any two runs give
        assert largest_relative_difference(reference, other_seed) > ROUNDOFFS * u


@pytest.mark.parametrize("flag", ["--fp16", "--amp"])
def test_fp16_and_amp_are_refused_on_the_cpu_naming_the_route_that_works(toy_data, tmp_path, flag):
    """fairseq's fp16 optimizer meets an overflow with CUDA tensors (measured: the first one stops the run),
    and its --amp autocast and scaler are CUDA's (measured: float32's numbers to the digit)."""
    result = run(["fairseq-train", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch",
                  "lstm_wae_tiny", "--criterion", "wae_mmd", "--optimizer", "adam", "--batch-size", "16", "--cpu",
                  "--no-save", flag], check=False)
    assert result.returncode != 0
    assert f"{flag}" in result.stderr and "on the CPU: fairseq cannot train so" in result.stderr
    assert "train in bfloat16 with --bf16" in result.stderr


def test_the_hydra_route_to_bfloat16_trains(toy_data, tmp_path):
    result = hydra_train(tmp_path, toy_data, "lstm_wae_tiny", {"_name": "wae_mmd"}, "common.bf16=true",
                         "common.log_format=json", "common.log_interval=1")
    records = [r for r in parse_json_log(result.stdout + result.stderr) if "num_updates" in r and "loss" in r]
    assert [int(r["num_updates"]) for r in records][-1] == 3
    assert all(math.isfinite(float(r["loss"])) for r in records)


@pytest.mark.parametrize("flavour,extra", [
    ("wae", []), ("vae", ["--word-dropout", "0.3"]), ("aae", ["--noise-drop", "0.2"]),
])
def test_the_valid_loss_fairseq_train_logs_is_what_fairseq_validate_computes_on_its_checkpoint(
        toy_data, tmp_path, flavour, extra):
    """Validation draws (the MMD's prior sample, the discriminator's) are keyed by the validation batch,
    not by the training forwards before them: the logged valid loss is reproducible from the checkpoint."""
    arch, criterion, flags = FLAVOURS[flavour]
    records = train(toy_data, tmp_path, *flags, *extra, "--max-update", "13", "--dropout", "0.2",
                    arch=arch, criterion=criterion, epochs=1, batch_size=100)
    logged = [r for r in records if "valid_loss" in r][-1]
    validated = run(["fairseq-validate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                     "--path", tmp_path / "checkpoint_last.pt", "--batch-size", "100", "--cpu", "--log-format", "json"])
    again = validate_record(validated)
    assert again["valid_loss"] == logged["valid_loss"] and again["valid_nll_loss"] == logged["valid_nll_loss"]


@pytest.mark.parametrize("trained_with", [[], ["--fp16"]], ids=["float32", "fp16"])
def test_a_non_finite_validation_loss_is_refused_in_every_precision(toy_data, tmp_path, trained_with):
    """A loss scaler takes training overflows, never validation's: fairseq-validate on a checkpoint whose
    MMD weight overflows float32 is refused naming validation, also when the checkpoint says it trained
    under --fp16 (written into the checkpoint: --fp16 cannot train on the CPU)."""
    import torch

    train(toy_data, tmp_path, "--max-update", "1", epochs=1)
    checkpoint = tmp_path / "checkpoint_last.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["cfg"]["criterion"]["mmd_lambda"] = 1e38
    state["cfg"]["common"]["fp16"] = bool(trained_with)
    torch.save(state, checkpoint)
    result = run(["fairseq-validate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                  checkpoint, "--batch-size", "100", "--cpu", *trained_with], check=False)
    assert result.returncode != 0
    assert "non-finite loss at validation" in result.stderr, result.stderr[-2000:]
