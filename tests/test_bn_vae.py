"""BN-VAE (--bn-posterior-mean): the batch-normalised posterior mean keeps each batch's KL above
0.5 * latent_dim * gamma^2, matches torch's BatchNorm in training, and takes a one-sentence batch."""
import pytest
import torch

from helpers import build, parse_json_log, run, train_command
from fairseq_wae.models.latent import FixedScaleBatchNorm
from fairseq_wae.penalties import gaussian_kl

GAMMA = 0.6


def kl_only_descent(task, model, steps=40):
    """Minimises the KL term alone (the pull towards collapse, with nothing against it) on batches of
    16; returns each batch's mean KL, measured before its step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    task.load_dataset("train")
    dataset = task.dataset("train")
    model.train()
    kls = []
    for step in range(steps):
        batch = dataset.collater([dataset[i] for i in range(16 * (step % 75), 16 * (step % 75) + 16)])["net_input"]
        latent = model.encoder(batch["src_tokens"], batch["src_lengths"])
        kl = gaussian_kl(latent["mean"], latent["logvar"]).sum(-1).mean()
        optimizer.zero_grad()
        kl.backward()
        optimizer.step()
        kls.append(kl.item())
    return kls


@pytest.mark.parametrize("arch", ["lstm_vae_tiny", "transformer_vae_tiny"])
def test_no_batch_kl_falls_below_the_bound_while_the_kl_alone_is_minimised(toy_data, arch):
    task, model, _ = build(toy_data, arch, "vae_kl", "--bn-posterior-mean", str(GAMMA))
    bound = 0.5 * model.latent_dim * GAMMA**2
    kls = kl_only_descent(task, model)
    assert min(kls) >= bound * (1 - 1e-4), (min(kls), bound)
    assert kls[-1] < 1.1 * bound  # the descent went as far down as the bound lets it
    # without the batch norm the same descent collapses the posterior far below that
    task, plain, _ = build(toy_data, arch, "vae_kl")
    assert kl_only_descent(task, plain)[-1] < 0.2 * bound


def test_in_training_it_is_torchs_batch_norm_at_a_fixed_scale_and_a_lone_sentence_uses_the_running_statistics():
    torch.manual_seed(0)
    norm = FixedScaleBatchNorm(5, GAMMA)
    with torch.no_grad():
        norm.shift.copy_(torch.randn(5))
    reference = torch.nn.BatchNorm1d(5, eps=1e-30, momentum=norm.momentum, affine=False)  # no eps: its docstring
    for _ in range(3):  # an update of one batch each
        x = torch.randn(8, 5) * 3 + 1
        assert torch.allclose(norm(x), GAMMA * reference(x) + norm.shift, atol=1e-5)
        norm.end_update()
    assert torch.allclose(norm.running_mean, reference.running_mean) and torch.allclose(norm.running_var,
                                                                                         reference.running_var)
    # one sentence: no batch variance (torch's BatchNorm raises here); normalised by the running statistics,
    # which an update of one sentence leaves as they were
    lone = torch.randn(1, 5)
    running = norm.running_mean.clone(), norm.running_var.clone()
    trained = norm(lone)
    norm.end_update()
    reference.eval()
    assert torch.allclose(trained, GAMMA * reference(lone) + norm.shift, atol=1e-5)
    assert torch.equal(norm.running_mean, running[0]) and torch.equal(norm.running_var, running[1])
    norm.eval()
    assert torch.equal(norm(lone), trained)
    # half precision in, half out, computed in float32
    half = norm.half()(lone.half())
    assert half.dtype == torch.float16 and torch.allclose(half.float(), trained, atol=1e-2)


def test_the_running_statistics_move_once_an_update_from_every_sentence_of_its_micro_batches():
    """As a synchronised BatchNorm gathers them: the micro-batches of an update (a lone sentence included)
    move the running statistics as one batch of all their sentences would, once; a padding forward adds
    nothing, and an update that fairseq's trainer tries again starts its sums afresh (the task calls
    ``begin_update`` at the first micro-batch of every try)."""
    from fairseq_wae.models.latent import padding_adds_nothing

    torch.manual_seed(1)
    norm, reference = FixedScaleBatchNorm(5, GAMMA), torch.nn.BatchNorm1d(5, momentum=0.1, affine=False)
    parts = [torch.randn(n, 5) * 2 - 1 for n in (7, 1, 4)]
    for _ in range(2):
        before = norm.running_mean.clone(), norm.running_var.clone()
        norm.begin_update()
        norm(torch.randn(6, 5) * 5)  # a try the trainer gave up (an overflow): no optimizer step, no end_update
        norm.begin_update()
        for part in parts:
            norm(part)
        with padding_adds_nothing(norm):
            norm(torch.randn(9, 5) * 10)
        assert torch.equal(norm.running_mean, before[0]) and torch.equal(norm.running_var, before[1])  # not yet
        norm.end_update()
        reference(torch.cat(parts))
        assert torch.allclose(norm.running_mean, reference.running_mean, atol=1e-6, rtol=0)
        assert torch.allclose(norm.running_var, reference.running_var, atol=1e-6, rtol=0)
    assert not torch.allclose(norm.running_var, torch.ones(5), atol=0.1)  # they moved: the comparison can fail


def test_fairseq_train_logs_no_kl_below_the_bound_and_a_one_sentence_batch_uses_the_running_statistics(toy_data,
                                                                                                         tmp_path):
    gamma, latent_dim = 0.5, 16

    def train_bn_vae(save_dir, *flags):  # 1200 sentences in batches of 11: the last batch holds one sentence
        result = run(train_command(toy_data, save_dir, "--bn-posterior-mean", str(gamma), "--log-interval", "1",
                                   *flags, arch="lstm_vae_tiny", criterion="vae_kl", epochs=2, batch_size=11))
        return [r for r in parse_json_log(result.stdout + result.stderr) if "kl" in r and "num_updates" in r]

    records = train_bn_vae(tmp_path / "whole")
    assert len(records) == 220
    batches = [float(r["kl"]) for r in records if float(r["bsz"]) > 1]
    assert min(batches) >= 0.5 * latent_dim * gamma**2 * (1 - 1e-3)
    lone = [int(r["num_updates"]) for r in records if float(r["bsz"]) == 1]
    assert len(lone) == 2 and lone[0] <= 110 < lone[1]  # one in each epoch
    update = lone[0]
    assert update > 1  # (with --seed 1; at update 1 there would be no checkpoint before it)

    # the same run again up to that update, keeping the weights and running statistics it started from
    again = train_bn_vae(tmp_path / "again", "--max-update", str(update), "--save-interval-updates", str(update - 1))
    logged = next(r for r in again if int(r["num_updates"]) == update)
    assert float(logged["bsz"]) == 1
    task, model, _ = build(toy_data, "lstm_vae_tiny", "vae_kl", "--bn-posterior-mean", str(gamma))
    state = torch.load(tmp_path / "again" / f"checkpoint_1_{update - 1}.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    task.load_dataset("train")
    dataset = task.dataset("train")
    batch = [b for b in task.get_batch_iterator(dataset, max_sentences=11).frozen_batches if len(b) == 1]
    sentence = dataset.collater([dataset[int(batch[0][0])]])["net_input"]
    head = model.encoder.latent_head
    seen = {}
    head.mean_norm.register_forward_hook(lambda module, inputs, output: seen.update(raw_mean=inputs[0]))
    head.to_logvar.register_forward_hook(lambda module, inputs, output: seen.update(logvar=output))
    model.train()
    with torch.no_grad():
        model.encoder(sentence["src_tokens"], sentence["src_lengths"])
    # normalised by the running statistics the update started from, as in evaluation
    norm = "encoder.latent_head.mean_norm."
    mean = gamma * (seen["raw_mean"] - state[norm + "running_mean"]) / state[norm + "running_var"].sqrt() \
        + state[norm + "shift"]
    expected = gaussian_kl(mean, seen["logvar"]).sum().item()
    assert float(logged["kl"]) == pytest.approx(expected, abs=1e-4)  # logged to 4 decimals
    # the mean left unnormalised would give another KL, by 100 times the tolerance above
    assert abs(gaussian_kl(seen["raw_mean"], seen["logvar"]).sum().item() - expected) > 0.01


@pytest.mark.parametrize("arch,flags,message", [
    ("lstm_wae_tiny", ["--bn-posterior-mean", "0.5"], "--bn-posterior-mean normalises a Gaussian head"),
    ("lstm_vae_tiny", ["--bn-posterior-mean", "0"], "--bn-posterior-mean .* must be > 0"),
])
def test_nonsense_bn_options_are_refused_naming_the_flag(toy_data, arch, flags, message):
    with pytest.raises(ValueError, match=message):
        build(toy_data, arch, "wae_mmd", *flags)
