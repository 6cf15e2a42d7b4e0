"""The Transformer autoencoder: trained by the unchanged criterions, decoded by the unchanged tools, and
its decoder sees the sentence only through z."""
import re
import sys

import pytest
import torch

from helpers import (
    REPO,
    USER_DIR,
    assert_beam_scores_equal_a_fresh_forward_pass,
    build,
    built_once,
    first_batch,
    generated_sentences,
    one_update,
    preprocess,
    run,
    toy_sentences,
    train,
    train_command,
)

FLAVOURS = {"transformer_ae_tiny": ("ae_cross_entropy", []), "transformer_wae_tiny": ("wae_mmd", []),
            "transformer_vae_tiny": ("vae_kl", []), "transformer_swae_tiny": ("wae_mmd", ["--kl-variance-penalty", "1"])}
# every way of making z and of giving it to the decoder
NETWORK_OPTIONS = [
    ["--latent-pooling", "mean", "--latent-injection", "memory"],
    ["--latent-pooling", "first", "--latent-injection", "memory", "--latent-memory-slots", "3"],
    ["--latent-pooling", "mean", "--latent-injection", "embedding"],
    ["--latent-pooling", "first", "--latent-injection", "both", "--latent-memory-slots", "2"],
    ["--normalize-before", "--share-decoder-input-output-embed", "--encoder-layers", "2", "--decoder-layers", "2"],
]


@pytest.fixture(scope="session")
def overfit_transformer(tmp_path_factory):
    """The tiny Transformer DAE trained on 50 toy sentences until it reconstructs them (shared by every worker)."""
    def build(folder):
        sentences = toy_sentences(50, seed=7)
        data = preprocess(folder, {"train": sentences, "valid": sentences, "test": sentences})
        train(data, folder / "ckpt", "--lr", "0.003", "--validate-interval", "50", "--save-interval", "50",
              arch="transformer_ae_tiny", criterion="ae_cross_entropy", epochs=150, batch_size=10)
        return data, folder / "ckpt" / "checkpoint_best.pt"

    return built_once(tmp_path_factory, "overfit-transformer", build)


def generate(data, checkpoint, *flags):
    return generated_sentences(run(["fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu",
                                    "--beam", "1", *flags]).stdout)


def test_the_tiny_transformer_dae_reconstructs_every_sentence_through_fairseq_generate(overfit_transformer):
    data, checkpoint = overfit_transformer
    references = (data.parent / "test.txt").read_text().splitlines()
    assert generate(data, checkpoint, "--task", "sentence_autoencoding", "--gen-subset", "test",
                    "--batch-size", "8") == references


def test_prior_samples_do_not_depend_on_the_batch_size(overfit_transformer):
    data, checkpoint = overfit_transformer
    samples = {size: generate(data, checkpoint, "--task", "prior_sampling", "--num-samples", "13", "--seed", "4",
                              "--batch-size", str(size)) for size in (1, 5, 13)}
    assert samples[1] == samples[5] == samples[13]
    assert len(samples[1]) == 13 and len(set(samples[1])) > 1
    assert generate(data, checkpoint, "--task", "prior_sampling", "--num-samples", "13", "--seed", "5") != samples[1]


def test_beam_search_through_the_layer_caches_scores_as_a_fresh_forward_pass(overfit_transformer):
    from fairseq_wae import TransformerAutoencoderModel

    data, checkpoint = overfit_transformer
    autoencoder = TransformerAutoencoderModel.from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name,
                                                              data_name_or_path=str(data))
    sentences = (data.parent / "test.txt").read_text().splitlines()[:8]
    assert assert_beam_scores_equal_a_fresh_forward_pass(autoencoder, sentences) == 8 * 5


def test_the_python_interface_interactive_mode_and_the_scripts_take_the_transformer_unchanged(overfit_transformer, tmp_path):
    from fairseq_wae import TransformerAutoencoderModel

    data, checkpoint = overfit_transformer
    sentences = (data.parent / "train.txt").read_text().splitlines()
    out = tmp_path / "exported"
    run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", checkpoint, "--data", data, "--out", out])
    card = (out / "README.md").read_text()
    assert "Transformer, model size 32, 1 + 1 layers, 4 heads" in card
    updates, epochs = map(int, re.search(r"(\d+) updates, (\d+) epochs", card).groups())
    assert updates == 5 * epochs  # 50 sentences in batches of 10: fairseq's saved epoch is the next one
    assert "TransformerAutoencoderModel.from_pretrained" in card
    hub = TransformerAutoencoderModel.from_pretrained(str(out))
    assert hub.decode(hub.encode(sentences[:10], tokenize=False), tokenize=False) == sentences[:10]
    assert hub.sample(6, seed=4, tokenize=False) == generate(data, checkpoint, "--task", "prior_sampling",
                                                             "--num-samples", "6", "--seed", "4")
    walk = run([sys.executable, REPO / "scripts" / "interpolate.py", "--path", checkpoint, "--data", data,
                "--no-tokenize", "--steps", "4", sentences[0], sentences[1]]).stdout
    assert sentences[0] in walk and sentences[1] in walk
    typed = run(["fairseq-interactive", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                 checkpoint, "--cpu", "--beam", "1", "--tokenizer", "normalized_moses"], input=sentences[3] + "\n")
    assert any(line.startswith("H-0\t") and line.endswith("\t" + sentences[3]) for line in typed.stdout.splitlines())


@pytest.mark.parametrize("arch", list(FLAVOURS))
@pytest.mark.parametrize("options", NETWORK_OPTIONS, ids=lambda o: " ".join(o))
def test_every_flavour_and_network_option_takes_an_update(toy_data, arch, options):
    criterion, flags = FLAVOURS[arch]
    task, model, crit = build(toy_data, arch, criterion, *flags, *options)
    # cross-attention to a single memory slot weighs it 1 whatever its query and key (and, pre-norm,
    # whatever the layer norm that makes the query)
    unmoved = ()
    if model.decoder.memory_slots == 1:
        unmoved = ("encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn_layer_norm" if "--normalize-before"
                   in options else "encoder_attn.k_proj")
    sample = one_update(task, model, crit, unmoved=unmoved)
    assert model(**sample["net_input"])[0].shape == (*sample["target"].shape, len(task.target_dictionary))


@pytest.mark.parametrize("options", NETWORK_OPTIONS, ids=lambda o: " ".join(o))
def test_incremental_decoding_equals_the_full_forward_pass(toy_data, options):
    """Step by step with the layers' key/value caches, as fairseq-generate decodes, the decoder gives
    the logits of one teacher-forced pass over the whole sentence."""
    task, model, _ = build(toy_data, "transformer_vae_tiny", "vae_kl", *options)
    model.eval()
    sample = first_batch(task)
    prev = sample["net_input"]["prev_output_tokens"]
    with torch.no_grad():
        encoder_out = model.encoder(sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"])
        full, _ = model.decoder(prev, encoder_out)
        incremental_state = {}
        steps = [model.decoder(prev[:, : t + 1], encoder_out, incremental_state=incremental_state)[0]
                 for t in range(prev.size(1))]
    words = prev.ne(task.target_dictionary.pad())  # right padding: the steps after a sentence's end differ
    assert torch.allclose(torch.cat(steps, dim=1)[words], full[words], atol=1e-5)


@pytest.mark.parametrize("options", NETWORK_OPTIONS, ids=lambda o: " ".join(o))
def test_the_decoder_sees_the_sentence_only_through_z(toy_data, options):
    """Other source tokens (other lengths, other padding) with the same z give the same logits."""
    task, model, _ = build(toy_data, "transformer_ae_tiny", "ae_cross_entropy", *options)
    model.eval()
    sample = first_batch(task)
    net_input = sample["net_input"]
    src, lengths = net_input["src_tokens"], net_input["src_lengths"]
    other_src, other_lengths = src.flip(0)[:, : int(lengths.min())].clone(), lengths.clone().fill_(int(lengths.min()))
    other_src[:, -1] = task.source_dictionary.eos()
    with torch.no_grad():
        real, _ = model(src, lengths, net_input["prev_output_tokens"])
        from_other, _ = model(other_src, other_lengths, net_input["prev_output_tokens"])
        assert not torch.allclose(real, from_other)  # the sources' codes differ, so would the logits
        z = model.encoder(src, lengths)["z"]
        model.encoder.latent_head.forward = lambda h, sample, generator=None: {"z": z}
        same_z, _ = model(other_src, other_lengths, net_input["prev_output_tokens"])
    assert torch.equal(same_z, real)


@pytest.mark.parametrize("flags,message", [
    (["--latent-memory-slots", "0"], "--latent-memory-slots must be at least 1, got 0"),
    (["--attention-heads", "3"], "--attention-heads 3 does not divide --embed-dim 32"),
    (["--latent-injection", "embedding", "--latent-memory-slots", "4"],
     "--latent-memory-slots 4 has no effect with --latent-injection embedding"),
    (["--attention-dropout", "1.5"], "--attention-dropout must be in [0, 1), got 1.5"),
    (["--latent-pooling", "max"], "--latent-pooling: invalid choice: 'max'"),
])
def test_nonsense_flags_are_refused_naming_the_flag(toy_data, tmp_path, flags, message):
    result = run(train_command(toy_data, tmp_path / "ckpt", *flags, arch="transformer_wae_tiny", epochs=1),
                 check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("arch,criterion,message", [
    ("transformer", "wae_mmd", "--arch transformer (TransformerModel) is not a sentence autoencoder"),
    ("transformer_vae_tiny", "cross_entropy", "--criterion cross_entropy is not an autoencoder objective"),
])
def test_a_model_or_criterion_from_outside_the_plugin_is_refused_at_start_up(toy_data, tmp_path, arch, criterion,
                                                                            message):
    result = run(train_command(toy_data, tmp_path / "ckpt", arch=arch, criterion=criterion, epochs=1), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_resuming_a_transformer_save_dir_with_an_lstm_arch_names_both(toy_data, tmp_path):
    run(train_command(toy_data, tmp_path, arch="transformer_wae_tiny", epochs=1))
    saved = (tmp_path / "checkpoint_last.pt").read_bytes()
    result = run(train_command(toy_data, tmp_path, arch="lstm_wae_tiny", epochs=2), check=False)
    assert result.returncode != 0
    assert ("holds a TransformerAutoencoderModel (--arch transformer_wae_tiny), but this run builds a "
            "LSTMAutoencoderModel (--arch lstm_wae_tiny)") in result.stderr, result.stderr[-2000:]
    assert (tmp_path / "checkpoint_last.pt").read_bytes() == saved
    # the same network under its other name resumes
    run(train_command(toy_data, tmp_path, arch="transformer_ae_tiny", epochs=2))
