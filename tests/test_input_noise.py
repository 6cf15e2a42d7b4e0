"""text-autoencoders' input noise on fairseq's right-padded, EOS-last source: each noise on a batch
worked out by hand, its rates and invariants on a large batch, and, in the criterion, on the encoder's
input alone, with draws keyed like the criterion's others."""
import pytest
import torch

from helpers import build, first_batch
from fairseq_wae.data.noising import InputNoise, word_blank, word_drop, word_shuffle, word_substitute

EOS, PAD, BLANK = 2, 1, 0
# two sentences of 4 and 2 words, EOS last, right-padded
TOKENS = torch.tensor([[10, 11, 12, 13, EOS, PAD],
                       [20, 21, EOS, PAD, PAD, PAD]])
LENGTHS = torch.tensor([5, 3])
# the uniform draws, chosen; those at EOS and padding are small, so that a noise that did not spare
# them would blank, substitute or drop them
UNIFORM = torch.tensor([[0.9, 0.1, 0.6, 0.0, 0.2, 0.05],
                        [0.8, 0.1, 0.01, 0.02, 0.3, 0.4]])


def test_word_shuffle_by_hand():
    # distance 1: keys i + 2u. Row 0: 1.8, 1.2, 3.2, 3.0 -> 11 10 13 12; row 1: 1.6, 1.2 -> 21 20;
    # EOS and padding get the offset 2: 6 and 7 in row 0, 4 and 5-7 in row 1, behind every word
    shuffled = word_shuffle(TOKENS, LENGTHS, 1, UNIFORM)
    assert shuffled.tolist() == [[11, 10, 13, 12, EOS, PAD], [21, 20, EOS, PAD, PAD, PAD]]
    # distance 0 keeps the order: keys i + u, u < 1
    assert torch.equal(word_shuffle(TOKENS, LENGTHS, 0, UNIFORM), TOKENS)


def test_word_drop_by_hand():
    # rate 0.5 drops the words drawn below 0.5 (11 and 13; 21), never EOS: the rest moves left
    dropped, lengths = word_drop(TOKENS, LENGTHS, 0.5, PAD, UNIFORM)
    assert dropped.tolist() == [[10, 12, EOS, PAD, PAD, PAD], [20, EOS, PAD, PAD, PAD, PAD]]
    assert lengths.tolist() == [3, 2] and lengths.dtype == LENGTHS.dtype
    # every word may go, as in text-autoencoders: EOS remains
    dropped, lengths = word_drop(TOKENS, LENGTHS, 1.0, PAD, UNIFORM)
    assert dropped[:, 0].tolist() == [EOS, EOS] and dropped[:, 1:].eq(PAD).all() and lengths.tolist() == [1, 1]


def test_word_blank_by_hand():
    blanked = word_blank(TOKENS, LENGTHS, 0.5, BLANK, UNIFORM)
    assert blanked.tolist() == [[10, BLANK, 12, BLANK, EOS, PAD], [20, BLANK, EOS, PAD, PAD, PAD]]


def test_word_substitute_by_hand():
    replacements = torch.arange(100, 112).view(2, 6)
    substituted = word_substitute(TOKENS, LENGTHS, 0.5, replacements, UNIFORM)
    assert substituted.tolist() == [[10, 101, 12, 103, EOS, PAD], [20, 107, EOS, PAD, PAD, PAD]]


def random_batch(rows=400, width=30, first_word=4, vocabulary=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (rows,), generator=generator)  # an EOS-only sentence too
    tokens = torch.randint(first_word, vocabulary, (rows, width), generator=generator)
    positions = torch.arange(width).unsqueeze(0)
    tokens = tokens.masked_fill(positions == (lengths - 1).unsqueeze(1), EOS)
    return tokens.masked_fill(positions >= lengths.unsqueeze(1), PAD), lengths


class _Dictionary:
    """What InputNoise reads of a fairseq Dictionary: special symbols 0-3, words 4-49, two fillers."""
    nspecial = 4

    def __len__(self):
        return 52

    def __getitem__(self, i):
        return f"madeupword{i}" if i >= 50 else f"w{i}"

    def pad(self):
        return PAD

    def bos(self):
        return BLANK


def keyed(seed):
    return lambda name: torch.Generator().manual_seed(seed * 10 + InputNoise.NAMES.index(name))


@pytest.mark.parametrize("noise,rate", [("shuffle_distance", 3), ("drop", 0.3), ("blank", 0.2), ("substitute", 0.25)])
def test_each_noise_on_a_large_batch_touches_words_alone_at_its_rate(noise, rate):
    tokens, lengths = random_batch()
    noisy, new_lengths = InputNoise(_Dictionary(), **{noise: rate})(tokens, lengths, keyed(1))
    shuffle_draws = torch.rand(tokens.shape, generator=keyed(1)("noise_shuffle"))
    changed = changed_words = 0
    for row in range(len(tokens)):
        n = int(lengths[row]) - 1  # words
        words, out = tokens[row, :n].tolist(), noisy[row].tolist()
        m = int(new_lengths[row]) - 1
        assert out[m] == EOS and all(t == PAD for t in out[m + 1:]), (row, out)
        kept = out[:m]
        if noise == "drop":
            it = iter(words)  # the kept words are a subsequence of the sentence, in order
            assert all(any(w == v for v in it) for w in kept), (words, kept)
            changed, changed_words = changed + n - m, changed_words + n
            continue
        assert m == n
        if noise == "shuffle_distance":
            # a permutation moving no word more than k places (positions of equal words may pair up either way)
            assert sorted(kept) == sorted(words)
            assert all(any(words[j] == w for j in range(max(0, i - rate), min(n, i + rate + 1)))
                       for i, w in enumerate(kept)), (words, kept)
            # the words in the order of their keys i + (k + 1) u_i, u the shuffle's own draws (float32, as drawn)
            keys = torch.arange(n, dtype=torch.float32) + (rate + 1) * shuffle_draws[row, :n]
            assert kept == [words[i] for i in sorted(range(n), key=lambda i: float(keys[i]))], (words, kept)
            changed += sum(a != b for a, b in zip(words, kept))
            changed_words += n
        else:
            replaced = [i for i in range(n) if kept[i] != words[i]]
            if noise == "blank":
                assert all(kept[i] == BLANK for i in replaced)
            else:
                assert all(4 <= kept[i] < 50 for i in replaced)  # a word: no special symbol, no filler
            changed, changed_words = changed + len(replaced), changed_words + n
    if noise == "substitute":  # a draw of the same word (1 in 46) leaves it unchanged
        rate = rate * 45 / 46
    if noise != "shuffle_distance":  # (the shuffle's rows are checked one by one above)
        assert changed / changed_words == pytest.approx(rate, abs=0.015)


def test_noise_reaches_the_encoder_alone_in_training_with_keyed_draws(toy_data):
    task, model, crit = build(toy_data, "lstm_wae_tiny", "wae_mmd", "--noise-drop", "0.3", "--noise-blank", "0.1",
                              "--noise-substitute", "0.1", "--noise-shuffle-distance", "3")
    seen = []
    forward = model.forward
    model.forward = lambda **net_input: seen.append(net_input) or forward(**net_input)
    sample = first_batch(task, size=32)
    clean = {key: value.clone() for key, value in sample["net_input"].items()}
    target = sample["target"].clone()

    model.train()
    crit.set_training_progress(4, 1)
    crit(model, sample)  # micro-batch 0 of update 4
    crit(model, sample)  # micro-batch 1
    crit.set_training_progress(5, 1)
    crit.set_training_progress(4, 1)
    crit(model, sample)  # micro-batch 0 of update 4 again
    model.eval()
    crit(model, sample)
    first, second, again, evaluation = seen

    for net_input in seen:  # the decoder reads the clean sentence, and the loss is against it
        assert torch.equal(net_input["prev_output_tokens"], clean["prev_output_tokens"])
    assert torch.equal(sample["target"], target) and torch.equal(sample["net_input"]["src_tokens"], clean["src_tokens"])
    noisy, lengths = first["src_tokens"], first["src_lengths"]
    assert not torch.equal(noisy, clean["src_tokens"]) and (lengths < clean["src_lengths"]).any()
    assert torch.equal(lengths, noisy.ne(task.source_dictionary.pad()).sum(1))
    assert noisy.gather(1, (lengths - 1).unsqueeze(1)).eq(task.source_dictionary.eos()).all()
    assert noisy.eq(task.source_dictionary.bos()).any()  # blanks
    assert torch.equal(again["src_tokens"], noisy) and not torch.equal(second["src_tokens"], noisy)
    assert torch.equal(evaluation["src_tokens"], clean["src_tokens"])
    assert torch.equal(evaluation["src_lengths"], clean["src_lengths"])


@pytest.mark.parametrize("arch", ["lstm_ae_tiny", "transformer_ae_tiny"])
def test_the_encoder_reads_a_row_with_dropped_words_as_that_shorter_sentence_alone(toy_data, arch):
    # dropping shortens rows inside a batch of unchanged width: lengths and padding must say so
    task, model, crit = build(toy_data, arch, "ae_cross_entropy", "--noise-drop", "0.4")
    sample = first_batch(task, size=16)
    crit.set_training_progress(1, 1)
    noisy = crit.noisy_source(sample["net_input"])
    tokens, lengths = noisy["src_tokens"], noisy["src_lengths"]
    assert (lengths < sample["net_input"]["src_lengths"]).any()
    model.eval()
    with torch.no_grad():
        batch = model.encoder(tokens, lengths)["z"]
        alone = torch.cat([model.encoder(tokens[i:i + 1, :n], lengths[i:i + 1])["z"] for i, n in enumerate(lengths)])
    assert torch.allclose(batch, alone, atol=1e-5)
