"""What text a model reads and writes: the tokenisation it records is the one every reader applies, typed
lines that are no sentence are refused one by one, and decoding never emits a symbol no sentence holds."""
import shutil
import sys

import pytest

from helpers import REPO, USER_DIR, built_once, run, train_command

PREPARE = [sys.executable, REPO / "scripts" / "prepare_corpus.py"]
EXPORT = [sys.executable, REPO / "scripts" / "export_model.py"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, toy_data):
    """A word-level and a sentencepiece corpus of the same sentences, a WAE trained 3 updates on each, and
    their exports: {"words": (data, checkpoint, export), "pieces": (...)}."""
    def build(folder):
        sentences = (toy_data.parent / "train.txt").read_text().splitlines()[:300]
        (folder / "s.txt").write_text("\n".join(sentences) + "\n")
        found = {}
        for name, flags in (("words", []), ("pieces", ["--spm-vocab-size", "60"])):
            data = folder / f"{name}-data"
            run([*PREPARE, "--input", folder / "s.txt", "--out", data, *flags])
            run(train_command(data, folder / f"{name}-ckpt", "--max-update", "3", "--disable-validation"))
            checkpoint = folder / f"{name}-ckpt" / "checkpoint_last.pt"
            run([*EXPORT, "--checkpoint", checkpoint, "--data", data, "--out", folder / f"{name}-export"])
            found[name] = data, checkpoint, folder / f"{name}-export"
        return found

    return built_once(tmp_path_factory, "tokenisations", build)


def load(folder):
    from fairseq_wae import LSTMAutoencoderModel

    return LSTMAutoencoderModel.from_pretrained(str(folder))


def copy_of(folder, target):
    shutil.copytree(folder, target)
    return target


def test_a_folder_that_tokenises_otherwise_than_the_model_is_refused_naming_the_file(models, tmp_path):
    from fairseq_wae.errors import CheckpointError

    assert load(models["pieces"][2]).sample(2, seed=1)  # as exported, both load
    assert load(models["words"][2]).sample(2, seed=1)
    no_pieces = copy_of(models["pieces"][2], tmp_path / "no-spm")
    (no_pieces / "spm.model").unlink()
    with pytest.raises(CheckpointError, match=f"trained on sentencepiece pieces of a spm.model with sha256 .*, but "
                                              f"{no_pieces} has no spm.model"):
        load(no_pieces)
    stray = copy_of(models["words"][2], tmp_path / "stray-spm")
    shutil.copy(models["pieces"][2] / "spm.model", stray / "spm.model")
    with pytest.raises(CheckpointError, match=f"trained on words .*, but {stray}/spm.model is there"):
        load(stray)
    replaced = copy_of(models["pieces"][2], tmp_path / "other-spm")
    run([*PREPARE, "--input", models["words"][0] / "train.txt", "--out", tmp_path / "other", "--spm-vocab-size", "50"])
    shutil.copy(tmp_path / "other" / "spm.model", replaced / "spm.model")
    with pytest.raises(CheckpointError, match=f"{replaced}/spm.model is another sentencepiece model"):
        load(replaced)
    # fairseq's own commands read the model the same way, and so does the export
    data, checkpoint, _ = models["pieces"]
    (data / "spm.model").rename(data / "spm.model.aside")
    try:
        result = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                      checkpoint, "--cpu", "--gen-subset", "valid"], check=False)
        assert result.returncode == 2 and f"{data} has no spm.model" in result.stderr
        result = run([*EXPORT, "--checkpoint", checkpoint, "--data", data, "--out", tmp_path / "export"], check=False)
        assert result.returncode == 2 and f"{data} has no spm.model" in result.stderr
    finally:
        (data / "spm.model.aside").rename(data / "spm.model")


def interactive(data, checkpoint, lines, *flags):
    return run(["fairseq-interactive", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                checkpoint, "--cpu", "--max-len-b", "5", *flags], input=lines, check=False)


def test_interactive_needs_the_corpus_tokeniser_and_refuses_lines_that_are_no_sentence_one_by_one(models):
    data, checkpoint, _ = models["words"]
    result = interactive(data, checkpoint, "a man sleeps .\n")
    assert result.returncode == 2 and "prepared as words (no sentencepiece model): read typed text as the corpus was prepared, " \
        "with --tokenizer normalized_moses" in result.stderr
    data, checkpoint, _ = models["pieces"]
    result = interactive(data, checkpoint, "a man sleeps .\n", "--tokenizer", "normalized_moses")
    assert result.returncode == 2 and f"--bpe sentencepiece --sentencepiece-model {data}/spm.model" in result.stderr
    typed = "A man sleeps.\n\n   \n\ufeff\nqqqq zzzz\n<pad> man\nThe woman eats.\n"
    data, checkpoint, _ = models["words"]
    result = interactive(data, checkpoint, typed, "--tokenizer", "normalized_moses")
    assert result.returncode == 0, result.stderr[-3000:]
    answered = sorted(int(line.split("\t")[0][2:]) for line in result.stdout.splitlines() if line.startswith("H-"))
    assert answered == [0, 5, 6]  # the empty, blank, BOM-only and unknown-words lines get no made-up sentence
    warned = "\n".join(line for line in (result.stdout + result.stderr).splitlines() if "not reconstructed" in line)
    for number, why in ((2, "is empty or blank"), (3, "is empty or blank"), (4, "is empty or blank"),
                        (5, "has no word in the model's dictionary")):
        assert f"input line {number} " in warned and why in warned, (number, warned)


def test_decoding_never_emits_a_symbol_no_training_sentence_holds(models):
    """fairseq-preprocess pads the dictionary with madeupword symbols; a briefly trained model gives them
    (and <s>, <pad>) probability, and sampling used to pick them in about half of 50 prior samples."""
    data, checkpoint, export = models["words"]
    symbols = [line.split()[0] for line in (data / "dict.txt").read_text().splitlines()]
    padding = [s for s in symbols if s.startswith("madeupword")]
    assert padding, "the dictionary holds no padding symbol: the test would prove nothing"
    result = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples", "50",
                  "--path", checkpoint, "--cpu", "--sampling", "--beam", "1", "--seed", "1", "--max-len-b", "20"])
    tokens = [t for line in result.stdout.splitlines() if line.startswith("H-") for t in line.split("\t")[2].split()]
    assert len(tokens) > 50 and not {"<s>", "<pad>", *padding} & set(tokens)
    model = load(export)
    for search in ({"sampling": True}, {"beam": 3}, {}):
        for sentence in model.sample(20, seed=2, tokenize=False, max_len_b=20, **search):
            assert not {"<s>", "<pad>", *padding} & set(sentence.split()), (search, sentence)
