"""Metrics against hand-computed values; the KenLM build; scripts/evaluate.py and its errors."""
import json
import math
import random
import shutil
import sys

import pytest

from helpers import REPO, built_once, run, toy_sentences
from fairseq_wae import text_metrics

EVALUATE = [sys.executable, REPO / "scripts" / "evaluate.py"]


def test_bleu_identical_disjoint_and_agreement_with_sacrebleu():
    import sacrebleu

    refs = ["a man is playing a guitar .", "two dogs run in the snow ."]
    assert text_metrics.bleu(refs, refs)[0] == pytest.approx(100.0)
    assert text_metrics.bleu(refs, ["x y z w v u", "p q r s t o"])[0] == pytest.approx(0.0)
    hyps = ["a man is playing a violin .", "two dogs run in the park ."]
    score, signature = text_metrics.bleu(refs, hyps)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score)
    assert "tok:none" in signature
    with pytest.raises(text_metrics.EvaluationError, match="2 references"):
        text_metrics.bleu(refs, hyps[:1])


def test_unigram_kl_hand_worked_and_against_itself():
    generated, corpus = ["a a b c"], ["a b b b"]
    expected = 2 / 3 * math.log((2 / 3) / (1 / 4)) + 1 / 3 * math.log((1 / 3) / (3 / 4))
    result = text_metrics.unigram_kl(generated, corpus)
    assert result["unigram_kl"] == pytest.approx(expected)
    assert result["unseen_tokens"] == 1 and result["unseen_types"] == 1
    assert text_metrics.unigram_kl(corpus, corpus)["unigram_kl"] == pytest.approx(0.0)
    # add-one over {a, b, c}: p = (3, 2, 2)/7, q = (2, 4, 1)/7
    smoothed = sum(p / 7 * math.log(p / q) for p, q in ((3, 2), (2, 4), (2, 1)))
    assert text_metrics.unigram_kl(generated, corpus, smoothing=1.0)["unigram_kl"] == pytest.approx(smoothed)
    with pytest.raises(text_metrics.EvaluationError, match="no generated word occurs in the corpus"):
        text_metrics.unigram_kl(["x y"], corpus)


def test_entropy_length_and_distinct():
    words = [f"w{i}" for i in range(50)]
    assert text_metrics.unigram_entropy([" ".join(words)]) == pytest.approx(math.log(50))
    assert text_metrics.unigram_entropy(["a a a"]) == pytest.approx(0.0)
    assert text_metrics.average_length(["a b c", "d"]) == 2.0
    assert text_metrics.distinct_n(["a b a b"], 1) == 0.5 and text_metrics.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_lm_scores_convert_log10_and_count_the_end_of_sentence_by_hand(tmp_path):
    import kenlm

    arpa = tmp_path / "hand.arpa"  # a bigram model small enough to score by hand
    arpa.write_text("\\data\\\nngram 1=5\nngram 2=1\n\n\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t0\n-0.5\ta\t0\n"
                    "-0.30103\tb\t0\n-0.6\t</s>\n\n\\2-grams:\n-0.1\ta b\n\n\\end\\\n")
    # log10 p: "a b" = p(a) + p(b|a) + p(</s>) = -0.5 - 0.1 - 0.6; "a x" = p(a) + p(<unk>) + p(</s>) = -0.5 - 1.0 - 0.6
    log10_total = -1.2 - 2.1
    scores = text_metrics.lm_scores(kenlm.Model(str(arpa)), ["a b", "a x"])
    assert scores["scored_tokens"] == 6 and scores["oov_words"] == 1  # 2 words + </s>, per sentence
    nats = -log10_total * math.log(10)
    assert scores["nll_nats_per_word"] == pytest.approx(nats / 6, rel=1e-6)
    assert scores["nll_bits_per_word"] == pytest.approx(nats / 6 / math.log(2), rel=1e-6)
    assert scores["nll_nats_per_sentence"] == pytest.approx(nats / 2, rel=1e-6)
    assert scores["perplexity"] == pytest.approx(10 ** (-log10_total / 6), rel=1e-6)


@pytest.fixture(scope="module")
def small_lm(tmp_path_factory):
    def build(folder):
        (folder / "corpus.txt").write_text("\n".join(s.capitalize() for s in toy_sentences(3000, seed=11)) + "\n")
        printed = run([sys.executable, REPO / "scripts" / "train_lm.py", "--corpus", folder / "corpus.txt",
                       "--order", "3", "--out", folder / "toy3.bin"]).stdout
        return folder / "toy3.bin", json.loads(printed.splitlines()[-1])

    return built_once(tmp_path_factory, "small-lm", build)


def test_kenlm_model_loads_and_prefers_in_domain_text(small_lm):
    import kenlm

    path, report = small_lm
    assert report["sentences"] == 3000 and path.with_suffix(".arpa").exists()
    model = kenlm.Model(str(path))
    held_out = toy_sentences(200, seed=12)
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(s.split(), len(s.split()))) for s in held_out]
    in_domain, scrambled = text_metrics.lm_scores(model, held_out), text_metrics.lm_scores(model, shuffled)
    assert 1.5 < in_domain["perplexity"] < 30
    assert scrambled["perplexity"] > 3 * in_domain["perplexity"]
    assert in_domain["nll_bits_per_word"] == pytest.approx(math.log2(in_domain["perplexity"]))
    assert in_domain["oov_words"] == 0
    assert text_metrics.lm_scores(model, ["zebra quux ."])["oov_words"] == 2


def test_evaluate_prints_the_row_and_writes_json(small_lm, tmp_path):
    lm, _ = small_lm
    reference, corpus = tmp_path / "ref.txt", tmp_path / "corpus.txt"
    reference.write_text("\n".join(toy_sentences(20, seed=5)) + "\n")
    corpus.write_text("\n".join(toy_sentences(500, seed=6)) + "\n")
    out = run([*EVALUATE, "--reference", reference, "--reconstructions", reference, "--samples", reference,
               "--corpus", corpus, "--lm", lm, "--json", tmp_path / "row.json", "--name", "copy"]).stdout
    assert "| copy | 100.00 |" in out and "tok:none" in out
    report = json.loads((tmp_path / "row.json").read_text())
    assert report["metrics"]["bleu"] == pytest.approx(100.0)
    for key in ("nll_bits_per_word", "nll_nats_per_word", "nll_nats_per_sentence", "perplexity", "unigram_kl",
                "unigram_kl_smoothed", "entropy", "avg_len", "distinct_1"):
        assert key in report["metrics"]
    assert len(report["meta"]["lm_sha256"]) == 64
    corpus_row = run([*EVALUATE, "--corpus", corpus, "--lm", lm]).stdout
    assert "| Corpus | - |" in corpus_row


def test_evaluate_bad_inputs_fail_clearly_without_partial_json(small_lm, tmp_path):
    lm, _ = small_lm
    good, short, empty = tmp_path / "good.txt", tmp_path / "short.txt", tmp_path / "empty.txt"
    good.write_text("a man sleeps .\na dog runs .\n")
    short.write_text("a man sleeps .\n")
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n")  # one sentence, of length 0
    bad_lm = tmp_path / "bad.bin"
    bad_lm.write_bytes(b"this is not a language model\n")
    other = tmp_path / "other.txt"
    other.write_text("zz yy xx\n")
    cases = [
        (["--reference", good, "--reconstructions", short], "has 1 lines but"),
        (["--samples", empty, "--corpus", good], "--samples: " + str(empty) + " is empty"),
        (["--samples", blank, "--corpus", good], "the generated sentences hold no words"),
        (["--samples", good, "--lm", tmp_path / "missing.bin"], "--lm: no such file"),
        (["--samples", good, "--lm", bad_lm], "is not a KenLM"),
        (["--samples", other, "--corpus", good], "no generated word occurs in the corpus"),
    ]
    for args, message in cases:
        result = run([*EVALUATE, *args, "--json", tmp_path / "out.json"], check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr[-500:])
        assert not (tmp_path / "out.json").exists()


def test_latent_metrics_vanish_for_a_collapsed_posterior_and_not_otherwise(toy_data):
    import torch

    from fairseq_wae.latent_space import evaluate_latent_space, mutual_information
    from helpers import build, interface

    task, model, _ = build(toy_data, "lstm_vae_tiny", "vae_kl")
    model.eval()
    sentences = (toy_data.parent / "test.txt").read_text().splitlines()[:60]
    batches = list(interface(task, model).batches(sentences, tokenize=False, batch_size=30))
    head = model.encoder.latent_head
    with torch.no_grad():  # q(z|x) = N(0, I) for every x: the posterior has collapsed onto the prior
        for layer in (head.to_mean, head.to_logvar):
            layer.weight.zero_()
            layer.bias.zero_()
    collapsed = evaluate_latent_space(model, task, batches, num_importance_samples=5)
    assert collapsed["kl"] == pytest.approx(0.0, abs=1e-9) and collapsed["active_units"] == 0
    assert abs(collapsed["mutual_information"]) < 0.5  # Monte-Carlo noise of the estimator only
    # informative posteriors: tight, well separated means give I(x; z) close to its bound log N
    mean = torch.arange(60, dtype=torch.float64).unsqueeze(1).repeat(1, 4)
    informative = mutual_information(mean, torch.full_like(mean, -6.0), torch.Generator().manual_seed(0))
    assert informative == pytest.approx(math.log(60), abs=0.05)
    # a decoder that ignores z as well: p(x|z) = p(x), and with q = p every importance weight is p(x)
    # exactly, so the importance-weighted NLL is the decoder's teacher-forced NLL, computed here apart
    from fairseq_wae.criterions.ae_cross_entropy import reconstruction_loss

    embed_dim = model.encoder.embed_tokens.embedding_dim
    with torch.no_grad():
        model.decoder.latent_to_state.weight.zero_()
        model.decoder.lstm.weight_ih_l0[:, embed_dim:] = 0.0
    ignored = evaluate_latent_space(model, task, batches, num_importance_samples=5)
    d = task.source_dictionary
    exact, words = 0.0, 0
    for tokens, lengths in batches:
        prev = torch.cat([torch.full_like(tokens[:, :1], d.eos()), tokens[:, :-1]], 1).masked_fill(tokens.eq(d.pad()),
                                                                                                  d.pad())
        with torch.no_grad():
            logits, _ = model(tokens, lengths, prev)
        exact += reconstruction_loss(logits, tokens, d.pad()).item()
        words += int(lengths.sum())
    assert ignored["iw_nll_per_sentence"] == pytest.approx(exact / 60, rel=1e-5)
    assert ignored["iw_ppl"] == pytest.approx(math.exp(exact / words), rel=1e-5)


def test_evaluate_checkpoint_writes_a_row_and_honours_a_length_cap(overfit_dae, small_lm, tmp_path):
    binaries, ckpt, _ = overfit_dae
    lm, _ = small_lm
    data = shutil.copytree(binaries, tmp_path / "data")  # plus the training text, UnigramKL's reference
    shutil.copy(binaries.parent / "train.txt", data / "train.txt")
    script = ["bash", REPO / "scripts" / "evaluate_checkpoint.sh", ckpt / "checkpoint_best.pt", data, lm]
    run([*script, tmp_path / "capped" / "dae", 30, "--max-len-b", 4])
    # the DAE reconstructs its training sentences (the test split here): greedy decoding capped at 4 words
    # gives each one's first 4 words, in the order of the references the script wrote
    references = (tmp_path / "capped" / "dae.ref.txt").read_text().splitlines()
    capped = (tmp_path / "capped" / "dae.recon.txt").read_text().splitlines()
    assert sorted(references) == sorted((binaries.parent / "test.txt").read_text().splitlines())
    assert capped == [" ".join(line.split()[:4]) for line in references]
    samples = (tmp_path / "capped" / "dae.samples.txt").read_text().splitlines()
    assert len(samples) == 30 and max(len(line.split()) for line in samples) == 4
    report = json.loads((tmp_path / "capped" / "dae.json").read_text())
    assert 0.0 < report["metrics"]["bleu"] < 100.0


def test_code_spectrum_against_a_covariance_built_exactly():
    import torch

    from fairseq_wae.latent_space import code_spectrum

    raw = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    raw = raw - raw.mean(0)
    whitened = raw @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(raw.T))).T  # covariance exactly I
    eigenvalues, mean = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64), torch.tensor([3.0, 0.0, 4.0])
    codes = whitened * eigenvalues.sqrt() + mean
    spectrum = code_spectrum(codes)
    assert spectrum["mean_norm"] == pytest.approx(5.0)
    assert [spectrum[f"eigenvalue_{k}"] for k in ("min", "median", "max")] == pytest.approx([0.25, 1.0, 4.0])
    assert spectrum["participation_ratio"] == pytest.approx(5.25**2 / (16 + 1 + 0.0625))
    with pytest.raises(ValueError, match="at least two codes"):
        code_spectrum(codes[:1])


def test_blends_walk_from_the_codes_to_the_prior_and_the_gaussian_fit_keeps_two_moments():
    import torch

    from fairseq_wae.latent_space import blend_toward_prior, gaussian_fit_sample

    codes = torch.randn(20000, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(blend_toward_prior(codes, 0.0), codes)
    noise = torch.randn(codes.shape, generator=torch.Generator().manual_seed(2), dtype=codes.dtype)
    assert torch.allclose(blend_toward_prior(codes, 1.0, torch.Generator().manual_seed(2)), noise)
    # N(0, I) codes stay N(0, I) at every blend
    blended = blend_toward_prior(codes, 0.6, torch.Generator().manual_seed(3))
    assert torch.allclose(torch.cov(blended.T), torch.eye(4, dtype=codes.dtype), atol=0.05)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_toward_prior(codes, 1.5)

    skewed = codes * torch.tensor([3.0, 1.0, 0.5, 0.1], dtype=codes.dtype) + 2.0
    drawn = gaussian_fit_sample(skewed, 50000, torch.Generator().manual_seed(4))
    assert drawn.shape == (50000, 4)
    assert torch.allclose(drawn.mean(0), skewed.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(drawn.T), torch.cov(skewed.T), rtol=0.05, atol=0.01)


def test_latent_coverage_decodes_the_training_sentences_back_and_refuses_bad_flags(overfit_dae, tmp_path):
    binaries, ckpt, _ = overfit_dae
    train = binaries.parent / "train.txt"
    script = [sys.executable, REPO / "scripts" / "latent_coverage.py", "--path", ckpt / "checkpoint_best.pt",
              "--data", binaries, "--sentences", train, "--num", 50, "--max-len", 30]
    run([*script, "--blend", "0,1", "--json", tmp_path / "coverage.json"])
    report = json.loads((tmp_path / "coverage.json").read_text())
    rows = {row["source"]: row for row in report["rows"]}
    assert list(rows) == ["posterior codes", "blend s=0", "blend s=1", "Gaussian fit to the codes", "prior N(0, I)"]
    # the DAE reconstructs its 50 training sentences, so their decodes have the corpus's unigrams exactly
    assert rows["posterior codes"]["unigram_kl"] == pytest.approx(0.0, abs=1e-12)
    assert rows["blend s=0"] == {**rows["posterior codes"], "source": "blend s=0"}
    assert rows["prior N(0, I)"]["unigram_kl"] > 0.0
    assert report["codes"]["codes"] == 50

    for flags, message in ((["--blend", "0.5,2"], "--blend weights must be in [0, 1]"),
                           (["--num", 51], "--num 51 but"),
                           (["--num", 1], "--num is too small"),
                           (["--sentences", tmp_path / "missing.txt"], "no such file")):
        result = run([*script, *flags], check=False)
        assert result.returncode != 0 and message in result.stderr, (flags, result.stderr[-500:])
