"""The criterions in process, on a model and batches built by fairseq's own option parsing."""
import math

import pytest
import torch

from helpers import build, first_batch


@pytest.mark.parametrize("arch,criterion,flags", [
    ("lstm_ae_tiny", "ae_cross_entropy", []),
    ("lstm_vae_tiny", "vae_kl", ["--kl-weight", "0.5"]),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "3"]),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-kernel", "rbf"]),
    ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"]),
    ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01", "--noise-drop", "0.2"]),
    ("lstm_wae_tiny", "aae", ["--adversarial-lambda", "3"]),
])
def test_gradients_reach_the_encoder(toy_data, arch, criterion, flags):
    task, model, crit = build(toy_data, arch, criterion, *flags)
    model.train()
    loss, sample_size, log = crit(model, first_batch(task))
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.encoder.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert log["sample_size"] == sample_size == log["ntokens"]
    if criterion == "ae_cross_entropy":
        return
    # the penalty's own gradient: it reaches the encoder's LSTM and latent head, and nothing of the decoder
    model.zero_grad()
    sample = first_batch(task)
    _, extra = model(**sample["net_input"])
    crit.latent_penalty(model, extra["latent"], sample)[0].backward()
    for name, parameter in model.encoder.named_parameters():
        if name.startswith(("lstm", "latent_head")):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(p.grad is None or not p.grad.any() for n, p in model.decoder.named_parameters()
               if not n.startswith("embed_tokens"))


def test_penalty_is_weighed_against_the_per_token_mean_cross_entropy(toy_data):
    task, model, crit = build(toy_data, "lstm_wae_tiny", "wae_mmd", "--mmd-lambda", "7")
    model.eval()
    _, _, log = crit(model, first_batch(task))
    per_token = log["loss"].item() / log["ntokens"]
    expected = log["nll_loss"].item() / log["ntokens"] + 7 * log["mmd"].item() / log["nsentences"]
    assert per_token == pytest.approx(expected, rel=1e-5)


def test_word_dropout_rate_on_a_large_batch_and_never_the_start_symbol_or_padding(toy_data):
    task, model, crit = build(toy_data, "lstm_vae_tiny", "vae_kl", "--word-dropout", "0.3")
    d = task.target_dictionary
    tokens = torch.randint(d.nspecial, len(d), (400, 60))
    tokens[:, 0] = d.eos()
    tokens[:, 50:] = d.pad()
    dropped = crit.drop_words(tokens, 0.3)
    replaced = dropped.eq(d.unk())
    assert replaced[:, 1:50].float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert not replaced[:, 0].any() and not replaced[:, 50:].any()
    assert torch.equal(dropped[~replaced], tokens[~replaced])


def test_nothing_is_dropped_in_evaluation(toy_data):
    task, model, crit = build(toy_data, "lstm_vae_tiny", "vae_kl", "--word-dropout", "0.9")
    _, _, plain = build(toy_data, "lstm_vae_tiny", "vae_kl")
    model.eval()
    sample = first_batch(task)
    _, _, log = crit(model, sample)
    _, _, reference = plain(model, sample)
    assert log["word_dropout"] == 0
    assert log["loss"].item() == pytest.approx(reference["loss"].item())
    model.train()
    assert crit(model, sample)[2]["word_dropout"] == pytest.approx(0.9 * 16)


def test_word_dropout_schedule_follows_the_epoch_set_by_the_task(toy_data):
    task, model, crit = build(toy_data, "lstm_vae_tiny", "vae_kl", "--word-dropout-increment", "0.05",
                              "--word-dropout-max", "0.5")
    rates = []
    for epoch in (1, 2, 4, 20):
        crit.set_training_progress(num_updates=epoch * 10, epoch=epoch)
        rates.append(crit.word_dropout_rate)
    assert rates == pytest.approx([0.0, 0.05, 0.15, 0.5])


def test_kl_weight_follows_the_update_count(toy_data):
    task, model, crit = build(toy_data, "lstm_vae_tiny", "vae_kl", "--kl-anneal", "linear", "--kl-anneal-steps",
                              "100", "--kl-weight", "0.8")
    crit.set_training_progress(num_updates=25, epoch=1)
    model.train()
    _, _, log = crit(model, first_batch(task))
    assert log["kl_weight"] / log["nsentences"] == pytest.approx(0.2)


def test_vae_reconstructs_from_the_posterior_mean_in_evaluation(toy_data):
    task, model, _ = build(toy_data, "lstm_vae_tiny", "vae_kl")
    sample = first_batch(task)
    model.eval()
    a = model.encoder(**{k: sample["net_input"][k] for k in ("src_tokens", "src_lengths")})
    b = model.encoder(**{k: sample["net_input"][k] for k in ("src_tokens", "src_lengths")})
    assert torch.equal(a["z"], a["mean"]) and torch.equal(a["z"], b["z"])
    c = model.encoder(sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"], sample_posterior=True)
    assert not torch.equal(c["z"], a["mean"])


@pytest.mark.parametrize("arch,criterion", [("lstm_ae_tiny", "ae_cross_entropy"), ("lstm_vae_tiny", "vae_kl"),
                                             ("lstm_wae_tiny", "wae_mmd"), ("lstm_vae_tiny", "wae_mmd"),
                                             ("lstm_aae_tiny", "aae"), ("lstm_wae_tiny", "aae")])
def test_every_batch_logs_the_same_keys_of_the_same_types_and_a_lone_sentence_skips_mmd(toy_data, arch, criterion):
    # fairseq sums logging outputs key by key with the first output's keys, numbers and tensors apart
    task, model, crit = build(toy_data, arch, criterion)
    model.train()
    loss, _, lone = crit(model, first_batch(task, size=1))
    _, _, full = crit(model, first_batch(task, size=16))
    assert torch.isfinite(loss)
    assert list(lone) == list(full)
    assert all(torch.is_tensor(lone[k]) == torch.is_tensor(full[k]) for k in full)
    assert all(not torch.is_tensor(v) or v.shape == full[k].shape for k, v in lone.items())
    if criterion == "wae_mmd":
        assert lone["mmd_skipped"] == 1 and lone["mmd_sentences"] == 0 and lone["mmd"] == 0
        assert full["mmd_skipped"] == 0 and full["mmd_sentences"] == 16 and full["mmd"] != 0


def test_prior_draws_differ_between_micro_batches_and_repeat_with_the_seed(toy_data):
    task, model, crit = build(toy_data, "lstm_wae_tiny", "wae_mmd")
    model.train()  # the tiny network has no dropout, and no word dropout is asked: the prior draw alone moves the MMD
    sample = first_batch(task)
    crit.set_training_progress(5, 1)
    first, second = (crit(model, sample)[2]["mmd"].item() for _ in range(2))  # two micro-batches of one update
    crit.set_training_progress(6, 1)
    crit.set_training_progress(5, 1)
    again = crit(model, sample)[2]["mmd"].item()
    assert first != second and first == again
    crit.train()  # fairseq's trainer starts every update, a retried one too, so: the retry draws alike
    assert crit(model, sample)[2]["mmd"].item() == first
    # word dropout and the prior draw from generators of their own, however many draws came before
    crit.set_training_progress(7, 1)
    prior = torch.randn(3, generator=crit.random_generator("cpu", "prior"))
    crit.random_generator("cpu", "word_dropout")
    assert torch.equal(prior, torch.randn(3, generator=crit.random_generator("cpu", "prior")))


def test_validation_draws_are_keyed_by_the_batch_not_by_what_trained_before(toy_data):
    task, model, crit = build(toy_data, "lstm_wae_tiny", "wae_mmd")
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batches = [dataset.collater([dataset[i] for i in range(start, start + 8)]) for start in (0, 8)]
    model.eval()
    before = [crit(model, batch)[2]["mmd"].item() for batch in batches]
    model.train()
    for update in range(3):  # training forwards between two validations
        crit.set_training_progress(update, 1)
        crit(model, batches[0])
    model.eval()
    crit.set_training_progress(40, 2)
    assert [crit(model, batch)[2]["mmd"].item() for batch in reversed(batches)] == before[::-1]
    assert before[0] != before[1]


def test_free_bits_penalise_only_the_kl_above_the_floor_in_each_dimension(toy_data):
    _, model, crit = build(toy_data, "lstm_vae_tiny", "vae_kl", "--kl-free-bits", "0.5", "--kl-weight", "0.7")
    model.eval()
    mean = torch.zeros(4, 16)
    mean[:, 0], mean[:, 1] = 2.0, 0.1  # KL per dimension: 2.0 and 0.005; the other 14 dimensions: 0
    latent = {"z": mean, "mean": mean, "logvar": torch.zeros(4, 16)}
    penalty, logs = crit.latent_penalty(model, latent, None)
    assert penalty.item() == pytest.approx(0.7 * (2.0 + 0.5 + 14 * 0.5))
    assert logs["kl"] == pytest.approx(2.005) and logs["kl_weight"] == 0.7  # the KL itself, unclamped
    _, _, plain = build(toy_data, "lstm_vae_tiny", "vae_kl", "--kl-weight", "0.7")
    assert plain.latent_penalty(model, latent, None)[0].item() == pytest.approx(0.7 * 2.005)


@pytest.mark.parametrize("precision,raises", [([], True), (["--bf16"], True), (["--fp16"], False), (["--amp"], False)])
def test_a_non_finite_loss_is_named_unless_a_loss_scaler_handles_it(toy_data, precision, raises):
    # the step itself never reads the loss back; the task asks check_finite when fairseq's trainer re-runs a
    # non-finite update (float32, --bf16: fairseq has no scaler) and after each validation batch
    task, model, crit = build(toy_data, "lstm_wae_tiny", "wae_mmd", *precision)
    with torch.no_grad():
        model.decoder.output_projection.bias.fill_(math.nan)
    crit.set_training_progress(41, 1)
    model.train()
    loss, _, log = crit(model, first_batch(task))
    assert not torch.isfinite(loss)
    if raises:
        with pytest.raises(FloatingPointError, match=r"non-finite loss at update 42 \(cross-entropy nan, weighted penalty"):
            crit.check_finite(log, "update 42")
    else:
        crit.check_finite(log, "update 42")  # the loss scaler skips the step and lowers the scale


STOP_AT_PEAK = ["--kl-anneal", "sigmoid", "--kl-anneal-stop-at-peak"]


def test_the_stop_at_peak_state_comes_back_with_the_model_state_dict(toy_data):
    # fairseq-train's resume restores the model's state dict, not the task's state
    task, model, crit = build(toy_data, "lstm_vae_tiny", "vae_kl", *STOP_AT_PEAK)
    crit(model.train(), first_batch(task))
    crit.peak_stopper.frozen_weight = 0.25
    _, resumed_model, resumed = build(toy_data, "lstm_vae_tiny", "vae_kl", *STOP_AT_PEAK)
    resumed_model.load_state_dict(model.state_dict())
    resumed.set_training_progress(100, 3)
    resumed(resumed_model.train(), first_batch(task))
    assert resumed.current_kl_weight == 0.25
    assert vars(resumed.peak_stopper) == vars(crit.peak_stopper)


def test_a_state_dict_without_the_schedule_slot_loads_but_a_stop_at_peak_resume_from_it_is_refused(toy_data):
    task, model, _ = build(toy_data, "lstm_vae_tiny", "vae_kl", *STOP_AT_PEAK)
    state = model.state_dict()
    del state["schedule_state._extra_state"]
    _, resumed_model, resumed = build(toy_data, "lstm_vae_tiny", "vae_kl", *STOP_AT_PEAK)
    resumed_model.load_state_dict(state)
    resumed.set_training_progress(100, 3)
    with pytest.raises(RuntimeError, match="resumes at update 100"):
        resumed(resumed_model.train(), first_batch(task))


@pytest.mark.parametrize("arch,criterion,flags,message", [
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "-1"], "--mmd-lambda"),
    ("lstm_vae_tiny", "vae_kl", ["--kl-weight", "-0.5"], "--kl-weight"),
    ("lstm_vae_tiny", "vae_kl", ["--word-dropout", "1.5"], "--word-dropout"),
    ("lstm_wae_tiny", "wae_mmd", ["--imq-scales", "1,x"], "--imq-scales"),
    ("lstm_vae_tiny", "vae_kl", ["--kl-anneal-stop-at-peak"], "--kl-anneal-stop-at-peak"),
    ("lstm_wae_tiny", "wae_mmd", ["--latent-dim", "0"], "--latent-dim"),
    ("lstm_wae_tiny", "wae_mmd", ["--dropout", "1.0"], "--dropout"),
    ("lstm_wae_tiny", "wae_mmd", ["--noise-drop", "1.5"], "--noise-drop"),
    ("lstm_ae_tiny", "ae_cross_entropy", ["--noise-drop", "1"], "--noise-drop 1 drops every word"),
    ("lstm_vae_tiny", "vae_kl", ["--noise-blank", "-0.1"], "--noise-blank"),
    ("lstm_wae_tiny", "wae_mmd", ["--noise-substitute", "2"], "--noise-substitute"),
    ("lstm_wae_tiny", "wae_mmd", ["--noise-shuffle-distance", "-1"], "--noise-shuffle-distance"),
    ("lstm_aae_tiny", "aae", ["--adversarial-lambda", "-1"], "--adversarial-lambda"),
    ("lstm_aae_tiny", "aae", ["--logvar-l1", "-0.1"], "--logvar-l1"),
    ("lstm_aae_tiny", "aae", ["--discriminator-dim", "0"], "--discriminator-dim"),
])
def test_nonsense_flags_are_refused_at_start_up(toy_data, arch, criterion, flags, message):
    with pytest.raises(ValueError, match=message):
        build(toy_data, arch, criterion, *flags)


@pytest.mark.parametrize("arch,criterion,flags,message", [
    ("lstm_ae_tiny", "vae_kl", [], "Gaussian latent head"),
    ("lstm_wae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"], "Gaussian latent head"),
])
def test_gaussian_only_options_on_a_deterministic_arch_are_refused(toy_data, arch, criterion, flags, message):
    task, model, crit = build(toy_data, arch, criterion, *flags)
    with pytest.raises(ValueError, match=message):
        crit(model, first_batch(task))


def test_reconstruction_loss_and_its_gradient_match_pytorch_cross_entropy():
    from fairseq_wae.criterions.ae_cross_entropy import reconstruction_loss

    torch.manual_seed(0)
    pad = 1
    target = torch.randint(0, 50, (4, 7))
    target[0, 4:] = pad
    target[2, 1:] = pad
    for dtype in (torch.float32, torch.float64):
        logits = (3 * torch.randn(4, 7, 50, dtype=dtype)).requires_grad_()
        reference_logits = logits.detach().clone().requires_grad_()
        loss = reconstruction_loss(logits, target, pad)
        reference = torch.nn.functional.cross_entropy(reference_logits.view(-1, 50), target.view(-1),
                                                      ignore_index=pad, reduction="sum")
        (2.5 * loss).backward()
        (2.5 * reference).backward()
        assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
        assert logits.grad.dtype == dtype
        assert torch.allclose(logits.grad, reference_logits.grad, atol=1e-6)
        assert logits.grad[2, 1:].abs().max() == 0  # padding gets no gradient

    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = reconstruction_loss(logits, torch.zeros(2, 3, dtype=torch.long), pad)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward twice"):
        loss.backward()


def test_a_penalty_key_the_criterion_does_not_declare_is_an_error_not_a_lost_metric(toy_data):
    from fairseq_wae.criterions.wae_mmd import WaeMmdCriterion

    # (the WAE last: it is the criterion given a new penalty below)
    for arch, name in (("lstm_ae_tiny", "ae_cross_entropy"), ("lstm_vae_tiny", "vae_kl"), ("lstm_aae_tiny", "aae"),
                       ("lstm_wae_tiny", "aae"), ("lstm_vae_tiny", "wae_mmd"), ("lstm_wae_tiny", "wae_mmd")):
        task, model, crit = build(toy_data, arch, name)
        _, _, log = crit(model, first_batch(task))  # every key each criterion logs is declared
        declared = set(crit.sentence_mean_metrics) | set(crit.count_metrics) | set(crit.summed_statistics)
        assert set(log) - {"loss", "nll_loss", "ntokens", "nsentences", "sample_size"} <= declared

    class WithANewPenalty(WaeMmdCriterion):
        def latent_penalty(self, model, latent, sample):
            penalty, logs = super().latent_penalty(model, latent, sample)
            return penalty, {**logs, "my_new_term": 1.0}

    crit.__class__ = WithANewPenalty
    with pytest.raises(KeyError, match="WithANewPenalty logs 'my_new_term', which it declares in none of"):
        crit(model, first_batch(task))
