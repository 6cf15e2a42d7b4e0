"""Priors fitted to the codes (fairseq-wae-fit-prior, --prior-file, sample(prior="fitted")): densities against
known mixtures and torch's own, draws keyed by (seed, index), the real commands on the DAE overfit to 50
sentences (conftest.overfit_dae), its refusals; reverse perplexity and the copied share of evaluate.py."""
import math
import subprocess
import sys

import pytest
import torch

from helpers import REPO, USER_DIR, built_once, generated_sentences, run, toy_sentences
from fairseq_wae.cli.fit_prior import FitError, check_codes, fit_density
from fairseq_wae.errors import Refusal
from fairseq_wae.fitted_prior import FittedPrior, load_prior, save_prior
from fairseq_wae.latent_space import prior_codes

FIT_PRIOR = [sys.executable, REPO / "scripts" / "fit_prior.py"]
#: a known mixture in 2 dimensions: weights, means, standard deviations along each axis
WEIGHTS, MEANS, STDS = (0.5, 0.3, 0.2), ((0.0, 0.0), (6.0, 0.0), (0.0, 6.0)), ((1.0, 0.5), (0.5, 1.0), (0.7, 0.7))


def known_mixture(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    component = torch.multinomial(torch.tensor(WEIGHTS), count, replacement=True, generator=generator)
    noise = torch.randn(count, 2, generator=generator, dtype=torch.float64)
    return torch.tensor(MEANS, dtype=torch.float64)[component] + noise * torch.tensor(STDS, dtype=torch.float64)[component]


@pytest.fixture(scope="module")
def mixture_record():
    return fit_density(known_mixture(4000), "gmm", components=3, seed=1)


def test_the_fitted_mixture_recovers_the_known_weights_and_means(mixture_record):
    # 3,600 codes fitted: the weights within 0.03 and the means within 0.1 of the mixture drawn from
    order = [int(torch.cdist(torch.tensor([mean], dtype=torch.float64), mixture_record["means"]).argmin())
             for mean in MEANS]
    assert sorted(order) == [0, 1, 2]
    assert mixture_record["weights"][order].tolist() == pytest.approx(WEIGHTS, abs=0.03)
    assert torch.allclose(mixture_record["means"][order], torch.tensor(MEANS, dtype=torch.float64), atol=0.1)
    covariances = mixture_record["scale_tril"] @ mixture_record["scale_tril"].transpose(1, 2)
    expected = torch.diag_embed(torch.tensor(STDS, dtype=torch.float64) ** 2)
    assert torch.allclose(covariances[order], expected, atol=0.1)
    # its density is torch's mixture of the same parameters, and far above N(0, I)'s on held-out codes
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=mixture_record["weights"]),
        torch.distributions.MultivariateNormal(mixture_record["means"], scale_tril=mixture_record["scale_tril"]))
    z = known_mixture(50, seed=9)
    assert torch.allclose(FittedPrior(mixture_record).log_prob(z), reference.log_prob(z), atol=1e-9)
    assert mixture_record["held_out_log_likelihood"] > mixture_record["held_out_log_likelihood_standard_normal"] + 5
    # without --components the held-out likelihood chooses: more than one component
    chosen = fit_density(known_mixture(1000), "gmm", seed=1)
    assert len(chosen["weights"]) > 1 and "components chosen by held-out" in chosen["notes"][-1]


def test_draws_are_keyed_by_seed_and_index_and_scaled_around_the_density(mixture_record):
    prior = FittedPrior(mixture_record)
    whole = prior_codes(range(200), 2, 7, 1.0, prior=prior)
    pieces = torch.cat([prior_codes(range(start, min(start + 37, 200)), 2, 7, 1.0, prior=prior)
                        for start in range(0, 200, 37)])
    assert torch.equal(whole, pieces)
    assert not torch.equal(whole, prior_codes(range(200), 2, 8, 1.0, prior=prior))
    # the draws follow the mixture: its means and weights come back from 20,000 of them
    drawn = prior_codes(range(20000), 2, 7, 1.0, prior=prior).double()
    nearest = torch.cdist(drawn, mixture_record["means"]).argmin(1)
    shares = torch.bincount(nearest, minlength=3).double() / len(drawn)
    assert torch.allclose(shares, mixture_record["weights"], atol=0.02)
    # the temperature scales the noise, not the means: near 0 every draw is its component's mean
    cold = prior_codes(range(200), 2, 7, 1e-6, prior=prior).double()
    assert torch.cdist(cold, mixture_record["means"]).min(1).values.max() < 1e-4
    # N(0, I)'s draws are unchanged by the uniform a mixture also takes from each sample's generator
    from fairseq_wae.seeding import seeded_generator

    assert torch.equal(prior_codes(range(3), 2, 7, 2.0)[2], 2.0 * torch.randn(2, generator=seeded_generator(7, 2)))


def test_a_flow_is_stored_as_tensors_and_rebuilt(tmp_path, mixture_record):
    record = fit_density(known_mixture(2000), "flow", flow_steps=100, seed=1)
    record.update(dictionary_sha256="0" * 64, dictionary_size=10)
    save_prior(record, tmp_path / "flow.pt")
    loaded = load_prior(str(tmp_path / "flow.pt"))
    z = known_mixture(100, seed=3)
    assert torch.allclose(loaded.log_prob(z), FittedPrior(record).log_prob(z), atol=1e-5)
    # 100 steps learn the three modes better than one Gaussian (60 steps: -3.7 against -4.8 nats per code)
    gaussian = fit_density(known_mixture(2000), "gaussian", seed=1)
    assert record["held_out_log_likelihood"] > gaussian["held_out_log_likelihood"] + 0.8
    whole = prior_codes(range(60), 2, 3, 1.0, prior=loaded)
    assert torch.equal(whole, torch.cat([prior_codes(range(s, s + 20), 2, 3, 1.0, prior=loaded) for s in (0, 20, 40)]))


def test_bad_codes_and_bad_prior_files_are_refused(tmp_path, mixture_record):
    codes = known_mixture(100)
    codes[17, 1] = math.nan
    with pytest.raises(FitError, match="1 of 100 training sentences to NaN or infinite codes .sentence 18"):
        check_codes(codes, "ckpt.pt")
    with pytest.raises(FitError, match="--components 95 is more than the 90 codes fitted"):
        fit_density(known_mixture(100), "gmm", components=95)
    # fewer codes than dimensions: regularised, and said so
    few = torch.randn(12, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    record = fit_density(few, "gaussian")
    assert "covariance is singular" in record["notes"][0] and math.isfinite(record["held_out_log_likelihood"])

    path = tmp_path / "prior.pt"
    save_prior({**mixture_record, "dictionary_sha256": "a" * 64, "dictionary_size": 10}, path)
    intact = path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["prior.pt"]  # the temporary file was renamed
    path.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(Refusal, match=f"the prior file {path} is not a readable prior file"):
        load_prior(str(path))
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(Refusal, match="not a prior written by fairseq-wae-fit-prior"):
        load_prior(str(path))
    torch.save({**mixture_record, "format": "fairseq-wae-prior", "extra": Refusal("x")}, path)  # a pickled object
    with pytest.raises(Refusal, match="not a readable prior file"):
        load_prior(str(path))


def test_a_write_that_fails_leaves_the_earlier_prior_whole(tmp_path, mixture_record, monkeypatch):
    path = tmp_path / "prior.pt"
    record = {**mixture_record, "dictionary_sha256": "a" * 64, "dictionary_size": 10}
    save_prior(record, path)
    before = path.read_bytes()

    def half_then_fail(obj, f):
        with open(f, "wb") as g:
            g.write(before[:100])
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(Refusal, match="could not write the prior"):
        save_prior({**record, "seed": 2}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["prior.pt"]


def trigram_lm(folder):
    """A trigram KenLM of 2,000 toy sentences (another seed than the DAE's), built by lmplz."""
    import kenlm

    from fairseq_wae.text_metrics import find_kenlm_binary

    (folder / "lm.txt").write_text("\n".join(toy_sentences(2000, seed=11)) + "\n")
    with open(folder / "lm.txt", "rb") as f, open(folder / "lm.arpa", "wb") as g:
        subprocess.run([find_kenlm_binary("lmplz"), "-o", "3", "-S", "100M", "-T", str(folder), "--discount_fallback"],
                       stdin=f, stdout=g, stderr=subprocess.DEVNULL, check=True)
    return kenlm.Model(str(folder / "lm.arpa"))


def prior_samples(data, checkpoint, *flags, n=48):
    return generated_sentences(run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling",
                                    "--num-samples", n, "--seed", "3", "--path", checkpoint, "--beam", "1", "--cpu",
                                    "--max-len-b", "30", *flags]).stdout)


@pytest.fixture(scope="module")
def fitted_dae(overfit_dae, tmp_path_factory):
    data, ckpt, _ = overfit_dae

    def build(folder):
        printed = run([*FIT_PRIOR, "--checkpoint", ckpt / "checkpoint_best.pt", "--data", data, "--density",
                       "gaussian", "--out", folder / "dae.gaussian.pt"]).stdout
        return folder / "dae.gaussian.pt", printed

    return built_once(tmp_path_factory, "prior", build)


def test_fitted_prior_samples_of_a_dae_read_better_than_standard_normal_ones(overfit_dae, fitted_dae, tmp_path):
    from fairseq_wae.text_metrics import lm_scores

    data, ckpt, _ = overfit_dae
    prior_file, printed = fitted_dae
    record = load_prior(str(prior_file)).record
    assert record["codes"] == 50 and record["latent_dim"] == 16 and record["split"] == "train"
    assert len(record["split_sha256"]) == 64 and "held-out log-likelihood per code" in printed
    # the DAE's codes lie far from N(0, I): the fitted density explains held-out codes far better
    assert record["held_out_log_likelihood"] > record["held_out_log_likelihood_standard_normal"] + 5
    lm = trigram_lm(tmp_path)
    normal = prior_samples(data, ckpt / "checkpoint_best.pt")
    fitted = prior_samples(data, ckpt / "checkpoint_best.pt", "--prior-file", prior_file)
    assert len(fitted) == len(normal) == 48
    assert lm_scores(lm, fitted)["nll_bits_per_word"] < lm_scores(lm, normal)["nll_bits_per_word"] - 0.5


def test_an_export_carries_the_prior_and_samples_from_it_as_fairseq_generate(overfit_dae, fitted_dae, tmp_path):
    from fairseq_wae import LSTMAutoencoderModel

    data, ckpt, _ = overfit_dae
    prior_file, _ = fitted_dae
    run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt", "--data",
         data, "--out", tmp_path / "model", "--prior", prior_file])
    assert "## Fitted prior" in (tmp_path / "model" / "README.md").read_text()
    model = LSTMAutoencoderModel.from_pretrained(str(tmp_path / "model"))
    expected = prior_samples(data, ckpt / "checkpoint_best.pt", "--prior-file", prior_file, n=12)
    assert model.sample(12, seed=3, tokenize=False, batch_size=5, max_len_b=30, prior="fitted") == expected
    assert model.sample(12, seed=3, tokenize=False, max_len_b=30) != expected
    (tmp_path / "model" / "prior.pt").unlink()
    (tmp_path / "model" / "export.json").unlink()
    bare = LSTMAutoencoderModel.from_pretrained(str(tmp_path / "model"))
    with pytest.raises(Refusal, match="holds no fitted prior"):
        bare.sample(2, prior="fitted")


def altered_prior(prior_file, folder, **changes):
    record = load_prior(str(prior_file)).record
    record.update(changes)
    save_prior(record, folder / "altered.pt")
    return folder / "altered.pt"


def test_a_prior_of_another_model_or_folder_is_refused(overfit_dae, fitted_dae, toy_data, tmp_path):
    data, ckpt, _ = overfit_dae
    prior_file, _ = fitted_dae
    checkpoint = ckpt / "checkpoint_best.pt"
    generate = ["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples", "4",
                "--path", checkpoint, "--cpu", "--prior-file"]
    record = load_prior(str(prior_file)).record
    wider = altered_prior(prior_file, tmp_path, latent_dim=32, means=torch.zeros(1, 32),
                          scale_tril=torch.eye(32).unsqueeze(0))
    result = run([*generate, wider], check=False)
    assert result.returncode == 2 and "fitted for a model with 32-d codes" in result.stderr
    assert "the model of --path has 16-d codes" in result.stderr
    other = altered_prior(prior_file, tmp_path, dictionary_sha256="b" * 64)
    result = run([*generate, other], check=False)
    assert result.returncode == 2 and "dictionary sha256 bbbbbbbbbbbb" in result.stderr
    assert f"dictionary sha256 {record['dictionary_sha256'][:12]}" in result.stderr
    result = run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", checkpoint, "--data", data,
                  "--out", tmp_path / "model", "--prior", other], check=False)
    assert result.returncode == 2 and f"but --checkpoint {checkpoint} has 16-d codes" in result.stderr
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(prior_file.read_bytes()[:500])
    result = run([*generate, truncated], check=False)
    assert result.returncode == 2 and f"--prior-file {truncated} is not a readable prior file" in result.stderr

    fit = [*FIT_PRIOR, "--checkpoint", checkpoint, "--out", tmp_path / "p.pt"]
    result = run([*fit, "--data", toy_data, "--density", "gaussian"], check=False)  # another corpus's dictionary
    assert result.returncode == 2 and "token ids would map to other words" in result.stderr
    result = run([*fit, "--data", data, "--density", "gmm", "--components", "46"], check=False)
    assert result.returncode == 2 and "--components 46 is more than the 45 codes fitted" in result.stderr
    assert not (tmp_path / "p.pt").exists()


def test_reverse_perplexity_and_copied_share(tmp_path):
    from fairseq_wae.text_metrics import copied_share, reverse_perplexity

    real = toy_sentences(300, seed=21)
    varied, repeated = toy_sentences(300, seed=22), [toy_sentences(1, seed=23)[0]] * 300
    assert copied_share(real[:10] + varied[:30], real) == pytest.approx(0.25)
    # samples that cover the data's variety explain real text better than one sentence said 300 times
    assert reverse_perplexity(varied, real)["reverse_perplexity"] < reverse_perplexity(repeated, real)["reverse_perplexity"] / 3
    (tmp_path / "samples.txt").write_text("\n".join(real[:40] + varied[:60]) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(real) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(toy_sentences(100, seed=24)) + "\n")
    out = run([sys.executable, REPO / "scripts" / "evaluate.py", "--samples", tmp_path / "samples.txt", "--corpus",
               tmp_path / "train.txt", "--reference", tmp_path / "test.txt"]).stdout  # no reconstructions: no BLEU
    assert "| Reverse PPL | Copied |" in out and "| samples.txt | - |" in out and "| 40.0% |" in out
