#!/usr/bin/env python
"""Speed and memory of fairseq-wae, as ratios against baselines measured in the same run.

    python scripts/benchmark.py --data DATA [--updates 150] [--out BENCHMARKS.json]

DATA: a fairseq-preprocess --only-source folder (the README's toy corpus, or data/snli from the SNLI
recipe). Prints a markdown table; every figure is measured here, now, on this machine:

- training words/s of lstm_{ae,vae,wae,aae}_paper through fairseq-train, against fairseq's built-in `lstm`
  (same embedding and hidden sizes, same vocabulary and batches) through the same fairseq-train path,
  and (``--train-baseline REV``) each model's with the plugin of git revision REV right after ours;
- the ceiling: words/s of the output layer alone (projection + log-softmax + cross-entropy, forward
  and backward) at the same batch shape, and our training words/s as a fraction of it;
- the penalty's cost: criterion step time with lambda = 0 against the full criterion, batch 32/128/512;
- the adversarial autoencoder's training step against the WAE's (``--adversarial``: that alone);
- generation: prior samples/s (greedy, beam 5) against reconstructions/s of the same count;
- evaluation: seconds to score 10k samples (BLEU, trigram-LM NLL, UnigramKL) and the KenLM build time
  per million words;
- peak resident memory of a paper-size training run;
- ``--transformer``: training words/s and peak RSS of transformer_{wae,ae}_small against fairseq's own
  `transformer` of the same sizes (before and after ours), and greedy prior sampling sentences/s of a
  Transformer checkpoint against an LSTM one;
- how the step scales with the vocabulary (5k/20k/50k; ours, the built-in lstm and the output layer,
  in-process on synthetic batches) and where a step goes (torch.profiler, ``--profile``);
- ``--startup N``: seconds from fairseq-train's start to its first update on a prepared corpus of N
  distinct sentences (SNLI's with a counter appended, written in a temporary folder and deleted
  afterwards), against fairseq's own `language_modeling` task on the same binaries (before and after ours).
- ``--prepare N``: prepare_corpus.py on N news sentences (../shared/data/lm, each followed by
  the number of times the file has been gone through), sentences/s and peak memory of the whole
  process tree with 1 and 2 workers, beside ``fairseq-preprocess --workers 2`` on the same text, and
  (``--prepare-baseline REV``) the preparation of git revision REV, whose output must be identical.

The built-in lstm is measured before and after our models, and both runs are printed: their spread
is the noise of this machine during the run.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "fairseq_wae")
# this checkout's fairseq_wae, here and in every command started, whichever checkout pip installed last
sys.path.insert(0, REPO)


def checkout_env(checkout):
    """The commands' environment, with the fairseq_wae of ``checkout`` first on their path."""
    path = [checkout] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(path)}


ENV = checkout_env(REPO)


class CommandFailed(RuntimeError):
    """A command that exited with an error: its last 3,000 characters of output shown, all of them kept."""

    def __init__(self, cmd, output):
        super().__init__(f"{' '.join(map(str, cmd))} failed:\n{output[-3000:]}")
        self.output = output


OURS = {
    "lstm_ae_paper + ae_cross_entropy": ["--arch", "lstm_ae_paper", "--criterion", "ae_cross_entropy"],
    "lstm_vae_paper + vae_kl": ["--arch", "lstm_vae_paper", "--criterion", "vae_kl"],
    # BN-VAE: the running statistics move once an update (end_update's all-reduce), not once a micro-batch
    "lstm_vae_paper + vae_kl --bn-posterior-mean 0.6": ["--arch", "lstm_vae_paper", "--criterion", "vae_kl",
                                                        "--bn-posterior-mean", "0.6"],
    "lstm_wae_paper + wae_mmd": ["--arch", "lstm_wae_paper", "--criterion", "wae_mmd"],
    "lstm_aae_paper + aae": ["--arch", "lstm_aae_paper", "--criterion", "aae"],
}
# fairseq's built-in LSTM encoder-decoder at the same sizes, no attention, on the same data
BUILTIN = ["--arch", "lstm", "--criterion", "cross_entropy", "--encoder-embed-dim", "300", "--decoder-embed-dim", "300",
           "--encoder-hidden-size", "100", "--decoder-hidden-size", "100", "--decoder-out-embed-dim", "100",
           "--encoder-layers", "1", "--decoder-layers", "1", "--decoder-attention", "False", "--dropout", "0.2"
           ]

# fairseq's own Transformer translation model at the sizes of transformer_*_small, on the same data
SMALL_TRANSFORMER = ["--encoder-embed-dim", "256", "--decoder-embed-dim", "256", "--encoder-ffn-embed-dim", "1024",
                     "--decoder-ffn-embed-dim", "1024", "--encoder-layers", "2", "--decoder-layers", "2",
                     "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--dropout", "0.1"]
BUILTIN_TRANSFORMER = ["--arch", "transformer", "--criterion", "cross_entropy", *SMALL_TRANSFORMER]
OURS_TRANSFORMER = {
    "transformer_wae_small + wae_mmd": ["--arch", "transformer_wae_small", "--criterion", "wae_mmd"],
    "transformer_ae_small + ae_cross_entropy": ["--arch", "transformer_ae_small", "--criterion", "ae_cross_entropy"],
}


def train_words_per_second(data, arch_flags, updates, task="sentence_autoencoding", checkout=REPO):
    """fairseq-train for ``updates`` updates with the plugin of ``checkout``; words/s averaged over the
    logged intervals after the first."""
    cmd = ["fairseq-train", data, "--user-dir", os.path.join(checkout, "fairseq_wae"), "--task", task, *arch_flags, "--optimizer", "adam",
           "--lr", "0.001", "--batch-size", "128", "--max-update", str(updates), "--cpu", "--seed", "1",
           "--no-save", "--disable-validation", "--log-format", "json", "--log-interval", "25"]
    if task == "translation":
        cmd += ["--source-lang", "src", "--target-lang", "tgt"]
    started = time.time()
    result = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, env=checkout_env(checkout),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(cmd, result.stderr)
    wps = [float(m) for m in re.findall(r'"wps": "([0-9.]+)"', result.stdout + result.stderr)]
    rss = int(re.search(r"MAXRSS (\d+)", result.stderr).group(1)) / 1024
    return {"wps": statistics.mean(wps[1:] or wps), "seconds": time.time() - started, "peak_rss_mb": rss}


# a tiny model, so that start-up (reading and checking the data, batching it) is most of the run
STARTUP_OURS = ["--task", "sentence_autoencoding", "--arch", "lstm_ae_tiny", "--criterion", "ae_cross_entropy"]
# fairseq's own task on the same binaries, in blocks of 12 tokens (its default break mode; a sentence is 12
# with its EOS on average, so about as many examples as ours; --sample-break-mode eos fails on numpy 2: np.compat)
STARTUP_LM = ["--task", "language_modeling", "--tokens-per-sample", "12", "--arch", "lstm_lm", "--criterion",
              "cross_entropy", "--decoder-embed-dim", "32", "--decoder-hidden-size", "64", "--decoder-out-embed-dim",
              "64"]
SNLI_SENTENCES = os.path.join(REPO, "..", "shared", "data", "snli")


def snli_sentences(folder):
    """The distinct sentences of the SNLI files in ``folder`` (``*.gz``, one sentence or a tab-separated
    pair a line), lower-cased, as lists of words."""
    import glob
    import gzip

    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                for sentence in line.lower().split("\t"):
                    if sentence.strip():
                        found.setdefault(" ".join(sentence.split()), None)
    return [sentence.split() for sentence in found]


def write_startup_corpus(folder, count, snli_folder):
    """A prepared folder of ``count`` distinct training sentences: SNLI's sentences, each followed by
    the number of times the list has been gone through (a word), until there are ``count``. The
    binaries are written straight in fairseq's mmap format (prepare_corpus.py tokenises about 6,000
    sentences/s here: half an hour for 10M), a repetition at a time (memory: SNLI's ids once);
    dict.txt by fairseq's Dictionary and manifest.json by the functions the preparation tool uses."""
    import struct

    import numpy as np
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import MMapIndexedDataset, _dtype_header_code, best_fitting_int_dtype

    from fairseq_wae.preprocess.manifest import describe_files, write_manifest

    base = snli_sentences(snli_folder)
    repetitions = -(-count // len(base))
    dictionary = Dictionary()
    for words in base:
        for word in words:
            dictionary.add_symbol(word)
    for r in range(repetitions):
        dictionary.add_symbol(str(r), n=len(base))
    dictionary.finalize(padding_factor=8)
    dictionary.save(os.path.join(folder, "dict.txt"))
    dtype = best_fitting_int_dtype(len(dictionary))
    sizes = np.array([len(words) + 2 for words in base], dtype=np.int32)  # the words, the counter, EOS
    template = np.concatenate([[dictionary.index(w) for w in words] + [0, dictionary.eos()] for words in base])
    template = template.astype(dtype)
    counter_slots = np.cumsum(sizes) - 2
    itemsize = np.dtype(dtype).itemsize
    with open(os.path.join(folder, "train.bin"), "wb") as data, open(os.path.join(folder, "train.idx"), "wb") as index:
        index.write(MMapIndexedDataset.Index._HDR_MAGIC + struct.pack("<Q", 1) +
                    struct.pack("<B", _dtype_header_code(dtype)) + struct.pack("<Q", count))
        for r in range(repetitions):
            kept = min(len(base), count - r * len(base))
            template[counter_slots] = dictionary.index(str(r))
            template[:int(sizes[:kept].sum())].tofile(data)
            sizes[:kept].tofile(index)
        offset = 0
        for r in range(repetitions):
            kept = min(len(base), count - r * len(base))
            pointers = offset + itemsize * (np.cumsum(sizes[:kept], dtype=np.int64) - sizes[:kept])
            pointers.tofile(index)
            offset += itemsize * int(sizes[:kept].sum())
    names = ["dict.txt", "train.bin", "train.idx"]
    write_manifest(folder, {"inputs": [{"path": "SNLI sentences (*.gz)", "distinct": len(base)}],
                            "options": {"startup_benchmark": count}, "counts": {"train": count},
                            **describe_files(folder, names)})
    return {"snli_sentences": len(base), "vocabulary": len(dictionary), "tokens": offset // itemsize}


def startup_seconds(data, task_flags):
    """Seconds from fairseq-train's start to its exit after the first update (no validation, no
    checkpoint, a tiny model: the rest is start-up)."""
    cmd = ["fairseq-train", data, "--user-dir", USER_DIR, *task_flags, "--optimizer", "adam", "--lr", "0.001",
           "--batch-size", "32", "--max-update", "1", "--cpu", "--seed", "1", "--no-save", "--disable-validation"]
    started = time.perf_counter()
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(cmd, result.stderr)
    return time.perf_counter() - started


def startup_speed(count, snli_folder):
    """fairseq-train's start-up on ``count`` sentences: fairseq's language_modeling before and after
    ours, on the same binaries, in a temporary folder deleted afterwards."""
    needed = count * 60  # bytes: about 12 two-byte tokens and 12 bytes of index a sentence, and slack
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < 2 * needed:
        raise RuntimeError(f"{count:,} sentences need about {needed / 1e9:.1f} GB and {free / 1e9:.1f} GB are free")
    folder = tempfile.mkdtemp(prefix="fairseq-wae-bench-startup-")
    try:
        started = time.perf_counter()
        corpus = write_startup_corpus(folder, count, snli_folder)
        written = time.perf_counter() - started
        lm = [startup_seconds(folder, STARTUP_LM)]
        ours = startup_seconds(folder, STARTUP_OURS)
        lm.append(startup_seconds(folder, STARTUP_LM))
        return {"sentences": count, **corpus, "write_seconds": written, "lm_seconds": lm, "ours_seconds": ours}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_startup_speed(row):
    lm = statistics.mean(row["lm_seconds"])
    print(f"{row['sentences']:,} distinct sentences ({row['snli_sentences']:,} SNLI sentences with a counter), "
          f"{row['tokens']:,} tokens ({row['tokens'] / row['sentences']:.1f} a sentence, EOS included), vocabulary "
          f"{row['vocabulary']:,}; written with dict.txt and manifest.json in {row['write_seconds']:.0f} s\n")
    print("| fairseq-train, start to first update | seconds | vs language_modeling (target <= 1.2) |\n|---|---|---|")
    for label, seconds in zip(("before", "after"), row["lm_seconds"]):
        print(f"| fairseq language_modeling, lstm_lm ({label} ours) | {seconds:.1f} | {seconds / lm:.2f} |")
    print(f"| sentence_autoencoding, lstm_ae_tiny | {row['ours_seconds']:.1f} | {row['ours_seconds'] / lm:.2f} |")
    print(f"\nlanguage_modeling: the mean of its two runs, {lm:.1f} s, is the 1.00 of the ratios")


NEWS = os.path.join(REPO, "..", "shared", "data", "lm")


def write_news_corpus(path, count, news_folder):
    """``count`` lines: the news sentences (``*.gz``) in order, each followed by the number of times the
    list has been gone through, until there are ``count``; distinct but where the news repeats a line
    (a few in a thousand). Returns the lines the news holds."""
    import glob
    import gzip

    base = []
    for source in sorted(glob.glob(os.path.join(news_folder, "*.gz"))):
        with gzip.open(source, "rt", encoding="utf-8") as f:
            base += [line.rstrip("\n") for line in f]
    with open(path, "w", encoding="utf-8") as f:
        for index in range(count):
            f.write(f"{base[index % len(base)]} {index // len(base)}\n")
    return len(base)


def tree_memory(pid):
    """(resident memory of process ``pid``, of it and its descendants, their proportional memory) in MB:
    the sum of RSS counts pages that forked workers share once per worker; PSS divides them among the
    sharers."""
    children, found = {}, [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    for process in found:
        found += children.get(process, [])
    main = rss = pss = 0
    for process in found:
        try:
            with open(f"/proc/{process}/smaps_rollup") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("Rss:", "Pss:")))
            rss += int(fields["Rss"].split()[0])
            pss += int(fields["Pss"].split()[0])
            main = main or int(fields["Rss"].split()[0])
        except (OSError, KeyError, ValueError):
            pass  # ended between the listing and the read
    return main / 1024, rss / 1024, pss / 1024


def measured_run(cmd, env=ENV):
    """Runs ``cmd``: its seconds, the CPU seconds of its process tree (the work done, which other load on
    the machine does not change) and the peaks of ``tree_memory`` (MB, sampled every 0.2 s)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:  # a pipe nobody reads would fill and stop the command
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, text=True)
        peaks = [0.0, 0.0, 0.0]
        while process.poll() is None:
            peaks = [max(peak, now) for peak, now in zip(peaks, tree_memory(process.pid))]
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            log.seek(0)
            raise CommandFailed(cmd, log.read())
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers too: each parent waited for its own
    cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peaks[0], "peak_tree_rss_mb": peaks[1], "peak_tree_pss_mb": peaks[2]}


def revision_checkout(revision, folder):
    """fairseq_wae and scripts of git revision ``revision``, extracted into ``folder``."""
    archive = subprocess.run(["git", "-C", REPO, "archive", revision, "fairseq_wae", "scripts"], capture_output=True,
                             check=True).stdout
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def load_average():
    return os.getloadavg()[0]


def prepare_speed(count, news_folder, baseline_revision=None):
    """prepare_corpus.py on ``count`` news sentences with 1 and 2 workers (and at
    ``baseline_revision``), and fairseq-preprocess --workers 2 on the same text, in a temporary folder
    deleted afterwards."""
    needed = count * 700  # bytes: the text, the tokenised copy, the splits and binaries, twice, and slack
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < needed:
        raise RuntimeError(f"{count:,} sentences need about {needed / 1e9:.1f} GB and {free / 1e9:.1f} GB are free")
    folder = tempfile.mkdtemp(prefix="fairseq-wae-bench-prepare-")
    try:
        text = os.path.join(folder, "news.txt")
        news_lines = write_news_corpus(text, count, news_folder)
        ours = os.path.join(REPO, "scripts", "prepare_corpus.py")
        runs, outputs = [], {}
        legs = [("ours", 1, ours, ENV), ("ours", 2, ours, ENV)]
        if baseline_revision:
            old = revision_checkout(baseline_revision, os.path.join(folder, "baseline"))
            legs.insert(0, (f"prepare_corpus.py at {baseline_revision}", 1, os.path.join(old, "scripts",
                                                                                      "prepare_corpus.py"),
                            checkout_env(old)))
        for label, workers, script, env in legs:
            out = os.path.join(folder, f"out-{len(runs)}")
            flags = ["--workers", str(workers)] if label == "ours" else []
            load = load_average()
            measured = measured_run([sys.executable, script, "--input", text, "--out", out, *flags], env)
            runs.append({"run": label, "workers": workers, **measured, "load_before": load,
                         "load_after": load_average()})
            outputs[len(runs) - 1] = {name: corpus_digest(os.path.join(out, name)) for name in sorted(os.listdir(out))}
            with open(os.path.join(out, "manifest.json")) as f:
                distinct = json.load(f)["unique_sentences"]
            shutil.rmtree(out)
        load = load_average()
        measured = measured_run(["fairseq-preprocess", "--only-source", "--trainpref", text, "--destdir",
                                 os.path.join(folder, "fairseq"), "--workers", "2", "--nwordssrc", "20000"])
        runs.append({"run": "fairseq-preprocess (whitespace split, train only)", "workers": 2, **measured,
                     "load_before": load, "load_after": load_average()})
        identical = all(outputs[i] == outputs[0] for i in outputs)
        return {"sentences": count, "distinct": distinct, "news_lines": news_lines, "runs": runs,
                "identical_outputs": identical}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def corpus_digest(path):
    from fairseq_wae.preprocess.manifest import sha256_of

    return sha256_of(path)


def print_prepare_speed(row):
    print(f"{row['sentences']:,} news sentences ({row['news_lines']:,} lines of news, each with a counter), "
          f"{row['distinct']:,} distinct after preparation; every run's files identical: {row['identical_outputs']}\n")
    base = row["runs"][0]
    print(f"| preparation | workers | seconds | sentences/s | vs {base['run']} | CPU seconds (process tree) | "
          "peak RSS MB (main process) | peak RSS MB (sum over the process tree) | peak PSS MB (process tree) | "
          "load average before / after |\n|---|---|---|---|---|---|---|---|---|---|")
    for run in row["runs"]:
        rate = row["sentences"] / run["seconds"]
        print(f"| {run['run']} | {run['workers']} | {run['seconds']:.0f} | {rate:,.0f} | "
              f"{base['seconds'] / run['seconds']:.2f} | {run['cpu_seconds']:.0f} | {run['peak_rss_mb']:.0f} | "
              f"{run['peak_tree_rss_mb']:.0f} | {run['peak_tree_pss_mb']:.0f} | "
              f"{run['load_before']:.1f} / {run['load_after']:.1f} |")


def translation_view(data):
    """The same binaries as a src->tgt translation corpus, for the built-in lstm: symlinks in a new
    temporary folder (a reused folder could still point at other data)."""
    folder = tempfile.mkdtemp(prefix="fairseq-wae-bench-")
    for lang in ("src", "tgt"):
        os.symlink(os.path.abspath(os.path.join(data, "dict.txt")), os.path.join(folder, f"dict.{lang}.txt"))
        for split in ("train", "valid"):
            for ext in ("bin", "idx"):
                os.symlink(os.path.abspath(os.path.join(data, f"{split}.{ext}")),
                           os.path.join(folder, f"{split}.src-tgt.{lang}.{ext}"))
    return folder


def output_layer_ceiling(vocab, hidden, tokens, repeats=20, loss_fn=None):
    """Tokens/s of projection + log-softmax + NLL (fairseq's way, or ``loss_fn``), forward and backward,
    on ``tokens`` positions."""
    loss_fn = loss_fn or fairseq_cross_entropy
    torch.manual_seed(0)
    layer = torch.nn.Linear(hidden, vocab)
    x = torch.randn(tokens, hidden, requires_grad=True)
    target = torch.randint(2, vocab, (tokens,))
    for _ in range(3):
        loss_fn(layer(x), target, 1).backward()
    started = time.perf_counter()
    for _ in range(repeats):
        loss_fn(layer(x), target, 1).backward()
    return tokens * repeats / (time.perf_counter() - started)


def synthetic_batch(vocab, sentences=128, length=11, seed=0):
    """``sentences`` random sentences of ``length`` words + EOS over a ``vocab``-word dictionary."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    generator = torch.Generator().manual_seed(seed)
    words = torch.randint(dictionary.nspecial, len(dictionary), (sentences, length), generator=generator)
    eos = torch.full((sentences, 1), dictionary.eos())
    target = torch.cat([words, eos], dim=1)
    batch = {"src_tokens": target, "src_lengths": torch.full((sentences,), length + 1),
             "prev_output_tokens": torch.cat([eos, words], dim=1)}
    return dictionary, batch, target


def builtin_lstm(dictionary):
    """fairseq's ``lstm`` at the sizes of BUILTIN, built in-process."""
    from argparse import Namespace

    from fairseq.models.lstm import LSTMModel, base_architecture

    args = Namespace(encoder_embed_dim=300, decoder_embed_dim=300, encoder_hidden_size=100, decoder_hidden_size=100,
                     decoder_out_embed_dim=100, encoder_layers=1, decoder_layers=1, decoder_attention="False",
                     dropout=0.2, max_source_positions=1024, max_target_positions=1024, criterion="cross_entropy")
    base_architecture(args)
    return LSTMModel.build_model(args, Namespace(source_dictionary=dictionary, target_dictionary=dictionary))


def our_wae(dictionary):
    from argparse import Namespace

    from fairseq.models import ARCH_CONFIG_REGISTRY
    from fairseq.utils import import_user_module

    import_user_module(Namespace(user_dir=USER_DIR))
    from fairseq_wae.models.lstm_autoencoder import LSTMAutoencoderModel

    args = Namespace()
    ARCH_CONFIG_REGISTRY["lstm_wae_paper"](args)
    return LSTMAutoencoderModel.build_model(args, Namespace(source_dictionary=dictionary))


def authors_kernel(latent_dim):
    """The authors' IMQ kernel: summed over their scales, C = 4 d_z (wae_mmd's defaults)."""
    from functools import partial

    from fairseq_wae.penalties import AUTHORS_IMQ_C_BASE_PER_DIM, AUTHORS_IMQ_SCALES, imq_kernel

    return partial(imq_kernel, latent_dim=latent_dim, scales=AUTHORS_IMQ_SCALES,
                   c_base_per_dim=AUTHORS_IMQ_C_BASE_PER_DIM)


def mmd_to_prior(z):
    """Eq. 3 between the codes and as many N(0, I) draws, with the authors' kernel."""
    from fairseq_wae.penalties import mmd_unbiased

    return mmd_unbiased(z, torch.randn_like(z), authors_kernel(z.size(1)))


def fairseq_cross_entropy(logits, target, pad):
    """What fairseq's ``cross_entropy`` criterion computes: log_softmax, then nll_loss."""
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    return torch.nn.functional.nll_loss(lprobs.view(-1, lprobs.size(-1)), target.view(-1), ignore_index=pad,
                                        reduction="sum")


def step_seconds(model, batch, target, pad, loss_fn, penalty=None, repeats=5):
    """Seconds per training step (forward, cross-entropy, backward, Adam) on one batch."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()

    def step():
        optimizer.zero_grad()
        logits, extra = model(**batch)
        loss = loss_fn(logits, target, pad)
        if penalty is not None:
            loss = loss + penalty(extra["latent"]["z"]) * target.numel()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def vocabulary_scaling(vocabularies, sentences=128, length=11):
    """Words/s of our WAE step and of the built-in lstm's step against the output-layer ceiling, per vocabulary."""
    from fairseq_wae.criterions.ae_cross_entropy import reconstruction_loss

    rows = []
    for vocab in vocabularies:
        torch.manual_seed(0)
        dictionary, batch, target = synthetic_batch(vocab, sentences, length)
        words = target.numel()
        ours = step_seconds(our_wae(dictionary), batch, target, dictionary.pad(), reconstruction_loss,
                            penalty=mmd_to_prior)
        builtin = step_seconds(builtin_lstm(dictionary), batch, target, dictionary.pad(), fairseq_cross_entropy)
        ceiling = output_layer_ceiling(len(dictionary), 100, tokens=words, repeats=5)
        rows.append({"vocabulary": len(dictionary), "ours_wps": words / ours, "builtin_wps": words / builtin,
                     "ceiling_wps": ceiling})
    return rows


def profile_step(vocab, sentences=128, length=11, steps=5, top=12):
    """torch.profiler over our WAE's training steps: the most expensive operators, and the step split
    into the output layer (ceiling measurement), the optimizer and the rest (LSTMs, embeddings, MMD)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from fairseq_wae.criterions.ae_cross_entropy import reconstruction_loss

    torch.manual_seed(0)
    dictionary, batch, target = synthetic_batch(vocab, sentences, length)
    model = our_wae(dictionary)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        optimizer.zero_grad()
        with record_function("forward"):
            logits, extra = model(**batch)
        with record_function("cross_entropy"):
            loss = reconstruction_loss(logits, target, dictionary.pad())
        with record_function("mmd"):
            loss = loss + mmd_to_prior(extra["latent"]["z"]) * target.numel()
        with record_function("backward"):
            loss.backward()
        with record_function("adam"):
            optimizer.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    averages = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in averages)
    labelled = {event.key: event.cpu_time_total / total for event in averages
                if event.key in ("forward", "cross_entropy", "mmd", "backward", "adam")}
    operators = sorted((event for event in averages if event.key not in labelled),
                       key=lambda event: event.self_cpu_time_total, reverse=True)[:top]
    words = target.numel()
    step_time = step_seconds(model, batch, target, dictionary.pad(), reconstruction_loss, penalty=mmd_to_prior)
    output_layer = words / output_layer_ceiling(len(dictionary), 100, tokens=words, repeats=5,
                                                 loss_fn=reconstruction_loss)
    return {"phases": labelled,
            "operators": [(event.key, event.self_cpu_time_total / total, event.count // steps) for event in operators],
            "step_ms": 1000 * step_time, "output_layer_ms": 1000 * output_layer}


def evaluation_speed(data, count=10000):
    """Seconds to score ``count`` samples (BLEU, trigram NLL, UnigramKL) and to build that trigram LM."""
    import kenlm

    from fairseq_wae import text_metrics

    train = os.path.join(data, "train.txt")
    with open(train, encoding="utf-8") as f:
        corpus = [line.strip() for line in f if line.strip()]
    references = [corpus[i % len(corpus)] for i in range(count)]
    hypotheses = [references[(i * 7919) % count] for i in range(count)]
    folder = tempfile.mkdtemp(prefix="fairseq-wae-bench-lm-")
    lm = os.path.join(folder, "lm3.bin")
    started = time.perf_counter()
    printed = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "train_lm.py"), "--corpus", train,
                              "--order", "3", "--out", lm], env=ENV, capture_output=True, text=True, check=True)
    build = time.perf_counter() - started
    words = json.loads(printed.stdout.strip().splitlines()[-1])["words"]
    model = kenlm.Model(lm)
    seconds = {}
    for name, score in (("BLEU", lambda: text_metrics.bleu(references, hypotheses)),
                        ("LM NLL", lambda: text_metrics.lm_scores(model, hypotheses)),
                        ("UnigramKL", lambda: text_metrics.unigram_kl(hypotheses, corpus))):
        started = time.perf_counter()
        score()
        seconds[name] = time.perf_counter() - started
    return {"samples": count, "seconds": seconds, "lm_words": words, "lm_build_seconds": build,
            "lm_build_seconds_per_million_words": build / words * 1e6}


def penalty_cost(data, batch_sizes, repeats=10):
    """The criterion's latent penalty (MMD, KL), forward and backward, against the whole criterion step
    (forward + backward) on the same batch of real sentences.

    The two are timed alternately and the medians compared: a difference of two separately timed steps
    drowns in this machine's noise (it came out negative)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    rows = []
    for arch, criterion, weight_flag in (("lstm_wae_paper", "wae_mmd", "--mmd-lambda"),
                                         ("lstm_vae_paper", "vae_kl", "--kl-weight")):
        parser = options.get_training_parser()
        args = options.parse_args_and_arch(parser, [data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                                                    "--arch", arch, "--criterion", criterion, weight_flag, "10",
                                                    "--cpu"])
        cfg = convert_namespace_to_omegaconf(args)
        task = tasks.setup_task(cfg.task)
        model, crit = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
        task.load_dataset("train")
        dataset = task.dataset("train")
        model.train()
        for batch in batch_sizes:
            sample = dataset.collater([dataset[i] for i in range(batch)])
            with torch.no_grad():
                net_input = sample["net_input"]
                latent = model.encoder(net_input["src_tokens"], net_input["src_lengths"])

            def penalty_only():
                leaves = {key: value.detach().requires_grad_() for key, value in latent.items()}
                crit.latent_penalty(model, leaves, sample)[0].backward()

            def whole_step():
                crit(model, sample)[0].backward()

            times = {"penalty": [], "step": []}
            for _ in range(2):
                whole_step(), penalty_only()
            for _ in range(repeats):
                for name, fn in (("step", whole_step), ("penalty", penalty_only)):
                    started = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - started)
            step, penalty = statistics.median(times["step"]), statistics.median(times["penalty"])
            rows.append({"criterion": criterion, "batch": batch, "step_ms": 1000 * step, "penalty_ms": 1000 * penalty,
                         "penalty_share": penalty / step})
    return rows


def adversarial_cost(data, batch_sizes, repeats=10):
    """The adversarial autoencoder's whole training step (forward, backward and an Adam step over the
    model's and the discriminator's parameters) against the WAE's, paper sizes, on the same batch of real
    sentences, timed alternately (medians): the discriminator's two games should cost little next to
    the output layer (target: at most 1.1x the WAE's step at batch 128)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    steps = {}
    for arch, criterion in (("lstm_wae_paper", "wae_mmd"), ("lstm_aae_paper", "aae")):
        parser = options.get_training_parser()
        args = options.parse_args_and_arch(parser, [data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding",
                                                    "--arch", arch, "--criterion", criterion, "--cpu"])
        cfg = convert_namespace_to_omegaconf(args)
        task = tasks.setup_task(cfg.task)
        model, crit = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
        task.load_dataset("train")
        optimizer = torch.optim.Adam([*model.parameters(), *crit.parameters()], lr=1e-4)
        model.train()
        steps[criterion] = (task.dataset("train"), model, crit, optimizer)

    def step(criterion, sample):
        _, model, crit, optimizer = steps[criterion]
        optimizer.zero_grad()
        crit(model, sample)[0].backward()
        optimizer.step()

    rows = []
    for batch in batch_sizes:
        dataset = steps["wae_mmd"][0]
        sample = dataset.collater([dataset[i] for i in range(batch)])
        times = {name: [] for name in steps}
        for _ in range(2):
            for name in steps:
                step(name, sample)
        for _ in range(repeats):
            for name in steps:
                started = time.perf_counter()
                step(name, sample)
                times[name].append(time.perf_counter() - started)
        wae, aae = statistics.median(times["wae_mmd"]), statistics.median(times["aae"])
        rows.append({"batch": batch, "wae_ms": 1000 * wae, "aae_ms": 1000 * aae, "ratio": aae / wae})
    return rows


def print_adversarial_cost(rows):
    print("\n| batch | wae_mmd step ms (median) | aae step ms (median) | aae / wae_mmd (target <= 1.1 at 128) |"
          "\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['batch']} | {row['wae_ms']:.1f} | {row['aae_ms']:.1f} | {row['ratio']:.3f} |")


def mmd_scaling(batch_sizes, dim=100, repeats=20):
    from fairseq_wae.penalties import mmd_unbiased

    kernel = authors_kernel(dim)
    rows = []
    for n in batch_sizes:
        z = torch.randn(n, dim, requires_grad=True)
        prior = torch.randn(n, dim)
        started = time.perf_counter()
        for _ in range(repeats):
            mmd_unbiased(z, prior, kernel).backward()
        rows.append({"batch": n, "mmd_ms": 1000 * (time.perf_counter() - started) / repeats})
    return rows


def generation_speed(data, checkpoint, count):
    rows = {}
    base = ["fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", "--batch-size", "250"]
    for name, flags in (("prior, greedy", ["--task", "prior_sampling", "--num-samples", str(count), "--beam", "1"]),
                        ("prior, beam 5", ["--task", "prior_sampling", "--num-samples", str(count), "--beam", "5"]),
                        ("reconstruction, greedy", ["--task", "sentence_autoencoding", "--gen-subset", "valid",
                                                    "--beam", "1", "--max-sentence-len", "20"])):
        started = time.time()
        result = subprocess.run(base + flags, env=ENV, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        generated = sum(line.startswith("H-") for line in result.stdout.splitlines())
        rows[name] = generated / (time.time() - started)
    return rows


def fairseq_generate_rate(data, checkpoint, flags):
    """fairseq-generate's own sentences/s (loading left out) and the mean words per hypothesis, greedy,
    at most 20 words (the recipe's cap)."""
    result = subprocess.run(["fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu",
                             "--batch-size", "250", "--beam", "1", "--max-len-b", "20", *flags], env=ENV,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    lengths = [len(line.split("\t")[2].split()) for line in result.stdout.splitlines() if line.startswith("H-")]
    return float(re.search(r"([0-9.]+) sentences/s", result.stderr).group(1)), statistics.mean(lengths)


def train_against_builtin(data, builtin_flags, ours, updates, baseline=None):
    """([fairseq's built-in model before ours, after ours], {name: ours}) training runs on the same data:
    the two built-in runs show the machine's noise during ours. ``baseline``: (revision, its checkout),
    whose run of each model follows ours (None where the revision has no such model)."""
    translation = translation_view(data)
    builtin = [train_words_per_second(translation, builtin_flags, updates, task="translation")]
    measured = {}
    for name, flags in ours.items():
        measured[name] = train_words_per_second(data, flags, updates)
        if baseline:
            revision, checkout = baseline
            try:
                measured[f"{name} at {revision}"] = train_words_per_second(data, flags, updates, checkout=checkout)
            except CommandFailed as error:
                if "invalid choice" not in error.output:  # argparse's word for an --arch or --criterion it lacks
                    raise
                measured[f"{name} at {revision}"] = None
    builtin.append(train_words_per_second(translation, builtin_flags, updates, task="translation"))
    return builtin, measured


def transformer_speed(data, updates, lstm_checkpoint=None, transformer_checkpoint=None, count=2000):
    """Training words/s of ours against fairseq's `transformer` (measured before and after ours), and
    prior sampling of the two checkpoints, each on the same data."""
    builtin, ours = train_against_builtin(data, BUILTIN_TRANSFORMER, OURS_TRANSFORMER, updates)
    sampling = {}
    if lstm_checkpoint and transformer_checkpoint:
        for name, checkpoint in (("LSTM", lstm_checkpoint), ("Transformer", transformer_checkpoint)):
            sampling[name] = fairseq_generate_rate(data, checkpoint, ["--task", "prior_sampling", "--num-samples",
                                                                      str(count), "--seed", "1"])
    return builtin, ours, sampling


def print_transformer_speed(builtin, ours, sampling, count):
    builtin_wps = statistics.mean(run["wps"] for run in builtin)
    print("| model | train words/s | vs fairseq transformer (target >= 1.0) | peak RSS MB |\n|---|---|---|---|")
    for label, run in zip(("before", "after"), builtin):
        print(f"| fairseq transformer, same sizes ({label} ours) | {run['wps']:.0f} | {run['wps'] / builtin_wps:.2f} | "
              f"{run['peak_rss_mb']:.0f} |")
    for name, run in ours.items():
        print(f"| {name} | {run['wps']:.0f} | {run['wps'] / builtin_wps:.2f} | {run['peak_rss_mb']:.0f} |")
    print(f"\nfairseq transformer: the mean of its two runs, {builtin_wps:.0f} words/s, is the 1.00 of the ratios")
    if sampling:
        (lstm_rate, lstm_length), (rate, length) = sampling["LSTM"], sampling["Transformer"]
        print(f"\n| greedy prior sampling, {count} sentences | sentences/s | words per sentence |\n|---|---|---|")
        print(f"| LSTM | {lstm_rate:.0f} | {lstm_length:.1f} |\n| Transformer | {rate:.0f} | {length:.1f} |")
        print(f"\nTransformer / LSTM: {rate / lstm_rate:.2f}x sentences/s, "
              f"{rate * length / (lstm_rate * lstm_length):.2f}x words/s")


def hub_speed(data, checkpoint, count):
    """Sentences/s of the Python interface against fairseq-generate's own figure (its "sentences/s", which
    leaves out loading), same model and greedy search, at most 20 words (the recipe's cap), side by side;
    and encode against reconstruction."""
    from fairseq_wae import LSTMAutoencoderModel

    def generate_rate(flags):
        return fairseq_generate_rate(data, checkpoint, flags)[0]

    def timed(call):
        started = time.perf_counter()
        output = call()
        return output, time.perf_counter() - started

    torch.set_num_threads(1)  # as fairseq-generate under ENV
    hub = LSTMAutoencoderModel.from_pretrained(os.path.dirname(os.path.abspath(checkpoint)),
                                               checkpoint_file=os.path.basename(checkpoint), data_name_or_path=data)
    with open(os.path.join(data, "test.txt"), encoding="utf-8") as f:
        test = [line.strip() for line in f]
    rows = {}
    samples, seconds = timed(lambda: hub.sample(count, seed=1, tokenize=False, batch_size=250, max_len_b=20))
    rows["prior sampling"] = (len(samples) / seconds,
                              generate_rate(["--task", "prior_sampling", "--num-samples", str(count), "--seed", "1"]))
    outputs, seconds = timed(lambda: hub.reconstruct(test, tokenize=False, batch_size=250, max_len_b=20))
    rows["reconstruction of test"] = (len(outputs) / seconds,
                                      generate_rate(["--task", "sentence_autoencoding", "--gen-subset", "test"]))
    sentences = (test * (count // len(test) + 1))[:count]
    _, encode_seconds = timed(lambda: hub.encode(sentences, tokenize=False, batch_size=250))
    _, reconstruct_seconds = timed(lambda: hub.reconstruct(sentences, tokenize=False, batch_size=250, max_len_b=20))
    return rows, count / encode_seconds, count / reconstruct_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a data folder (every leg but --startup)")
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--checkpoint", help="a paper-size checkpoint for the generation figures")
    parser.add_argument("--vocabularies", default="5000,20000,50000", help="comma-separated; empty to skip")
    parser.add_argument("--eval-samples", type=int, default=10000, help="0 skips the evaluation timing")
    parser.add_argument("--profile", action="store_true", help="also profile our step with torch.profiler")
    parser.add_argument("--out", help="also write the numbers as JSON")
    parser.add_argument("--transformer", action="store_true",
                        help="only the Transformer against fairseq's transformer (and, with --checkpoint and "
                             "--transformer-checkpoint, prior sampling against the LSTM)")
    parser.add_argument("--transformer-checkpoint", help="a transformer_*_small checkpoint for --transformer")
    parser.add_argument("--hub", type=int, metavar="N",
                        help="only compare the Python interface with fairseq-generate on N samples (needs --checkpoint)")
    parser.add_argument("--startup", type=int, metavar="N",
                        help="only fairseq-train's start-up on N sentences, against fairseq's language_modeling")
    parser.add_argument("--snli", default=SNLI_SENTENCES, help="the folder of SNLI *.gz sentence files for --startup")
    parser.add_argument("--prepare", type=int, metavar="N",
                        help="only prepare_corpus.py on N news sentences (1 and 2 workers), beside "
                             "fairseq-preprocess --workers 2")
    parser.add_argument("--prepare-baseline", metavar="REV",
                        help="with --prepare: also the preparation of git revision REV, the 1.00 of the ratios")
    parser.add_argument("--train-baseline", metavar="REV",
                        help="also train each of our models with the plugin of git revision REV, right after ours")
    parser.add_argument("--news", default=NEWS, help="the folder of news *.gz sentence files for --prepare")
    parser.add_argument("--adversarial", action="store_true",
                        help="only the adversarial autoencoder's training step against the WAE's")
    args = parser.parse_args()
    if args.startup:
        print_startup_speed(startup_speed(args.startup, args.snli))
        return
    if args.prepare:
        row = prepare_speed(args.prepare, args.news, args.prepare_baseline)
        print_prepare_speed(row)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(row, f, indent=2)
        return
    if not args.data:
        parser.error("--data is needed (but with --startup)")
    if args.transformer:
        count = 2000
        builtin, ours, sampling = transformer_speed(args.data, args.updates, args.checkpoint,
                                                    args.transformer_checkpoint, count)
        print_transformer_speed(builtin, ours, sampling, count)
        return
    if args.adversarial:
        torch.set_num_threads(1)
        print_adversarial_cost(adversarial_cost(args.data, (32, 128, 512)))
        return
    if args.hub:
        if not args.checkpoint:
            parser.error("--hub needs --checkpoint")
        rows, encode_rate, reconstruct_rate = hub_speed(args.data, args.checkpoint, args.hub)
        print("| greedy decoding | Python interface sentences/s | fairseq-generate sentences/s | ratio (target >= 0.9) |"
              "\n|---|---|---|---|")
        for name, (ours, theirs) in rows.items():
            print(f"| {name} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f} |")
        print(f"\nencode {args.hub} sentences: {encode_rate:.0f} sentences/s; greedy reconstruction of them: "
              f"{reconstruct_rate:.0f} sentences/s; encode / reconstruct {encode_rate / reconstruct_rate:.1f}x "
              "(target >= 10)")
        return
    from fairseq.data import Dictionary

    vocab = len(Dictionary.load(os.path.join(args.data, "dict.txt")))
    report = {"machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads 1", "vocabulary": vocab}

    baseline = None
    if args.train_baseline:
        checkout = revision_checkout(args.train_baseline, tempfile.mkdtemp(prefix="fairseq-wae-bench-baseline-"))
        baseline = (args.train_baseline, checkout)
    try:
        builtin, report["ours"] = train_against_builtin(args.data, BUILTIN, OURS, args.updates, baseline)
    finally:
        if baseline:
            shutil.rmtree(baseline[1], ignore_errors=True)
    builtin_wps = statistics.mean(run["wps"] for run in builtin)
    report["builtin_lstm_wps"] = [run["wps"] for run in builtin]
    torch.set_num_threads(1)
    ceiling = output_layer_ceiling(vocab, 100, tokens=1408)
    report["output_layer_ceiling_tokens_per_s"] = ceiling
    from fairseq_wae.criterions.ae_cross_entropy import reconstruction_loss

    ours_ceiling = output_layer_ceiling(vocab, 100, tokens=1408, loss_fn=reconstruction_loss)
    report["output_layer_with_our_loss_tokens_per_s"] = ours_ceiling
    print("| model | train words/s | vs built-in lstm (target >= 1.2) | vs output-layer ceiling (target >= 0.8) |"
          " peak RSS MB |\n|---|---|---|---|---|")
    for label, run in zip(("before", "after"), builtin):
        print(f"| fairseq built-in lstm ({label} ours) | {run['wps']:.0f} | {run['wps'] / builtin_wps:.2f} | "
              f"{run['wps'] / ceiling:.2f} | {run['peak_rss_mb']:.0f} |")
    for name, ours in report["ours"].items():
        if ours is None:
            print(f"| {name} | not in that revision | | | |")
            continue
        print(f"| {name} | {ours['wps']:.0f} | {ours['wps'] / builtin_wps:.2f} | {ours['wps'] / ceiling:.2f} | "
              f"{ours['peak_rss_mb']:.0f} |")
    print(f"\nbuilt-in lstm: the mean of its two runs, {builtin_wps:.0f} words/s, is the 1.00 of the ratios")
    print(f"output layer alone (vocabulary {vocab}, 1408 tokens, 1 thread): {ceiling:.0f} tokens/s with fairseq's "
          f"log_softmax + nll_loss (the ceiling above), {ours_ceiling:.0f} tokens/s with our reconstruction_loss "
          f"({ours_ceiling / ceiling:.2f}x)\n")

    report["penalty"] = penalty_cost(args.data, (32, 128, 512))
    print("| criterion | batch | whole step ms (median) | penalty ms (median) | penalty share of the step "
          "(target <= 5% at 128) |\n|---|---|---|---|---|")
    for row in report["penalty"]:
        print(f"| {row['criterion']} | {row['batch']} | {row['step_ms']:.1f} | {row['penalty_ms']:.2f} | "
              f"{100 * row['penalty_share']:.2f}% |")
    report["adversarial"] = adversarial_cost(args.data, (32, 128, 512))
    print_adversarial_cost(report["adversarial"])
    report["mmd_scaling"] = mmd_scaling((32, 128, 512, 2048))
    print("\n| batch | MMD forward+backward ms (O(N^2)) |\n|---|---|")
    for row in report["mmd_scaling"]:
        print(f"| {row['batch']} | {row['mmd_ms']:.2f} |")

    vocabularies = [int(v) for v in args.vocabularies.split(",") if v]
    if vocabularies:
        report["vocabulary_scaling"] = vocabulary_scaling(vocabularies)
        print("\n| vocabulary | ours (WAE) words/s | built-in lstm words/s | ours / built-in | output layer tokens/s |"
              " ours / ceiling |\n|---|---|---|---|---|---|")
        for row in report["vocabulary_scaling"]:
            print(f"| {row['vocabulary']} | {row['ours_wps']:.0f} | {row['builtin_wps']:.0f} | "
                  f"{row['ours_wps'] / row['builtin_wps']:.2f} | {row['ceiling_wps']:.0f} | "
                  f"{row['ours_wps'] / row['ceiling_wps']:.2f} |")
    if args.profile:
        report["profile"] = profile_step(vocab)
        prof = report["profile"]
        print(f"\nprofile of our WAE step (torch.profiler, vocabulary {vocab}, 128 x 12 tokens): "
              f"step {prof['step_ms']:.0f} ms, of which the output layer alone {prof['output_layer_ms']:.0f} ms "
              f"({prof['output_layer_ms'] / prof['step_ms']:.0%})")
        print("\n| phase | share of profiled CPU time |\n|---|---|")
        for phase, share in prof["phases"].items():
            print(f"| {phase} | {share:.1%} |")
        print("\n| operator | self CPU share | calls per step |\n|---|---|---|")
        for name, share, calls in prof["operators"]:
            print(f"| {name} | {share:.1%} | {calls} |")
    if args.eval_samples:
        report["evaluation"] = ev = evaluation_speed(args.data, args.eval_samples)
        print(f"\n| evaluation of {ev['samples']} samples | seconds |\n|---|---|")
        for name, seconds in ev["seconds"].items():
            print(f"| {name} | {seconds:.2f} |")
        print(f"| KenLM trigram build ({ev['lm_words']} words, tokenising included) | {ev['lm_build_seconds']:.1f} "
              f"({ev['lm_build_seconds_per_million_words']:.1f} per million words) |")
    if args.checkpoint:
        from fairseq.data import data_utils  # noqa: F401

        valid = data_utils.load_indexed_dataset(os.path.join(args.data, "valid"), None)
        report["generation_per_s"] = generation_speed(args.data, args.checkpoint, len(valid))
        print("\n| generation | sentences/s | vs reconstruction |\n|---|---|---|")
        base = report["generation_per_s"]["reconstruction, greedy"]
        for name, rate in report["generation_per_s"].items():
            print(f"| {name} | {rate:.0f} | {rate / base:.2f} |")
    report["benchmark_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
