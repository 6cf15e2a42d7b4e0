#!/usr/bin/env python
"""Tables and figures of the SNLI recipe from its evaluation JSON, samples and fairseq json logs.

    python examples/snli/report.py table1 --work WORK --out results/table1.md
    python examples/snli/report.py table2 --work WORK --data DATA --out results/table2.md
    python examples/snli/report.py figure3 --work WORK --out results/figure3.png
    python examples/snli/report.py figure1 --work WORK --data DATA --out results/figure1.png
    python examples/snli/report.py transformer --work WORK --data DATA --out results/ablations/transformer.md
    python examples/snli/report.py compare --work WORK/compare --data DATA --out results/text-autoencoders.md
    python examples/snli/report.py learned-prior --work WORK --data DATA --out results/learned-prior.md
"""
import argparse
import json
import logging
import os
import random
import re

from fairseq_wae.logs import json_log_records
from fairseq_wae.text_metrics import TABLE1_COLUMNS, diversity_cells, table1_cells

PAPER = {  # Table 1 of the paper: BLEU, NLL, UnigramKL, Entropy, AvgLen
    "corpus": (None, 9.92, None, 5.65, 9.7),
    "dae": (73.66, 13.71, 0.180, 5.94, 13.3),
    "vae": (31.77, 11.52, 0.125, 4.95, 9.1),
    "wae3": (72.72, 12.04, 0.078, 5.52, 10.0),
    "wae10": (68.82, 11.74, 0.079, 5.54, 9.9),
    "swae": (None, None, None, None, None),
}
LABELS = {"corpus": "Corpus", "dae": "DAE", "vae": "VAE (annealed)", "wae3": "WAE lambda=3",
          "wae10": "WAE lambda=10", "swae": "stochastic WAE (lambda=3, gamma=1)"}


def provenance(args, names=None):
    """What table1.md was measured on: the corpus (from prepare's manifest.json) and the training of each
    model of ``names`` (Table 1's by default)."""
    lines = []
    manifest_path = os.path.join(args.data, "manifest.json") if args.data else None
    if manifest_path and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        counts = manifest["counts"]
        sources = ", ".join(os.path.basename(i["path"]) for i in manifest["inputs"])
        lines.append(f"Data: {manifest['unique_sentences']:,} unique SNLI sentences from {sources}, split "
                     f"{counts['train']:,} / {counts['valid']:,} / {counts['test']:,} (train / valid / test, "
                     f"option --split {manifest['options']['split']}); vocabulary {manifest['vocabulary_size']:,}."
                     + ("" if counts["train"] == 90000 else
                        " Not the paper's 100k subset of the SNLI train split (90k/5k/5k): see README.md."))
    trained = []
    for name in names or PAPER:
        log = os.path.join(args.work, "logs", f"{name}.log")
        validations = read_log(log, "valid") if os.path.exists(log) else []
        if validations:
            record = validations[-1]
            trained.append(f"{name} {record['epoch']} epochs / {int(float(record['valid_num_updates'])):,} updates")
    if trained:
        lines.append("Training: " + "; ".join(trained) + " (the paper: 20 epochs on 90k sentences, about 14,000 updates).")
    lines.append("BLEU: greedy reconstruction of the test split (sacrebleu, tokenize none). NLL: bits per word under "
                 "the news trigram LM, end of sentence included. UnigramKL, Entropy (nats), AvgLen: "
                 f"{sampling_settings(args.work)}; the corpus row is the test split.")
    return lines


def sampling_settings(work, evaluated=None):
    """How the prior samples were decoded, from the first evaluation JSON and fairseq-generate log found:
    ``evaluated`` lists (JSON path, log path), by default Table 1's models'."""
    for report, log in evaluated or [(os.path.join(work, "eval", f"{name}.json"),
                                      os.path.join(work, "eval", f"{name}.samples.log")) for name in PAPER]:
        if os.path.exists(report) and os.path.exists(log):
            with open(report) as f:
                count = json.load(f)["meta"]["sentences"]
            with open(log, errors="replace") as f:
                cap = re.search(r"'max_len_b': (\d+)", f.read())
            return f"{count:,} greedy decodings of prior samples" + (f", at most {cap.group(1)} words" if cap else "")
    return "greedy decodings of prior samples"


def table1(args):
    lines = ["| model | BLEU | NLL | UnigramKL | Entropy | AvgLen | paper: BLEU | NLL | UnigramKL | Entropy | AvgLen |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in PAPER:
        path = os.path.join(args.work, "eval", f"{name}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            measured = json.load(f)["metrics"]
        ours = table1_cells(measured)
        paper = table1_cells({key: value for (_, key, _), value in zip(TABLE1_COLUMNS, PAPER[name])})
        lines.append(f"| {LABELS[name]} | " + " | ".join(ours) + " | " + " | ".join(paper) + " |")
    notes = [paragraph for line in provenance(args) for paragraph in (line, "")]
    lines = ["# Table 1: ours and the paper's", ""] + notes + lines
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def table2(args):
    with open(os.path.join(args.data, "train.txt"), encoding="utf-8") as f:
        training = random.Random(1).sample([line.strip() for line in f], args.rows)
    columns = {"Training samples": training}
    for name in ("wae10", "dae", "vae", "swae"):
        path = os.path.join(args.work, "eval", f"{name}.samples.txt")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                columns[LABELS[name]] = [line.strip() for _, line in zip(range(args.rows), f)]
    out = []
    for title, sentences in columns.items():
        out += [f"**{title}**", ""] + [f"- {s}" for s in sentences] + [""]
    with open(args.out, "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


# the Transformer rows (WORK) next to the committed LSTM rows of the same flavour (RESULTS)
TRANSFORMER_ROWS = (("dae", "tdae", "DAE"), ("vae", "tvae", "VAE (annealed)"), ("wae3", "twae", "WAE lambda=3"))
READING = "## Reading"


def write_report(path, lines):
    """Writes the report's ``lines`` to ``path`` and prints them."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))


def written_reading(path):
    """The hand-written section of an existing report, from READING on, as a one-item list (or [])."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [text[text.index(READING):].rstrip()] if READING in text else []


def training_summary(log_path):
    """'E epochs, U updates, T min' from the train records of a fairseq log (or a collected .jsonl). T sums
    each epoch's train_wall (fairseq's wall clock restarts when a run resumes; validation left out)."""
    with open(log_path) as f:
        lines = f.readlines()
    records = json_log_records(lines, "train") or [json.loads(line.split(" ", 1)[1]) for line in lines
                                                     if line.startswith("train ")]
    by_epoch = {record["epoch"]: record for record in records}  # a resumed run may repeat an epoch
    last = by_epoch[max(by_epoch)]
    minutes = sum(float(record["train_train_wall"]) for record in by_epoch.values()) / 60
    return f"{last['epoch']} epochs, {int(float(last['train_num_updates'])):,} updates, {minutes:.0f} min"


def code_activity(checkpoint, data):
    """Active units of the codes (posterior means for a Gaussian head) of the test split, cut to 20 words
    as in training: dimensions whose code varies over the sentences by more than the usual 0.01."""
    from fairseq_wae.models.hub_interface import from_checkpoint
    from fairseq_wae.latent_space import active_units

    with open(os.path.join(data, "test.txt"), encoding="utf-8") as f:
        sentences = [" ".join(line.split()[:20]) for line in f if line.strip()]
    autoencoder = from_checkpoint(checkpoint, data)
    return active_units(autoencoder.encode(sentences, tokenize=False, batch_size=250)), autoencoder.latent_dim


def evaluated(folder, name):
    """(Table 1 metrics, latent statistics or None, training log path) of ``name`` in ``folder``, or None."""
    path = os.path.join(folder, "eval", f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        metrics = json.load(f)["metrics"]
    latent_path = os.path.join(folder, "eval", f"{name}.latent.json")
    latent = None
    if os.path.exists(latent_path):
        with open(latent_path) as f:
            latent = json.load(f)
    logs = [os.path.join(folder, "logs", f"{name}{suffix}") for suffix in (".log", ".jsonl")]
    return metrics, latent, next((log for log in logs if os.path.exists(log)), None)


def latent_cells(latent):
    """The KL and MI cells of a row from ``latent_metrics.py``'s JSON (or None: "-")."""
    return ("-", "-") if latent is None else (f"{latent['kl']:.2f}", f"{latent['mutual_information']:.2f}")


def model_row(label, name, folder, checkpoint=None, data=None):
    """One row of the Transformer table from ``folder``'s eval/ and logs/ (None without an evaluation); the
    active units of a deterministic model's codes are measured from ``checkpoint`` when it is there."""
    found = evaluated(folder, name)
    if found is None:
        return None
    metrics, latent, log = found
    kl, mi = latent_cells(latent)
    units = "-"
    if latent is not None:
        units = f"{latent['active_units']} / 100"
    elif checkpoint and os.path.exists(checkpoint):
        active, dim = code_activity(checkpoint, data)
        units = f"{active} / {dim}"
    trained = training_summary(log) if log else "-"
    return f"| {label} | " + " | ".join(table1_cells(metrics)) + f" | {kl} | {mi} | {units} | {trained} |"


def transformer(args):
    """Table 1 rows, latent statistics and samples of the Transformer models next to the LSTM's; keeps
    the hand-written reading (the section from READING on) of an existing file."""
    results = args.lstm_results
    header = ["| model | BLEU | NLL | UnigramKL | Entropy | AvgLen | KL | MI | active units | training |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    rows, samples = [], []
    for lstm, ours, label in TRANSFORMER_ROWS:
        rows.append(model_row(f"LSTM {label}", lstm, results))
        row = model_row(f"Transformer {label}", ours, args.work,
                        os.path.join(args.work, "checkpoints", ours, "checkpoint_last.pt"), args.data)
        rows.append(row)
        sample_path = os.path.join(args.work, "eval", f"{ours}.samples.txt")
        if row is not None and os.path.exists(sample_path):
            with open(sample_path, encoding="utf-8") as f:
                samples += [f"**Transformer {label}**", ""] + [f"- {line.strip()}" for _, line in zip(range(5), f)] + [""]
    rows = [row for row in rows if row is not None]
    reading = written_reading(args.out)
    lines = ["# Beyond the paper: the same criterions on a Transformer", "",
             *[paragraph for line in provenance(args)[:1] for paragraph in (line, "")],
             "Transformer rows: `bash examples/snli/run.sh train transformers` (transformer_{ae,vae,wae}_small: "
             "2+2 layers, 256d, 4 heads, feed-forward 1024, 100d z, mean pooling, z as one memory slot and "
             "added to every input embedding; own 256d embeddings, Adam lr 1e-3 with inverse-sqrt warm-up "
             "over 400 updates, batch 64, sentences cut to 20 words), then `bash examples/snli/run.sh "
             "transformer`. LSTM rows: the committed Table 1 (`results/eval`, 60 epochs). Metrics as in "
             "Table 1; KL (nats) and MI for the Gaussian models on the test split (`latent_metrics.py`); "
             "active units: latent dimensions whose code (the posterior mean for the VAE) varies over the "
             "test sentences by more than 0.01. Training: minutes of fairseq's train_wall summed over the epochs, "
             "on the 2-core CPU with other runs sharing it (the Transformers: three trainings at once).", "",
             *header, *rows, "", "## Prior samples (the first 5 of the 10,000 greedy decodings)", "", *samples,
             *reading]
    write_report(args.out, lines)


# text-autoencoders' models (Shen et al. 2020) beside the paper's, every one trained for the same
# epochs: (name in run.sh, label, family); the Transformer rows come from the committed results
COMPARED = (("dae", "DAE", "LSTM"), ("dae-noise", "DAE + input noise (drop 0.3)", "LSTM"),
            ("aae", "AAE", "LSTM"), ("laae", "LAAE (log-variance L1 0.001)", "LSTM"),
            ("daae", "DAAE (AAE + drop 0.3)", "LSTM"), ("wae3", "WAE lambda=3", "LSTM"),
            ("vae", "VAE (paper's annealing)", "LSTM"), ("vae-improved", "VAE (cyclical, free bits, word dropout)", "LSTM"),
            ("tdae", "DAE", "Transformer"), ("twae", "WAE lambda=3", "Transformer"),
            ("tvae-fixed", "VAE (cyclical, free bits, word dropout)", "Transformer"))


def compare(args):
    """The comparison table (Table 1's metrics, KL, MI, active units, training) and the trade-off figure:
    reconstruction BLEU against the LM NLL of the prior samples, one point per model. Keeps the
    hand-written reading of an existing file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    header = ["| model | BLEU | NLL | UnigramKL | Entropy | AvgLen | KL | MI | active units | training |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    rows, points = [], []
    for name, label, family in COMPARED:
        folder = args.work if family == "LSTM" else args.lstm_results
        found = evaluated(folder, name)
        if found is None:
            print(f"no evaluation of {name} in {folder}/eval: left out")
            continue
        metrics, latent, log = found
        kl, mi = latent_cells(latent)
        units = "-" if latent is None else f"{latent['active_units']}"
        trained = training_summary(log) if log else "-"
        rows.append(f"| {family} {label} (`{name}`) | " + " | ".join(table1_cells(metrics))
                    + f" | {kl} | {mi} | {units} | {trained} |")
        points.append((family, label, name, metrics["bleu"], metrics["nll_bits_per_word"]))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for family, marker in (("LSTM", "o"), ("Transformer", "s")):
        chosen = [p for p in points if p[0] == family]
        ax.scatter([p[4] for p in chosen], [p[3] for p in chosen], marker=marker, s=40, label=family)
        for _, _, name, bleu, nll in chosen:
            ax.annotate(name, (nll, bleu), textcoords="offset points", xytext=(5, 3), fontsize=8)
    corpus = os.path.join(args.lstm_results, "eval", "corpus.json")
    if os.path.exists(corpus):  # below real text's NLL, samples are simpler than real text, not better
        with open(corpus) as f:
            real = json.load(f)["metrics"]["nll_bits_per_word"]
        ax.axvline(real, color="gray", linestyle="--", linewidth=1)
        ax.annotate(f"real text (test split): {real:.2f}", (real, ax.get_ylim()[0]), textcoords="offset points",
                    xytext=(4, 6), fontsize=8, color="gray")
    ax.set_xlabel("LM NLL of 10k prior samples (bits per word; lower: more fluent)")
    ax.set_ylabel("reconstruction BLEU (test split)")
    ax.set_title("SNLI: reconstruction against sample quality, same epochs for every model")
    ax.invert_xaxis()  # better on both axes is up and to the right
    ax.legend()
    fig.tight_layout()
    figure = os.path.splitext(args.out)[0] + ".png"
    fig.savefig(figure, dpi=120)
    reading = written_reading(args.out)
    lines = ["# Beyond the paper: text-autoencoders' models on SNLI", "",
             *[paragraph for line in provenance(args)[:1] for paragraph in (line, "")],
             "Every model trained for the same number of epochs as the Transformer rows (`bash examples/snli/run.sh "
             "compare`: the LSTMs in `$WORK/compare`, with the paper's settings of Table 1 otherwise; the Transformer "
             "rows are the committed ones of `ablations/transformer.md` and `ablations/transformer-vae.md`). The "
             "adversarial models are text-autoencoders' (Shen et al. 2020) on the paper's LSTM: `--criterion aae "
             "--adversarial-lambda 1`, Adam betas (0.5, 0.999). Metrics as in Table 1 (NLL in bits per word under "
             "the news trigram LM); KL (nats), MI and active units (of 100) of the Gaussian models on 500 test "
             "sentences (`latent_metrics.py`). Training: fairseq's train_wall, two trainings at once on the "
             "2-core CPU.", "", *header, *rows, "",
             f"![BLEU against sample NLL]({os.path.basename(figure)})", "", *reading]
    write_report(args.out, lines)
    print(f"wrote {figure}")


# the models and priors of `run.sh learned-prior` (its PRIOR_MODELS and DENSITIES)
PRIOR_MODELS = (("dae", "DAE"), ("vae", "VAE (annealed)"), ("wae3", "WAE lambda=3"), ("wae10", "WAE lambda=10"),
                ("aae", "AAE"))
PRIORS = (("normal", "N(0, I)"), ("gaussian", "Gaussian fit"), ("gmm", "Gaussian mixture"), ("flow", "flow (MAF, coupling)"))


def learned_prior(args):
    """Each model's prior samples from N(0, I) and from each density fitted to its training codes: Table 1's
    sample metrics, reverse perplexity, the share copied from training, and the prior's held-out
    log-likelihood per code against N(0, I)'s. Keeps the hand-written reading of an existing file."""
    from fairseq_wae.fitted_prior import load_prior

    evaluated = [tuple(os.path.join(args.work, "learned-prior", f"{name}.normal{suffix}") for suffix in (".json", ".log"))
                 for name, _ in PRIOR_MODELS]
    header = ["| model | prior | NLL | UnigramKL | Entropy | AvgLen | Reverse PPL | Copied | held-out log-lik. "
              "(N(0, I)) |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for name, label in PRIOR_MODELS:
        for density, prior_label in PRIORS:
            found = os.path.join(args.work, "learned-prior", f"{name}.{density}.json")
            if not os.path.exists(found):
                continue
            with open(found) as f:
                metrics = json.load(f)["metrics"]
            fit = "-"
            prior_path = os.path.join(args.work, "learned-prior", f"{name}.{density}.pt")
            if os.path.exists(prior_path):
                record = load_prior(prior_path).record
                components = f", K={len(record['weights'])}" if density == "gmm" else ""
                fit = (f"{record['held_out_log_likelihood']:.1f} ({record['held_out_log_likelihood_standard_normal']:.1f})"
                       + components)
            rows.append(f"| {label} | {prior_label} | " + " | ".join(table1_cells(metrics)[1:] + diversity_cells(metrics))
                        + f" | {fit} |")
    lines = ["# Beyond the paper: sampling from a prior fitted to the codes", "",
             *[paragraph for line in provenance(args, [name for name, _ in PRIOR_MODELS])[:2]
               for paragraph in (line, "")],
             "`bash examples/snli/run.sh learned-prior`: for each model of Table 1 (and the AAE), "
             "`fairseq-wae-fit-prior` fits a density to the codes of the training split (Ghosh et al. 2020), and "
             f"`fairseq-generate --task prior_sampling --prior-file` draws from it, beside N(0, I): "
             f"{sampling_settings(args.work, evaluated)}. NLL: bits per word under the news trigram LM (lower: "
             "more fluent). Reverse PPL: a trigram KenLM trained on the samples scores the test split, cut to 20 words (lower: the samples cover "
             "more of real text). Copied: samples that are a training sentence verbatim. Held-out log-likelihood: "
             "nats per code of the 10% of training codes held out from the fit, N(0, I)'s in brackets.", "",
             *header, *rows, "", *written_reading(args.out)]
    write_report(args.out, lines)


def read_log(path, kind="train_inner"):
    """The ``kind`` records (train_inner, train, valid) of a fairseq json log, in order."""
    with open(path) as f:
        return json_log_records(f, kind)


def figure3(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    logs = sorted(n for n in os.listdir(os.path.join(args.work, "logs")) if n.startswith("vae"))
    for name in logs:
        records = read_log(os.path.join(args.work, "logs", name))
        if not records:
            continue
        steps = [int(r["num_updates"]) for r in records]
        weighted = [float(r["weighted_kl"]) for r in records]
        label = name[:-4].replace("vae-const", "lambda = ").replace("vae", "annealed (sigmoid, stop at peak)")
        ax.plot(steps, weighted, label=label)
    ax.set_xlabel("update")
    ax.set_ylabel("lambda * KL (nats per sentence)")
    ax.set_title("VAE: weighted KL during training (paper's Figure 3)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


def figure1(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from fairseq_wae.models.hub_interface import from_checkpoint

    with open(os.path.join(args.data, "test.txt"), encoding="utf-8") as f:
        sentences = [line.strip() for line in f][: args.points]
    names = [n for n in ("dae", "vae", "wae10") if os.path.exists(os.path.join(args.work, "checkpoints", n,
                                                                                "checkpoint_last.pt"))]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        autoencoder = from_checkpoint(os.path.join(args.work, "checkpoints", name, "checkpoint_last.pt"), args.data)
        z = autoencoder.encode(sentences, tokenize=False, batch_size=len(sentences)).double()
        prior = torch.randn(len(sentences), z.size(1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        both = torch.cat([z, prior])
        mean = both.mean(0)
        _, _, v = torch.linalg.svd(both - mean, full_matrices=False)
        project = lambda x: ((x - mean) @ v[:2].T).numpy()  # noqa: E731
        ax.scatter(*project(prior).T, s=4, c="tab:red", alpha=0.4, label="prior N(0, I)")
        ax.scatter(*project(z).T, s=4, c="tab:blue", alpha=0.4, label="encoded test sentences")
        ax.set_title(f"{LABELS[name]}: first two principal components")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["table1", "table2", "figure3", "figure1", "transformer", "compare",
                                         "learned-prior"])
    parser.add_argument("--work", required=True)
    parser.add_argument("--data")
    parser.add_argument("--lstm-results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                        help="transformer: the folder whose eval/ and logs/ hold the LSTM rows; compare: the "
                             "Transformer rows (default: the committed results)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # importing fairseq sets the root logger to DEBUG
    {"table1": table1, "table2": table2, "figure3": figure3, "figure1": figure1,
     "transformer": transformer, "compare": compare, "learned-prior": learned_prior}[args.what](args)


if __name__ == "__main__":
    main()
