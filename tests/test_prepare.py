"""scripts/prepare_snli.py, prepare_corpus.py and train_word2vec.py on tiny fixtures made here."""
import gzip
import json
import sys
import zipfile

import pytest

from helpers import REPO, run, toy_sentences

PREPARE_SNLI = [sys.executable, REPO / "scripts" / "prepare_snli.py"]
PREPARE_CORPUS = [sys.executable, REPO / "scripts" / "prepare_corpus.py"]


def snli_records(n):
    sentences = toy_sentences(2 * n, seed=3)
    return [{"gold_label": "neutral", "sentence1": sentences[2 * i].capitalize(), "sentence2": sentences[2 * i + 1]}
            for i in range(n)]


@pytest.fixture
def snli_zip(tmp_path):
    """A miniature official release: train/dev/test jsonl inside snli_1.0/."""
    path = tmp_path / "snli_1.0.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for split, n in (("train", 150), ("dev", 10), ("test", 10)):
            lines = "\n".join(json.dumps(r) for r in snli_records(n)) + "\n"
            archive.writestr(f"snli_1.0/snli_1.0_{split}.jsonl", lines)
    return path


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_official_zip_counts_splits_and_manifest(snli_zip, tmp_path):
    out = tmp_path / "corpus"
    unique = len(set(s.lower() for r in snli_records(150) for s in (r["sentence1"], r["sentence2"])))
    run([*PREPARE_SNLI, "--snli-path", snli_zip, "--num-sentences", "200", "--split", "160,20,20", "--out", out,
         "--vocab-size", "30"])
    splits = {name: read_lines(out / f"{name}.txt") for name in ("train", "valid", "test")}
    assert [len(splits[n]) for n in ("train", "valid", "test")] == [160, 20, 20]
    assert not (set(splits["train"]) & set(splits["valid"])) and not (set(splits["train"]) & set(splits["test"]))
    assert not (set(splits["valid"]) & set(splits["test"]))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unique_sentences"] == unique
    assert manifest["counts"] == {"train": 160, "valid": 20, "test": 20}
    assert manifest["options"]["seed"] == 1 and len(manifest["inputs"][0]["sha256"]) == 64
    assert all(s == s.lower() and s.endswith(" .") for s in splits["train"])
    words = [line.split()[0] for line in read_lines(out / "dict.txt") if not line.startswith("madeupword")]
    assert len(words) <= 30 and manifest["vocabulary_size"] >= 30
    assert 0 < manifest["test_oov_rate"] < 1
    for name in ("train", "valid", "test"):
        assert (out / f"{name}.bin").stat().st_size > 0 and (out / f"{name}.idx").exists()


def test_same_seed_same_bytes_other_seed_other_subset(snli_zip, tmp_path):
    args = ["--snli-path", snli_zip, "--num-sentences", "100", "--split", "80,10,10"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run([*PREPARE_SNLI, *args, "--seed", seed, "--out", tmp_path / name])
    for f in ("train.txt", "valid.txt", "test.txt", "dict.txt", "train.bin", "train.idx", "manifest.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert read_lines(tmp_path / "a" / "train.txt") != read_lines(tmp_path / "c" / "train.txt")


def test_several_paths_merge_and_deduplicate_and_all_takes_everything(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt.gz"
    a.write_text("A man sleeps .\nTwo dogs run .\n")
    with gzip.open(b, "wt") as f:
        f.write("two dogs run .\nA cat eats .\n")
    out = tmp_path / "out"
    run([*PREPARE_SNLI, "--snli-path", a, "--snli-path", b, "--num-sentences", "all", "--split", "1,1,1",
         "--out", out])
    assert sorted(sum((read_lines(out / f"{n}.txt") for n in ("train", "valid", "test")), [])) == \
        ["a cat eats .", "a man sleeps .", "two dogs run ."]


def test_binaries_load_in_the_task(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(toy_sentences(300)) + "\n")
    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", text, "--out", out, "--max-len", "6"])
    from fairseq_wae.tasks.sentence_autoencoding import SentenceAutoencodingConfig, SentenceAutoencodingTask

    task = SentenceAutoencodingTask.setup_task(SentenceAutoencodingConfig(data=str(out), dataset_impl="mmap", seed=1))
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    lines = read_lines(out / "valid.txt")
    assert len(dataset) == len(lines)
    assert task.source_dictionary.string(dataset[0]["source"]) == lines[0]
    assert max(len(line.split()) for line in lines) <= 6


def test_sentencepiece_round_trip(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(toy_sentences(400)) + "\n")
    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", text, "--out", out, "--spm-vocab-size", "60"])
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    for line, pieces in zip(read_lines(out / "test.txt"), read_lines(out / "test.spm.txt")):
        assert processor.decode(pieces.split()) == line
    assert json.loads((out / "manifest.json").read_text())["options"]["spm_vocab_size"] == 60


def test_word2vec_file_loads_into_the_model_with_its_coverage(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(toy_sentences(300)) + "\n")
    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", text, "--out", out])
    vectors = out / "w2v.txt"
    printed = run([sys.executable, REPO / "scripts" / "train_word2vec.py", "--input", out / "train.txt",
                   "--out", vectors, "--dim", "32", "--epochs", "1", "--dict", out / "dict.txt"]).stdout
    assert "(100.0%)" in printed
    # centred: every dimension's mean over the vocabulary is 0, so frozen vectors are not nearly parallel
    rows = [[float(v) for v in line.split()[1:]] for line in read_lines(vectors)[1:]]
    column_means = [sum(column) / len(rows) for column in zip(*rows)]
    assert max(abs(m) for m in column_means) < 1e-5
    # drop two words from the file: coverage must say so, and those rows stay random
    lines = read_lines(vectors)
    kept = [lines[0].replace(lines[0].split()[0], str(int(lines[0].split()[0]) - 2), 1)] + lines[3:]
    vectors.write_text("\n".join(kept) + "\n")
    from fairseq.data import Dictionary
    import torch
    from fairseq_wae.embeddings import load_embedding_weights

    dictionary = Dictionary.load(str(out / "dict.txt"))
    initial = torch.zeros(len(dictionary), 32)
    weights, coverage = load_embedding_weights(str(vectors), dictionary, initial)
    real_words = len([w for w in read_lines(out / "dict.txt") if not w.startswith("madeupword")])
    assert coverage == pytest.approx((real_words - 2) / real_words)
    word, *values = lines[5].split()
    assert torch.allclose(weights[dictionary.index(word)], torch.tensor([float(v) for v in values]))
    missing = lines[1].split()[0]
    assert weights[dictionary.index(missing)].abs().sum() == 0


def test_glove_text_without_header_and_word2vec_binary(tmp_path):
    from fairseq.data import Dictionary
    import torch
    from gensim.models import KeyedVectors
    from fairseq_wae.embeddings import load_embedding_weights

    dictionary = Dictionary()
    for w in ("cat", "dog", "bird"):
        dictionary.add_symbol(w)
    glove = tmp_path / "glove.txt"
    glove.write_text("cat 1 2 3\ndog 4 5 6\n")
    weights, coverage = load_embedding_weights(str(glove), dictionary, torch.zeros(len(dictionary), 3))
    assert coverage == pytest.approx(2 / 3) and weights[dictionary.index("dog")].tolist() == [4, 5, 6]
    kv = KeyedVectors(3)
    kv.add_vectors(["bird"], [[7.0, 8.0, 9.0]])
    kv.save_word2vec_format(str(tmp_path / "vectors.bin"), binary=True)
    weights, coverage = load_embedding_weights(str(tmp_path / "vectors.bin"), dictionary, torch.zeros(len(dictionary), 3))
    assert coverage == pytest.approx(1 / 3) and weights[dictionary.index("bird")].tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="3-d vectors but --embed-dim is 5"):
        load_embedding_weights(str(glove), dictionary, torch.zeros(len(dictionary), 5))


def failure(cmd):
    result = run(cmd, check=False)
    assert result.returncode != 0
    return result.stderr


def test_bad_inputs_get_clear_errors(tmp_path):
    out = tmp_path / "out"
    assert "no such file: " in failure([*PREPARE_CORPUS, "--input", tmp_path / "missing.txt", "--out", out])
    (tmp_path / "empty.txt").write_text("")
    assert "empty.txt is empty" in failure([*PREPARE_CORPUS, "--input", tmp_path / "empty.txt", "--out", out])
    jsonl = tmp_path / "snli.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in snli_records(5)) + "\n")
    assert "looks like JSON lines" in failure([*PREPARE_CORPUS, "--input", jsonl, "--out", out])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a man sleeps .\n\n\xff\xfe broken\nthe dog runs .\na cat eats .\n")
    strict = failure([*PREPARE_CORPUS, "--input", bad, "--out", out, "--strict"])
    assert "bad.txt, line 2: empty line" in strict
    (tmp_path / "bad2.txt").write_bytes(b"a man sleeps .\n\xff\xfe broken\n")
    assert "bad2.txt, line 2: not valid UTF-8" in failure(
        [*PREPARE_CORPUS, "--input", tmp_path / "bad2.txt", "--out", out, "--strict"])
    lenient = run([*PREPARE_CORPUS, "--input", bad, "--out", out, "--split", "1,1,1"])
    assert "skipped 1 empty (lines 2); 1 non-UTF-8 (lines 3)" in lenient.stderr
    # the same corpus again, but --strict: read again (not "nothing to do") and refused at its first bad line
    assert "bad.txt, line 2: empty line" in failure([*PREPARE_CORPUS, "--input", bad, "--out", out, "--split", "1,1,1",
                                                     "--strict"])
    for flags, expected in ((["--workers", "0"], "--workers must be at least 1"),
                            (["--spm-vocab-size", "50", "--spm-input-sentences", "50"],
                             "--spm-input-sentences must be 0 (all) or more than 100")):
        assert expected in failure([*PREPARE_CORPUS, "--input", bad, "--out", tmp_path / "o4", *flags])
    assert "needs 30 sentences but the input has only 3" in failure(
        [*PREPARE_CORPUS, "--input", bad, "--out", tmp_path / "o2", "--split", "10,10,10"])
    assert "--num-sentences must be" in failure([*PREPARE_CORPUS, "--input", bad, "--out", tmp_path / "o3",
                                                 "--num-sentences", "lots"])


def test_an_output_folder_with_other_data_is_refused_unless_forced(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n".join(toy_sentences(40, seed=1)) + "\n")
    second.write_text("\n".join(toy_sentences(40, seed=2)) + "\n")
    out = tmp_path / "out"
    run([*PREPARE_CORPUS, "--input", first, "--out", out])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run([*PREPARE_CORPUS, "--input", first, "--out", out])  # same inputs and options: nothing to do
    assert "already holds another corpus" in failure([*PREPARE_CORPUS, "--input", second, "--out", out])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    run([*PREPARE_CORPUS, "--input", second, "--out", out, "--force"])
    assert (out / "train.txt").read_bytes() != before["train.txt"]
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


# streaming preparation: workers, de-duplication on disk, memory, sentencepiece's sample

def corpus_files(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def test_any_number_of_workers_writes_the_bytes_of_the_in_memory_algorithm(tmp_path):
    """Several batches (BATCH_SENTENCES) and duplicates across them: 1 and 3 workers write the same
    files, and the splits are what the in-memory algorithm (a dict for de-duplication, a list shuffled by
    random.Random(seed)) makes of the same lines."""
    import random

    from fairseq_wae.preprocess.tokenize import BATCH_SENTENCES, Tokenizer

    lines = toy_sentences(2 * BATCH_SENTENCES + 500, seed=4)
    lines = lines + [line.upper() for line in lines[::3]]  # duplicates once lower-cased, in later batches
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(lines) + "\n")
    for workers in (1, 3):
        run([*PREPARE_CORPUS, "--input", text, "--out", tmp_path / f"w{workers}", "--workers", workers, "--seed", 5])
    assert corpus_files(tmp_path / "w1") == corpus_files(tmp_path / "w3")

    tokenize = Tokenizer()
    distinct = list(dict.fromkeys(tokenize(line) for line in lines))
    order = list(range(len(distinct)))
    random.Random(5).shuffle(order)
    counts = json.loads((tmp_path / "w1" / "manifest.json").read_text())["counts"]
    assert len(distinct) < len(lines) and sum(counts.values()) == len(distinct)
    start = 0
    for name in ("train", "valid", "test"):
        expected = [distinct[i] for i in order[start:start + counts[name]]]
        assert read_lines(tmp_path / "w1" / f"{name}.txt") == expected, name
        start += counts[name]


def test_lines_that_share_a_hash_are_told_apart_byte_for_byte(tmp_path):
    """Every line given the same 8-byte digest: only the true repeats go, first occurrences stay in order."""
    import array

    from fairseq_wae.preprocess.tokenize import TokenizedSentences

    lines = [b"a b\n", b"c\n", b"a b\n", b"d e f\n", b"c\n", b"a b\n", b"g\n"]
    store = TokenizedSentences(str(tmp_path / "store"))
    store.add(b"".join(lines), array.array("q", map(len, lines)).tobytes(), bytes(8 * len(lines)))
    store.finish()
    kept = store.first_occurrences()
    assert kept.tolist() == [0, 1, 3, 6] and [store.line(i) for i in kept] == [b"a b\n", b"c\n", b"d e f\n", b"g\n"]
    store.close()
    assert not (tmp_path / "store").exists()


def test_memory_grows_by_tens_of_bytes_a_sentence_not_by_the_sentences(tmp_path):
    """tracemalloc's peak (numpy's arrays included) while preparing n and 3n distinct sentences: the
    difference per extra sentence is what the preparation keeps of each one. Holding the sentences, as
    it did before, cost about 1.9 KB a sentence."""
    import tracemalloc

    from fairseq_wae.preprocess.prepare import prepare
    from fairseq_wae.preprocess.readers import plain_sentences

    base = toy_sentences(500, seed=6)

    def peak(count):
        text = tmp_path / f"{count}.txt"
        text.write_text("".join(f"{base[i % len(base)]} {i // len(base)}\n" for i in range(count)))
        reports = []
        sentences = plain_sentences(str(text), False, reports)
        tracemalloc.start()
        manifest = prepare([str(text)], sentences, str(tmp_path / f"out{count}"), num_sentences=None,
                           split="0.9,0.05,0.05", seed=1, vocab_size=1000, max_len=None, spm_vocab_size=None,
                           force=False, reports=reports)
        _, highest = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert manifest["unique_sentences"] == len(set(text.read_text().splitlines()))  # the toy's are tokenised
        return highest

    small, large = peak(2000), peak(6000)
    assert (large - small) / 4000 < 250, (small, large)


def test_sentencepiece_trains_on_a_seeded_sample_only_above_its_bound(tmp_path):
    """A bound above the train split reads it all, in order: the model of an unbounded run (as before the
    bound existed); a bound below it trains on a sample, the same one every time. The folders differ:
    spm.model records no path that would tell them apart."""
    from fairseq_wae.preprocess.binarize import train_sentencepiece

    def trained(name, bound):
        folder = tmp_path / name
        folder.mkdir()
        for split, sentences in (("train", toy_sentences(600, seed=8)), ("valid", ["a man ."]), ("test", ["a dog ."])):
            (folder / f"{split}.txt").write_text("\n".join(sentences) + "\n")
        train_sentencepiece(str(folder), 60, bound)
        return corpus_files(folder)

    unbounded = trained("all", 0)
    assert trained("above", 601) == unbounded
    sampled = trained("sampled", 200)
    assert sampled != unbounded and trained("sampled-again", 200) == sampled


def test_the_binaries_are_the_bytes_fairseq_preprocess_writes(tmp_path):
    """dict.txt and every .bin/.idx against fairseq-preprocess run on the prepared text, with a
    vocabulary smaller than the corpus's (words cut at the size, ties among them, <unk> in the binaries)."""
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(toy_sentences(400, seed=9)) + "\n")
    out, reference = tmp_path / "out", tmp_path / "fairseq"
    run([*PREPARE_CORPUS, "--input", text, "--out", out, "--vocab-size", "40"])
    run(["fairseq-preprocess", "--only-source", "--destdir", reference, "--workers", "2", "--nwordssrc", "40",
         "--trainpref", out / "train.txt", "--validpref", out / "valid.txt", "--testpref", out / "test.txt"])
    names = ["dict.txt"] + [f"{split}.{ext}" for split in ("train", "valid", "test") for ext in ("bin", "idx")]
    assert {name: (out / name).read_bytes() for name in names} == \
        {name: (reference / name).read_bytes() for name in names}
    assert 0 < json.loads((out / "manifest.json").read_text())["train_oov_rate"] < 1
