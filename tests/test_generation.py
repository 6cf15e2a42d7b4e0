"""fairseq-generate / fairseq-interactive / scripts on a DAE overfit to 50 sentences (conftest.overfit_dae)."""
import sys


from helpers import CLI_ENV, REPO, USER_DIR, assert_beam_scores_equal_a_fresh_forward_pass, run

EXTRACT = [sys.executable, REPO / "scripts" / "extract_hypotheses.py"]


def generate(data, checkpoint, *flags, check=True):
    return run(["fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", *flags],
               check=check)


def hypotheses(output, tmp_path, kind="H"):
    (tmp_path / "gen.out").write_text(output)
    return run([*EXTRACT, tmp_path / "gen.out", "--kind", kind]).stdout.splitlines()


def prior(data, checkpoint, tmp_path, n, *flags):
    out = generate(data, checkpoint, "--task", "prior_sampling", "--num-samples", n, "--batch-size", 5, *flags)
    return hypotheses(out.stdout, tmp_path)


def test_overfit_dae_reconstructs_every_sentence_exactly_with_greedy_search(overfit_dae, tmp_path):
    data, ckpt, _ = overfit_dae
    out = generate(data, ckpt / "checkpoint_best.pt", "--task", "sentence_autoencoding", "--gen-subset", "test",
                   "--beam", "1", "--batch-size", "8").stdout
    references = (data.parent / "test.txt").read_text().splitlines()
    assert hypotheses(out, tmp_path) == references
    assert hypotheses(out, tmp_path, kind="T") == references


def test_beam_search_scores_equal_a_fresh_forward_pass(overfit_dae):
    """(Exact reconstruction is not asked of beam search: fairseq ends a sentence once `beam` hypotheses
    have finished, and on a model this peaked, junk that ends early can fill those slots.)"""
    from fairseq_wae import LSTMAutoencoderModel

    data, ckpt, _ = overfit_dae
    autoencoder = LSTMAutoencoderModel.from_pretrained(str(ckpt), checkpoint_file="checkpoint_best.pt",
                                                       data_name_or_path=str(data))
    sentences = (data.parent / "test.txt").read_text().splitlines()[:8]
    assert assert_beam_scores_equal_a_fresh_forward_pass(autoencoder, sentences) == 8 * 5


def test_prior_sampling_gives_exactly_n_sentences_reproducible_per_seed(overfit_dae, tmp_path):
    data, ckpt, _ = overfit_dae
    first = prior(data, ckpt / "checkpoint_best.pt", tmp_path, 13, "--seed", "1")
    again = prior(data, ckpt / "checkpoint_best.pt", tmp_path, 13, "--seed", "1", "--batch-size", "4")
    other = prior(data, ckpt / "checkpoint_best.pt", tmp_path, 13, "--seed", "2")
    assert len(first) == 13 and all(first)
    assert first == again  # batching does not change the samples
    assert first != other
    assert len(set(first)) > 1


def test_top_k_1_sampling_equals_greedy(overfit_dae, tmp_path):
    data, ckpt, _ = overfit_dae
    greedy = prior(data, ckpt / "checkpoint_best.pt", tmp_path, 10, "--seed", "3", "--beam", "1")
    top1 = prior(data, ckpt / "checkpoint_best.pt", tmp_path, 10, "--seed", "3", "--beam", "1", "--sampling",
                 "--sampling-topk", "1")
    sampled = prior(data, ckpt / "checkpoint_best.pt", tmp_path, 10, "--seed", "3", "--beam", "1", "--sampling",
                    "--temperature", "3")
    assert top1 == greedy and sampled != greedy


def test_interpolation_endpoints_decode_to_the_inputs(overfit_dae):
    data, ckpt, _ = overfit_dae
    a, b = (data.parent / "train.txt").read_text().splitlines()[:2]
    for method in ("linear", "spherical"):
        out = run([sys.executable, REPO / "scripts" / "interpolate.py", "--path", ckpt / "checkpoint_best.pt",
                   "--data", data, a, b, "--steps", "5", "--method", method]).stdout.splitlines()
        assert len(out) == 5
        assert out[0] == f"0\t{a}" and out[-1] == f"4\t{b}"
    # z_1 - z_2 + z_3 in the order given (z_a - z_a + z_b is z_b); a real analogy is the Python interface's
    from fairseq_wae.models.hub_interface import from_checkpoint

    c = (data.parent / "train.txt").read_text().splitlines()[2]
    real = from_checkpoint(ckpt / "checkpoint_best.pt", data).analogy(a, b, c, tokenize=False)
    for triple, expected in (((a, a, b), b), ((a, b, c), real)):
        analogy = run([sys.executable, REPO / "scripts" / "interpolate.py", "--path", ckpt / "checkpoint_best.pt",
                       "--data", data, "--analogy", *triple]).stdout.splitlines()
        assert analogy == [f"0\t{expected}"]


def test_interactive_mode_reconstructs_a_typed_line(overfit_dae):
    import subprocess

    data, ckpt, _ = overfit_dae
    sentence = (data.parent / "train.txt").read_text().splitlines()[3]
    result = subprocess.run(["fairseq-interactive", str(data), "--user-dir", USER_DIR, "--task",
                             "sentence_autoencoding", "--path", str(ckpt / "checkpoint_best.pt"), "--cpu", "--beam", "1",
                             "--tokenizer", "normalized_moses"],
                            input=sentence + "\n", env=CLI_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(line.startswith("H-0\t") and line.endswith("\t" + sentence) for line in result.stdout.splitlines())


def test_bad_generation_requests_are_refused_clearly(overfit_dae):
    data, ckpt, _ = overfit_dae
    no_count = generate(data, ckpt / "checkpoint_best.pt", "--task", "prior_sampling", check=False)
    assert no_count.returncode != 0 and "--num-samples" in no_count.stderr
    posterior = generate(data, ckpt / "checkpoint_best.pt", "--task", "sentence_autoencoding", "--gen-subset", "test",
                         "--sample-posterior", check=False)
    assert posterior.returncode != 0 and "--sample-posterior needs a Gaussian latent head" in posterior.stderr


def test_a_checkpoint_with_another_dictionary_is_refused(overfit_dae, toy_data):
    _, ckpt, _ = overfit_dae
    result = generate(toy_data, ckpt / "checkpoint_best.pt", "--task", "sentence_autoencoding", "--gen-subset",
                      "test", check=False)
    assert result.returncode != 0 and "dictionary" in result.stderr


def test_extract_hypotheses_refuses_incomplete_output(tmp_path):
    (tmp_path / "gen.out").write_text("H-0\t-0.1\ta b\nH-2\t-0.3\tc d\n")
    result = run([*EXTRACT, tmp_path / "gen.out"], check=False)
    assert result.returncode == 2 and "1 sentence id of 3 has no H- line (first: [1])" in result.stderr


def test_extract_hypotheses_refuses_sources_without_hypotheses(tmp_path):
    """An interrupted fairseq-generate: its last sources have no hypothesis yet."""
    (tmp_path / "gen.out").write_text("S-0\ta b\nH-0\t-0.1\ta b\nS-2\te f\nH-2\t-0.2\te f\nS-1\tc d\n")
    result = run([*EXTRACT, tmp_path / "gen.out"], check=False)
    assert result.returncode == 2 and "1 sentence id of 3 has no H- line (first: [1])" in result.stderr
    (tmp_path / "gen.out").write_text("H-0\t-0.1\ta b\nGenerate test with beam=1: Translated 2 sentences (4 tokens)\n")
    result = run([*EXTRACT, tmp_path / "gen.out"], check=False)
    assert result.returncode == 2 and "1 sentence id of 2 has no H- line (first: [1])" in result.stderr


def test_extract_hypotheses_refuses_binary_input_naming_the_line(tmp_path):
    (tmp_path / "gen.out").write_bytes(b"H-0\t-0.1\ta b\n\xff\xfe\x00\x01\n")
    result = run([*EXTRACT, tmp_path / "gen.out"], check=False)
    assert result.returncode == 2 and "gen.out, line 2: not valid UTF-8" in result.stderr
