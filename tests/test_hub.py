"""The Python interface (from_pretrained, encode, decode, sample, interpolate, ...) and the export, on the
DAE overfit to 50 sentences (conftest.overfit_dae), against fairseq-generate's own output."""
import sys
from collections import Counter

import pytest
import torch
from sacremoses import MosesDetokenizer

from helpers import CLI_ENV, REPO, USER_DIR, generated_sentences, in_process_allowed, run, run_in_process


def load_interface(overfit_dae):
    from fairseq_wae import LSTMAutoencoderModel

    data, ckpt, _ = overfit_dae
    return LSTMAutoencoderModel.from_pretrained(str(ckpt), checkpoint_file="checkpoint_best.pt",
                                                data_name_or_path=str(data))


@pytest.fixture(scope="module")
def hub(overfit_dae):
    return load_interface(overfit_dae)


def training_sentences(data):
    return (data.parent / "train.txt").read_text().splitlines()


def test_raw_text_in_reconstructs_every_training_sentence_detokenised(hub, overfit_dae):
    detokenize = MosesDetokenizer(lang="en").detokenize
    raw = [detokenize(s.split()).capitalize() for s in training_sentences(overfit_dae[0])]
    assert raw[0] != training_sentences(overfit_dae[0])[0]  # really raw: capitalised, punctuation attached
    assert hub.reconstruct(raw, batch_size=16) == [detokenize(s.split()) for s in training_sentences(overfit_dae[0])]


def test_decoding_the_codes_equals_fairseq_generate(hub, overfit_dae):
    data, ckpt, _ = overfit_dae
    sentences = (data.parent / "test.txt").read_text().splitlines()
    out = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
               ckpt / "checkpoint_best.pt", "--gen-subset", "test", "--beam", "1", "--cpu"]).stdout
    assert hub.decode(hub.encode(sentences, tokenize=False), tokenize=False) == generated_sentences(out)


def test_samples_do_not_depend_on_the_batch_and_equal_prior_sampling(hub, overfit_dae):
    data, ckpt, _ = overfit_dae
    samples = {size: hub.sample(12, seed=5, tokenize=False, batch_size=size) for size in (1, 5, 12)}
    assert samples[1] == samples[5] == samples[12]
    out = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples", "12",
               "--seed", "5", "--path", ckpt / "checkpoint_best.pt", "--beam", "1", "--cpu"]).stdout
    assert samples[1] == generated_sentences(out)
    assert hub.sample(12, seed=6, tokenize=False) != samples[1]


def test_interpolation_ends_analogy_direction_and_neighbours(hub, overfit_dae):
    sentences = training_sentences(overfit_dae[0])
    a, b = sentences[:2]
    for method in ("linear", "spherical"):
        walk = hub.interpolate(a, b, steps=5, method=method, tokenize=False)
        assert len(walk) == 5 and walk[0] == a and walk[-1] == b
    assert hub.analogy(a, b, b, tokenize=False) == a  # z_a - z_b + z_b
    assert hub.analogy(a, a, b, tokenize=False) == b  # z_a - z_a + z_b
    direction = hub.direction([a], [b], tokenize=False)
    assert hub.decode(hub.encode([b], tokenize=False) + direction, tokenize=False) == [a]
    neighbours = hub.nearest(a, sentences, k=3, tokenize=False)
    assert neighbours[0] == (a, pytest.approx(0.0, abs=1e-4)) and len(neighbours) == 3
    assert neighbours[1][1] <= neighbours[2][1]


def test_an_analogy_moves_from_a_toward_c_and_away_from_b(hub, overfit_dae):
    """z_a - z_b + z_c on 48 triples of consecutive training sentences: the decoded sentences share more
    words with C than A itself does, and fewer with B (on the overfit DAE: 4.8 against 3.8 words with C,
    3.4 against 4.2 with B, when this test was written). Swapping b and c, or dropping either, fails."""
    sentences = training_sentences(overfit_dae[0])
    triples = [sentences[i:i + 3] for i in range(48)]
    decoded = [hub.analogy(a, b, c, tokenize=False) for a, b, c in triples]

    def shared_words(x, y):
        return sum((Counter(x.split()) & Counter(y.split())).values())

    def mean(values):
        return sum(values) / len(values)

    with_c = mean([shared_words(r, c) for r, (_, _, c) in zip(decoded, triples)])
    a_with_c = mean([shared_words(a, c) for a, _, c in triples])
    with_b = mean([shared_words(r, b) for r, (_, b, _) in zip(decoded, triples)])
    a_with_b = mean([shared_words(a, b) for a, b, _ in triples])
    assert with_c > a_with_c + 0.5 and with_b < a_with_b - 0.5, (with_c, a_with_c, with_b, a_with_b)


def test_export_then_from_pretrained_gives_the_same_codes_and_sentences(hub, overfit_dae, tmp_path):
    from fairseq_wae import LSTMAutoencoderModel

    data, ckpt, _ = overfit_dae
    out = tmp_path / "exported"
    printed = run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt",
                   "--data", data, "--out", out]).stdout
    assert "model.pt" in printed and {p.name for p in out.iterdir()} >= {"model.pt", "dict.txt", "README.md"}
    assert (out / "model.pt").stat().st_size < (ckpt / "checkpoint_best.pt").stat().st_size  # no optimiser state
    exported = LSTMAutoencoderModel.from_pretrained(str(out))
    sentences = training_sentences(data)
    assert torch.equal(exported.encode(sentences, tokenize=False), hub.encode(sentences, tokenize=False))
    assert exported.sample(6, seed=2) == hub.sample(6, seed=2)
    # a rerun replaces its own files; a folder with other files is refused
    run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt",
         "--data", data, "--out", out])
    # a data folder of another corpus: refused at export, not at loading
    other = tmp_path / "other"
    other.mkdir()
    words = (data / "dict.txt").read_text().splitlines()
    (other / "dict.txt").write_text("\n".join(reversed(words)) + "\n")
    foreign = run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt",
                   "--data", other, "--out", tmp_path / "foreign"], check=False)
    assert foreign.returncode != 0 and f"this run's dictionary is {other / 'dict.txt'}" in foreign.stderr
    assert not (tmp_path / "foreign").exists()
    (out / "notes.txt").write_text("mine")
    refused = run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt",
                   "--data", data, "--out", out], check=False)
    assert refused.returncode != 0 and "notes.txt, not written by an export" in refused.stderr


def test_a_half_precision_model_runs_on_the_cpu_and_takes_float32_codes(hub, overfit_dae):
    """Codes are cast to the model's dtype: those of a float32 model, or prior samples, decode on a half one."""
    half = load_interface(overfit_dae).half()
    sentences = training_sentences(overfit_dae[0])[:10]
    assert half.encode(sentences, tokenize=False).dtype == torch.float16
    assert half.reconstruct(sentences, tokenize=False) == sentences
    assert half.decode(hub.encode(sentences, tokenize=False), tokenize=False) == sentences
    # prior codes are drawn in float32 whatever the model's precision, and sampling decodes them: the same
    # codes as the float32 model's (the sentences may differ: half precision flips near-tied words in the
    # long, aimless sentences the overfit DAE makes of most prior codes)
    codes = hub.prior_codes(6, seed=2)
    assert torch.equal(half.prior_codes(6, seed=2), codes)
    # neighbours are measured in float32: torch's cdist has no half-precision kernel on the CPU
    neighbours = half.nearest(sentences[0], sentences, k=3, tokenize=False)
    assert neighbours[0] == (sentences[0], 0.0) and len(neighbours) == 3
    assert half.sample(6, seed=2, tokenize=False) == half.decode(codes, tokenize=False)


def test_bad_arguments_are_refused_naming_them(hub, overfit_dae, tmp_path):
    from fairseq_wae import LSTMAutoencoderModel

    a = training_sentences(overfit_dae[0])[0]
    cases = [
        (lambda: hub.encode([]), ValueError, "the list is empty"),
        (lambda: hub.encode(["a man .", "  "]), ValueError, "sentence 2 is empty"),
        (lambda: hub.encode("a man ."), TypeError, "give a list of sentences"),
        (lambda: hub.decode(torch.zeros(2, hub.latent_dim + 1)), ValueError, f"z must be (n, {hub.latent_dim}) codes"),
        (lambda: hub.decode(torch.zeros(2, hub.latent_dim, dtype=torch.long)), TypeError, "floating-point"),
        (lambda: hub.interpolate(a, a, steps=1), ValueError, "steps must be at least 2"),
        (lambda: hub.sample(2, beem=3), TypeError, "unknown search option 'beem'"),
        (lambda: LSTMAutoencoderModel.from_pretrained(str(tmp_path)), Exception, f"no checkpoint at {tmp_path}/model.pt"),
        (lambda: hub.sample(2.5), TypeError, "n must be an integer, got 2.5"),
        (lambda: hub.sample(2, seed=None), TypeError, "seed must be an integer, got None"),
        (lambda: hub.decode(torch.zeros(1, hub.latent_dim), beam=0), ValueError, "beam must be at least 1, got 0"),
        (lambda: hub.encode([1]), TypeError, "sentences: sentence 1 is a int, not a string"),
        (lambda: hub.nearest(a, []), ValueError, "candidates: the list is empty"),
        (lambda: hub.direction([], [a]), ValueError, "positive: the list is empty"),
        (lambda: hub.interpolate(a, a, steps=2.5), TypeError, "steps must be an integer"),
        # every call bounds its work, as sample does: no list, batch or beam past a stated limit
        (lambda: hub.interpolate(a, a, steps=10**7), ValueError, "steps must be at most 1,000,000, got 10,000,000"),
        (lambda: hub.encode([a], batch_size=10**6), ValueError, "batch_size must be at most 10,000, got 1,000,000"),
        (lambda: hub.decode(torch.zeros(1, hub.latent_dim), beam=10**5), ValueError, "beam must be at most 1,000"),
        (lambda: hub.encode(["a" * (2**20 + 1)]), ValueError, "sentence 1 is longer than 1,048,576 bytes"),
        (lambda: hub.reconstruct([a], max_len_b=0), ValueError, "max_len_b=0 (with max_len_a=0"),
    ]
    # sampling is reproducible from the seed and leaves the caller's random state alone
    state = torch.random.get_rng_state()
    assert hub.sample(4, seed=3, sampling=True) == hub.sample(4, seed=3, sampling=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    for call, error, message in cases:
        with pytest.raises(error, match=None) as caught:
            call()
        assert message in str(caught.value), (message, str(caught.value))


def test_the_console_scripts_run_from_outside_the_repository(overfit_dae, tmp_path, monkeypatch):
    """Every console script setup.py declares is installed and names a main that imports; one runs as a real
    process from another folder, the others in this process there (the installed package, not the
    repository's folder, on the path either way)."""
    import shutil
    from importlib.metadata import distribution

    data, ckpt, _ = overfit_dae
    scripts = {ep.name: ep for ep in distribution("fairseq-wae").entry_points if ep.group == "console_scripts"}
    assert {"fairseq-wae-prepare", "fairseq-wae-evaluate", "fairseq-wae-interpolate", "fairseq-wae-export",
            "fairseq-wae-fit-prior", "fairseq-wae-explore"} <= set(scripts)
    for tool, entry_point in scripts.items():
        assert shutil.which(tool, path=CLI_ENV.get("PATH")), f"{tool} is not installed: pip install -e ."
        assert callable(entry_point.load()), tool
    a, b = training_sentences(data)[:2]
    out = run(["fairseq-wae-interpolate", "--path", ckpt / "checkpoint_best.pt", "--data", data, a, b, "--steps", "3",
               "--no-tokenize"], cwd=tmp_path).stdout.splitlines()
    assert out[0] == f"0\t{a}" and out[-1] == f"2\t{b}"
    monkeypatch.chdir(tmp_path)

    def in_here(tool, *args):
        if not in_process_allowed():
            return run([tool, *args], cwd=tmp_path).stdout
        result = run_in_process(scripts[tool].module, [tool, *map(str, args)])
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    in_here("fairseq-wae-export", "--checkpoint", ckpt / "checkpoint_best.pt", "--data", data, "--out", "model")
    assert (tmp_path / "model" / "model.pt").exists()
    (tmp_path / "s.txt").write_text("\n".join(training_sentences(data)) + "\n")
    assert "| s.txt | - | - | 0.000 |" in in_here("fairseq-wae-evaluate", "--samples", "s.txt", "--corpus", "s.txt")
    in_here("fairseq-wae-prepare", "--input", "s.txt", "--out", "prepared", "--split", "0.8,0.1,0.1")
    assert (tmp_path / "prepared" / "manifest.json").exists()
