#!/usr/bin/env python
"""Speed and memory of fairseq-wae, as ratios against baselines measured in the same run.

    python scripts/benchmark.py --data DATA [--updates 150] [--out BENCHMARKS.json]

DATA: a fairseq-preprocess --only-source folder (the README's toy corpus, or data/snli from the SNLI
recipe). Prints a markdown table; every figure is measured here, now, on this machine:

- training words/s of lstm_{ae,vae,wae}_paper through fairseq-train, against fairseq's built-in `lstm`
  (same embedding and hidden sizes, same vocabulary and batches) through the same fairseq-train path;
- the ceiling: words/s of the output layer alone (projection + log-softmax + cross-entropy, forward
  and backward) at the same batch shape, and our training words/s as a fraction of it;
- the penalty's cost: criterion step time with lambda = 0 against the full criterion, batch 32/128/512;
- generation: prior samples/s (greedy, beam 5) against reconstructions/s of the same count;
- peak resident memory of a paper-size training run.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "fairseq_wae")
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}

OURS = {
    "lstm_ae_paper + ae_cross_entropy": ["--arch", "lstm_ae_paper", "--criterion", "ae_cross_entropy"],
    "lstm_vae_paper + vae_kl": ["--arch", "lstm_vae_paper", "--criterion", "vae_kl"],
    "lstm_wae_paper + wae_mmd": ["--arch", "lstm_wae_paper", "--criterion", "wae_mmd"],
}
# fairseq's built-in LSTM encoder-decoder at the same sizes, no attention, on the same data
BUILTIN = ["--arch", "lstm", "--criterion", "cross_entropy", "--encoder-embed-dim", "300", "--decoder-embed-dim", "300",
           "--encoder-hidden-size", "100", "--decoder-hidden-size", "100", "--decoder-out-embed-dim", "100",
           "--encoder-layers", "1", "--decoder-layers", "1", "--decoder-attention", "False", "--dropout", "0.2"
           ]


def train_words_per_second(data, arch_flags, updates, task="sentence_autoencoding"):
    """fairseq-train for ``updates`` updates; words/s averaged over the logged intervals after the first."""
    cmd = ["fairseq-train", data, "--user-dir", USER_DIR, "--task", task, *arch_flags, "--optimizer", "adam",
           "--lr", "0.001", "--batch-size", "128", "--max-update", str(updates), "--cpu", "--seed", "1",
           "--no-save", "--disable-validation", "--log-format", "json", "--log-interval", "25"]
    if task == "translation":
        cmd += ["--source-lang", "src", "--target-lang", "tgt"]
    started = time.time()
    result = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    wps = [float(m) for m in re.findall(r'"wps": "([0-9.]+)"', result.stdout + result.stderr)]
    rss = int(re.search(r"MAXRSS (\d+)", result.stderr).group(1)) / 1024
    return {"wps": statistics.mean(wps[1:] or wps), "seconds": time.time() - started, "peak_rss_mb": rss}


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


def output_layer_ceiling(vocab, hidden, tokens, repeats=20):
    """Tokens/s of projection + log-softmax + NLL, forward and backward, on ``tokens`` positions."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(hidden, vocab)
    x = torch.randn(tokens, hidden, requires_grad=True)
    target = torch.randint(vocab, (tokens,))
    for _ in range(3):
        torch.nn.functional.nll_loss(torch.log_softmax(layer(x), -1), target, reduction="sum").backward()
    started = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.nll_loss(torch.log_softmax(layer(x), -1), target, reduction="sum").backward()
    return tokens * repeats / (time.perf_counter() - started)


def penalty_cost(data, batch_sizes, repeats=10):
    """Step time (forward + backward) of wae_mmd and vae_kl with the weight 0 against the full criterion."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    rows = []
    for arch, criterion, weight_flag in (("lstm_wae_paper", "wae_mmd", "--mmd-lambda"),
                                         ("lstm_vae_paper", "vae_kl", "--kl-weight")):
        for batch in batch_sizes:
            times = {}
            for weight in ("0", "10"):
                parser = options.get_training_parser()
                args = options.parse_args_and_arch(parser, [data, "--user-dir", USER_DIR, "--task",
                                                            "sentence_autoencoding", "--arch", arch, "--criterion",
                                                            criterion, weight_flag, weight, "--cpu"])
                cfg = convert_namespace_to_omegaconf(args)
                task = tasks.setup_task(cfg.task)
                model, crit = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
                task.load_dataset("train")
                dataset = task.dataset("train")
                sample = dataset.collater([dataset[i] for i in range(batch)])
                model.train()
                if weight == "0":
                    # lambda = 0 still computes the penalty: remove it to measure the step without it
                    crit.latent_penalty = lambda model, latent: (latent["z"].sum() * 0, {})
                for _ in range(2):
                    crit(model, sample)[0].backward()
                started = time.perf_counter()
                for _ in range(repeats):
                    crit(model, sample)[0].backward()
                times[weight] = (time.perf_counter() - started) / repeats
            rows.append({"criterion": criterion, "batch": batch, "step_ms_without_penalty": 1000 * times["0"],
                         "step_ms_with_penalty": 1000 * times["10"],
                         "penalty_share": (times["10"] - times["0"]) / times["10"]})
    return rows


def mmd_scaling(batch_sizes, dim=100, repeats=20):
    from functools import partial

    from fairseq_wae.penalties import AUTHORS_IMQ_SCALES, imq_kernel, mmd_unbiased

    kernel = partial(imq_kernel, latent_dim=dim, scales=AUTHORS_IMQ_SCALES, c_base_per_dim=4.0)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--checkpoint", help="a paper-size checkpoint for the generation figures")
    parser.add_argument("--out", help="also write the numbers as JSON")
    args = parser.parse_args()
    from fairseq.data import Dictionary

    vocab = len(Dictionary.load(os.path.join(args.data, "dict.txt")))
    report = {"machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads 1", "vocabulary": vocab}

    builtin = train_words_per_second(translation_view(args.data),
                                     BUILTIN, args.updates, task="translation")
    report["builtin_lstm_wps"] = builtin["wps"]
    torch.set_num_threads(1)
    ceiling = output_layer_ceiling(vocab, 100, tokens=1408)
    report["output_layer_ceiling_tokens_per_s"] = ceiling
    print("| model | train words/s | vs built-in lstm (target >= 1.2) | vs output-layer ceiling (target >= 0.8) |"
          " peak RSS MB |\n|---|---|---|---|---|")
    print(f"| fairseq built-in lstm | {builtin['wps']:.0f} | 1.00 | {builtin['wps'] / ceiling:.2f} | "
          f"{builtin['peak_rss_mb']:.0f} |")
    report["ours"] = {}
    for name, flags in OURS.items():
        ours = train_words_per_second(args.data, flags, args.updates)
        report["ours"][name] = ours
        print(f"| {name} | {ours['wps']:.0f} | {ours['wps'] / builtin['wps']:.2f} | {ours['wps'] / ceiling:.2f} | "
              f"{ours['peak_rss_mb']:.0f} |")
    print(f"\noutput layer alone (vocabulary {vocab}, 1408 tokens, 1 thread): {ceiling:.0f} tokens/s\n")

    report["penalty"] = penalty_cost(args.data, (32, 128, 512))
    print("| criterion | batch | step ms, no penalty | step ms, full | penalty share of the step (target <= 5% at 128) |")
    print("|---|---|---|---|---|")
    for row in report["penalty"]:
        print(f"| {row['criterion']} | {row['batch']} | {row['step_ms_without_penalty']:.1f} | "
              f"{row['step_ms_with_penalty']:.1f} | {100 * row['penalty_share']:.1f}% |")
    report["mmd_scaling"] = mmd_scaling((32, 128, 512, 2048))
    print("\n| batch | MMD forward+backward ms (O(N^2)) |\n|---|---|")
    for row in report["mmd_scaling"]:
        print(f"| {row['batch']} | {row['mmd_ms']:.2f} |")
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
