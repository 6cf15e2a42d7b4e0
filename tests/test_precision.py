"""Half precision on the CPU, where float16 and bfloat16 tensors run as they do on a GPU: the criterions
in every precision against float32, and fairseq-generate --fp16 through the real command."""
import copy

import pytest
import torch

from helpers import USER_DIR, build, first_batch, generated_sentences, run

#: The unit roundoff of each format: the relative rounding error of one stored number.
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
PRECISIONS = {"float16": (torch.float16, False), "bfloat16": (torch.bfloat16, False),
              "float32 under bfloat16 autocast": (torch.float32, True)}


@pytest.mark.parametrize("arch,criterion,flags", [
    ("lstm_ae_tiny", "ae_cross_entropy", []),
    ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "2"]),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "10"]),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-kernel", "rbf"]),
    ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"]),
    ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01"]),
])
@pytest.mark.parametrize("batch_size", [128, 512])
def test_every_precision_logs_the_float32_values(toy_data, arch, criterion, flags, batch_size):
    """A half-precision network computes codes and logits with a relative error of about one unit
    roundoff u of its format (2^-11 for float16, 2^-8 for bfloat16; under autocast the matrix products
    run in bfloat16). The losses, penalties and statistics are then computed in float32, so what they
    add is float32's error alone. The MMD estimate is a difference of kernel means about ten times
    larger than itself, which magnifies the codes' error about tenfold (measured: up to 4.5u): each
    logged value stays within 16u of the float32 one, relative to its largest entry (sums of posterior
    means cancel). Computed in the model's precision instead, float16's kernel sum passes 65504 near
    batch 124 (NaN) and bfloat16's MMD at batch 128 reads 0.0000 against float32's 0.06."""
    task, model, crit = build(toy_data, arch, criterion, *flags)
    sample = first_batch(task, batch_size)

    def step(dtype, autocast):
        network = copy.deepcopy(model).to(dtype).train()
        crit.set_training_progress(98, 1)
        crit.set_training_progress(3, 1)  # a new update: the same draws for every precision
        # oneDNN builds no bfloat16 LSTM under autocast on a CPU without native bfloat16 (AVX-512 BF16, AMX:
        # "could not create a primitive descriptor", measured on an AVX2 AMD EPYC): torch's own kernels run it
        with torch.backends.mkldnn.flags(enabled=not autocast), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _, log = crit(network, sample)
        loss.backward()
        assert loss.dtype == torch.float32
        for name, parameter in network.encoder.named_parameters():
            if parameter.requires_grad:
                assert torch.isfinite(parameter.grad).all() and parameter.grad.any(), name
        return log

    reference = step(torch.float32, False)
    for name, (dtype, autocast) in PRECISIONS.items():
        log = step(dtype, autocast)
        assert list(log) == list(reference), name
        tolerance = 16 * UNIT_ROUNDOFF[torch.bfloat16 if autocast else dtype]
        for key, value in log.items():
            value, expected = torch.as_tensor(value).double(), torch.as_tensor(reference[key]).double()
            assert torch.isfinite(value).all(), (name, key)
            scale = expected.abs().max().clamp_min(1e-6)
            assert ((value - expected).abs() <= tolerance * scale).all(), (name, key, value, expected)


def test_fairseq_generate_fp16_samples_the_prior_with_half_precision_codes(overfit_dae, tmp_path):
    # fairseq-generate --fp16 halves the model; --cpu keeps it on the CPU, where half precision runs too
    data, checkpoints, _ = overfit_dae
    common = ["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples", "40",
              "--path", checkpoints / "checkpoint_last.pt", "--cpu", "--seed", "3", "--beam", "1",
              "--batch-size", "16", "--max-len-b", "30"]
    half = generated_sentences(run([*common, "--fp16"]).stdout)
    full = generated_sentences(run(common).stdout)
    assert len(half) == len(full) == 40
    # the same codes, rounded to float16: greedy decoding may part ways only where two words nearly tie
    assert sum(a == b for a, b in zip(half, full)) >= 30, list(zip(half, full))


def test_a_non_finite_float32_update_stops_training_with_the_criterions_message(toy_data, tmp_path):
    # no loss scaler in float32: fairseq's trainer stops on the non-finite gradients and re-runs the update
    # under its NaN detector, where the task has the criterion name what overflowed
    from helpers import train_command

    result = run(train_command(toy_data, tmp_path / "ckpt", "--mmd-lambda", "1e38", "--max-update", "3"), check=False)
    assert result.returncode != 0
    assert "FloatingPointError: non-finite loss at update 1 (cross-entropy" in result.stderr, result.stderr[-2000:]
