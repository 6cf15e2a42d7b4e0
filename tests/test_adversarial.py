"""The adversarial autoencoder (``--criterion aae``): the discriminator's and the encoder's games kept
apart in one backward pass, each doing its job (D separates, the encoder's codes move to the prior), the
LAAE's log-variance term, and D's parameters in the checkpoint and through the real CLI."""
import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import USER_DIR, build, first_batch, parse_json_log, run, train_command, validate_record
from fairseq_wae.penalties import imq_kernel, mmd_unbiased


def codes(model, batch):
    net_input = batch["net_input"]
    return model.encoder(net_input["src_tokens"], net_input["src_lengths"])["z"]


def batches(task, size, count, start=0):
    task.load_dataset("train")
    dataset = task.dataset("train")
    return [dataset.collater([dataset[i] for i in range(start + size * k, start + size * (k + 1))])
            for k in range(count)]


def test_one_backward_trains_d_on_its_loss_and_the_encoder_on_the_generator_loss_alone(toy_data):
    task, model, crit = build(toy_data, "lstm_aae_tiny", "aae", "--adversarial-lambda", "2.5", "--logvar-l1", "0.1")
    model.train()
    sample = first_batch(task)
    latent = {k: v.float() for k, v in model(**sample["net_input"])[1]["latent"].items()}
    penalty, logs = crit.latent_penalty(model, latent, sample)
    penalty.backward(retain_graph=True)
    z_grad = torch.autograd.grad(penalty, latent["z"], retain_graph=True)[0]
    d_grads = [p.grad.clone() for p in crit.discriminator.parameters()]

    # references, each game written out with its own copy of D
    prior = torch.randn(latent["z"].shape, generator=crit.random_generator("cpu", "prior"))
    frozen = copy.deepcopy(crit.discriminator).requires_grad_(False)
    z = latent["z"].detach().requires_grad_(True)
    generator_loss = F.binary_cross_entropy_with_logits(frozen(z), torch.ones(len(z), 1))
    (2.5 * generator_loss).backward()
    trained = copy.deepcopy(crit.discriminator)
    discriminator_loss = (F.binary_cross_entropy_with_logits(trained(latent["z"].detach()), torch.zeros(len(z), 1))
                          + F.binary_cross_entropy_with_logits(trained(prior), torch.ones(len(z), 1)))
    discriminator_loss.backward()

    assert torch.allclose(z_grad, z.grad, atol=1e-6)  # nothing of D's loss reaches the codes
    for mine, reference in zip(d_grads, trained.parameters()):
        assert torch.allclose(mine, reference.grad, atol=1e-6)  # nothing of the generator loss reaches D
    assert logs["adversarial"].item() == pytest.approx(generator_loss.item(), rel=1e-6)
    assert logs["discriminator_loss"].item() == pytest.approx(discriminator_loss.item(), rel=1e-6)
    # D's accuracy: posterior codes it scores below 0 (labelled 0) and prior draws above, over both
    with torch.no_grad():
        correct = int((frozen(latent["z"]) < 0).sum()) + int((frozen(prior) > 0).sum())
    assert logs["discriminator_accuracy"].item() == pytest.approx(correct / (2 * len(z)), abs=1e-7)
    # the value is the autoencoder's objective: D's loss is in the gradient, not in the reported loss
    logvar_l1 = latent["logvar"].abs().sum(-1).mean().item()
    assert logs["logvar_l1"].item() == pytest.approx(logvar_l1, rel=1e-6)
    assert penalty.item() == pytest.approx(2.5 * generator_loss.item() + 0.1 * logvar_l1, rel=1e-6)
    # and the LAAE term's gradient reaches the log-variance head
    assert crit.discriminator[0].weight.grad.any() and model.encoder.latent_head.to_logvar.weight.grad.any()


def discriminator_accuracy(crit, z, generator):
    with torch.no_grad():
        prior = torch.randn(z.shape, generator=generator)
        return torch.cat([crit.discriminate(z, False) < 0, crit.discriminate(prior, False) > 0]).float().mean().item()


def test_the_discriminator_learns_to_tell_prior_from_posterior_codes_on_a_frozen_encoder(toy_data):
    torch.manual_seed(1)
    task, model, crit = build(toy_data, "lstm_wae_tiny", "aae")
    model.requires_grad_(False)
    training, held_out = batches(task, 32, 20), batches(task, 200, 1, start=800)[0]
    with torch.no_grad():
        held_out_codes = codes(model.eval(), held_out)
    before = discriminator_accuracy(crit, held_out_codes, torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(crit.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model.train()
    for step in range(100):
        crit.set_training_progress(step, 1)
        optimizer.zero_grad()
        crit(model, training[step % len(training)])[0].backward()
        optimizer.step()
    after = discriminator_accuracy(crit, held_out_codes, torch.Generator().manual_seed(1))
    assert before < 0.65 and after > 0.9, (before, after)


def mmd_to_prior(z, seed=0):
    prior = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
    return mmd_unbiased(z, prior, lambda d, pairs=None: imq_kernel(d, z.size(1), (1.0,), 2.0)).item()


def sampled_codes(model, batch, seed=5):
    """Posterior samples z ~ q(z|x) with a fixed draw: what D sees in training."""
    net_input = batch["net_input"]
    return model.encoder(net_input["src_tokens"], net_input["src_lengths"], sample_posterior=True,
                         noise_generator=torch.Generator().manual_seed(seed))["z"]


@pytest.mark.parametrize("adversarial_lambda", [1.0, 0.0])
def test_the_generator_loss_moves_the_codes_to_the_prior_without_reconstruction(toy_data, adversarial_lambda):
    torch.manual_seed(2)
    task, model, crit = build(toy_data, "lstm_aae_tiny", "aae", "--adversarial-lambda", str(adversarial_lambda))
    with torch.no_grad():  # codes start away from N(0, I): means near 1, standard deviations near 0.14
        model.encoder.latent_head.to_mean.bias.fill_(1.0)
        model.encoder.latent_head.to_logvar.bias.fill_(-4.0)
    training, held_out = batches(task, 32, 20), batches(task, 200, 1, start=800)[0]
    with torch.no_grad():
        before = mmd_to_prior(sampled_codes(model, held_out))
    optimizer = torch.optim.Adam([*model.encoder.parameters(), *crit.parameters()], lr=1e-3, betas=(0.5, 0.999))
    model.train()
    for step in range(250):
        crit.set_training_progress(step, 1)
        batch = training[step % len(training)]
        net_input = batch["net_input"]
        latent = model.encoder(net_input["src_tokens"], net_input["src_lengths"],
                               noise_generator=crit.random_generator("cpu", "posterior"))
        optimizer.zero_grad()
        crit.latent_penalty(model, latent, batch)[0].backward()  # the reconstruction term is off
        optimizer.step()
    with torch.no_grad():
        after = mmd_to_prior(sampled_codes(model, held_out))
    if adversarial_lambda > 0:
        assert after < 0.5 * before, (before, after)
    else:  # D alone learns: nothing moves the encoder
        assert after == pytest.approx(before, rel=1e-6)


def test_a_half_precision_discriminator_and_network_log_the_float32_values(toy_data):
    task, model, crit = build(toy_data, "lstm_aae_tiny", "aae", "--logvar-l1", "0.01")
    sample = first_batch(task, 128)

    discriminator = crit.discriminator

    def step(dtype):  # as the trainer does under --fp16 and --bf16: the criterion's parameters halved too
        network, crit.discriminator = copy.deepcopy(model).to(dtype).train(), copy.deepcopy(discriminator).to(dtype)
        crit.set_training_progress(98, 1)
        crit.set_training_progress(3, 1)  # a new update: the same draws for every precision
        loss, _, log = crit(network, sample)
        loss.backward()
        assert loss.dtype == torch.float32
        assert all(p.grad.dtype == dtype and torch.isfinite(p.grad).all() for p in crit.parameters())
        return log

    reference = step(torch.float32)
    for dtype, roundoff in ((torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)):
        log = step(dtype)
        for key in ("adversarial", "discriminator_loss", "logvar_l1"):
            assert log[key].dtype == torch.float32
            assert log[key].item() == pytest.approx(reference[key].item(), rel=16 * roundoff), (dtype, key)


def test_the_laae_term_needs_a_gaussian_head(toy_data):
    # refused at start-up under fairseq-train (the task checks the model it trains), else at the first batch
    with pytest.raises(ValueError, match="--logvar-l1"):
        task, model, crit = build(toy_data, "lstm_wae_tiny", "aae", "--logvar-l1", "0.01")
        crit(model, first_batch(task))


def test_the_discriminator_is_saved_fairseq_validate_uses_it_and_the_python_interface_loads_the_model(toy_data,
                                                                                                       tmp_path):

    from fairseq_wae.models.autoencoder import SentenceAutoencoderModel

    result = run(train_command(toy_data, tmp_path, "--noise-drop", "0.3", "--logvar-l1", "0.01", "--log-interval", "5",
                               arch="lstm_aae_tiny", criterion="aae", epochs=2))
    log = parse_json_log(result.stdout + result.stderr)
    # each record's accuracy counts D's right calls on the 2 codes of each sentence it averages (5 updates of
    # bsz sentences): a whole number of codes, so hard decisions, not probabilities, are averaged
    inner = [r for r in log if "discriminator_accuracy" in r and "num_updates" in r]
    assert [int(r["num_updates"]) for r in inner] == list(range(5, 76, 5))
    for record in inner:
        accuracy, codes = float(record["discriminator_accuracy"]), round(2 * 5 * float(record["bsz"]))
        assert abs(accuracy - round(accuracy * codes) / codes) <= 5e-5 + 1e-12, record  # logged to 4 decimals
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["criterion"]["discriminator.0.weight"].shape == (512, 16)
    # fairseq-validate builds the criterion afresh: with an untrained D its loss would differ (measured
    # on this setting: 5.00 against 6.68)
    last = [r for r in log if "valid_loss" in r][-1]
    out = run(["fairseq-validate", toy_data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
               tmp_path / "checkpoint_last.pt", "--valid-subset", "valid", "--batch-size", "32", "--cpu",
               "--log-format", "json"])
    validated = validate_record(out)
    # D's own loss and accuracy too: validation's prior draws are keyed by the validation batch, not by
    # the training batches before it
    for key in ("valid_loss", "valid_nll_loss", "valid_adversarial", "valid_logvar_l1", "valid_discriminator_loss",
                "valid_discriminator_accuracy"):
        assert validated[key] == last[key], key
    autoencoder = SentenceAutoencoderModel.from_pretrained(str(tmp_path), checkpoint_file="checkpoint_last.pt",
                                                           data_name_or_path=str(toy_data))
    sentences = [line.strip() for line in open(toy_data.parent / "train.txt")][:3]
    assert autoencoder.encode(sentences, tokenize=False).shape == (3, 16)
    assert len(autoencoder.sample(4, tokenize=False)) == 4
