"""The checks that need a GPU, in one run ending in one table; exits 1 when any row fails.

    bash scripts/gpu_check.sh [--cpu] [--work DIR] [--only LEG ...] [--tolerance-factor F]

Every comparison states a tolerance per logged value (loss, nll, the penalty, gnorm, ...) and runs a control
beside it: the same comparison between two float32 runs that differ only in --seed, which must differ by
more than its tolerance on every value compared (else the row fails, naming the value: a tolerance that two
seeds meet cannot tell a broken run from a correct one). References run in float32 with TF32 off
(NVIDIA_TF32_OVERRIDE=0). Draws are compared on one device: runs on CUDA against runs on CUDA.

Legs (``--only`` takes these names):
  cuda-tests     tests/test_cuda.py on the GPU (one process, no xdist); nothing run is a failure
  precision      --fp16, --bf16 and --amp against float32, updates 1-3, --dropout 0 (CUDA's dropout kernel
                 vectorises by element size, so one seed draws other masks per dtype; dropout's equivalence is the
                 data-parallel leg's, in one dtype): stochastic WAE, VAE, AAE, each value within its tolerance
                 (PRECISION_TOLERANCES); on the CPU --bf16 alone: fairseq trains neither --fp16 nor --amp there
  overflow       --fp16 with a huge --fp16-init-scale: the scaler skips the overflowing updates, lowers the
                 scale and recovers to finite losses and the planned number of updates
  data-parallel  2 workers against 1 with --update-freq 2 (DAE with word dropout, WAE, stop-at-peak VAE, AAE,
                 all with --dropout 0.2; the AAE alone on the CPU), 2 x --update-freq 3 against 1 x 6 over an
                 epoch whose last update leaves a worker without a batch, and --mmd-global's last update without
                 the padding's codes
  validation     fairseq-validate on an AAE checkpoint (its discriminator is the criterion's, which fairseq
                 does not move to the GPU: the criterion follows the model) gives the valid loss training logged
  speed          train words/s against fairseq's own lstm (the same sizes, data and batch, run by the same
                 command just before): fails under SPEED_RATIO times the lstm's (on the CPU, tiny networks)
  sampling       fairseq-generate's prior samples from the validation leg's AAE, read: the number asked for, each
                 a sentence of the dictionary's words (<unk> too), no padding, boundary or filler symbol

With --cpu, or where torch sees no CUDA device, it runs on the CPU: CUDA-only legs are skipped by name, the
others run their CPU stand-ins (tiny networks; 2 gloo workers for 2 GPUs; bfloat16 for half precision), so
that anyone can run the whole script before spending GPU time. ``--tolerance-factor`` multiplies every
tolerance (0 fails every comparison that is not exact).
"""
import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_wae")
LEGS = ("cuda-tests", "precision", "overflow", "data-parallel", "validation", "speed", "sampling")
CUDA_ONLY = {"cuda-tests", "overflow"}
#: Relative tolerance per logged value, half precision against float32 over updates 1-3: about a quarter of
#: the smallest gap between two float32 seeds measured on the CPU stand-in (tiny stochastic WAE, VAE and AAE,
#: --dropout 0), and 5 or more times the largest bfloat16-vs-float32 gap there (BENCHMARKS.md, "gpu_check
#: tolerances"). The MMD is near 0 at the start: its gaps are relative to max(|value|, 1e-3).
PRECISION_TOLERANCES = {"loss": 1.5e-3, "nll_loss": 1e-3, "mmd": 1.5, "kl": 0.09, "variance_kl": 9e-3,
                        "adversarial": 0.04, "discriminator_loss": 1.5e-3, "gnorm": 0.02}
#: values a run logs that the comparisons read
COMPARED = ("loss", "nll_loss", "mmd", "kl", "variance_kl", "adversarial", "discriminator_loss", "gnorm")
#: runs that compute the same numbers in float32: 1e-3 relative on every value, for the order in which float32
#: sums the workers' gradients (or fairseq-validate its batches)
SAME_NUMBERS = dict.fromkeys(COMPARED, 1e-3)
#: the speed row fails under this fraction of the words/s of fairseq's lstm of the same sizes
SPEED_RATIO = 0.5
COUNTS = ("num_updates", "bsz", "wpb", "kl_weight")


class Check:
    def __init__(self, args):
        self.args = args
        self.cuda = not args.cpu and cuda_available()
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check."))
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows = []
        self.checkpoints = {}
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "PYTHONWARNINGS": "ignore", "NVIDIA_TF32_OVERRIDE": "0", "OMP_NUM_THREADS": "1"}
        if not self.cuda:
            self.env["CUDA_VISIBLE_DEVICES"] = ""
        size = "paper" if self.cuda else "tiny"
        self.arch = {flavour: f"lstm_{flavour}_{size}" for flavour in ("ae", "vae", "wae", "aae")}

    # -- running ------------------------------------------------------------------------------------

    def row(self, leg, check, status, detail):
        self.rows.append((leg, check, status, detail))
        print(f"[{status}] {leg}: {check}: {detail}", flush=True)

    def command(self, name, cmd, env=None):
        """Runs ``cmd``, its output to WORK/name.log; returns (exit status, output)."""
        log = self.work / f"{name}.log"
        with open(log, "w") as out:
            status = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                                    env={**self.env, **(env or {})}, cwd=self.work).returncode
        return status, log.read_text(errors="replace")

    def train(self, name, arch, criterion, *flags, workers=1, data=None, user_dir=True):
        """fairseq-train's per-update records (json log), or None when it failed (the log names it); the
        plugin's task, unless ``flags`` name another (fairseq's own: ``user_dir=False``)."""
        plugin = ["--user-dir", USER_DIR, "--task", "sentence_autoencoding"] if user_dir else []
        cmd = [str(data or self.data), *plugin, "--arch", arch,
               "--criterion", criterion, "--optimizer", "adam", "--lr", "0.001", "--batch-size", "32",
               "--log-format", "json", "--log-interval", "1", "--no-save", "--disable-validation", "--seed", "1",
               "--num-workers", "0", *flags]
        if workers == 1:
            cmd = ["fairseq-train", *cmd, *([] if self.cuda else ["--cpu"])]
            env = {"CUDA_VISIBLE_DEVICES": "0"} if self.cuda else {}
        elif self.cuda:  # fairseq's own spawn, NCCL and its default --ddp-backend pytorch_ddp
            cmd, env = ["fairseq-train", *cmd, "--distributed-world-size", str(workers)], {}
        else:  # the CPU stand-in: gloo workers started one by one (scripts/train_distributed_cpu.sh)
            cmd = ["bash", REPO / "scripts" / "train_distributed_cpu.sh", *cmd]
            env = {"NPROC": str(workers), "PORT": str(free_port()), "TIMEOUT": "600"}
        status, output = self.command(name, cmd, env)
        if status != 0:
            return None
        return [r for r in json_records(output) if "num_updates" in r and "loss" in r]

    # -- comparisons --------------------------------------------------------------------------------

    def compare(self, leg, check, reference, other, tolerances, control, counts=True):
        """A row: ``other`` against ``reference``, each value of ``tolerances`` ({value: relative tolerance},
        times --tolerance-factor) within it, and the control (``reference`` against a float32 run with
        another seed) further than the tolerance on every value compared."""
        if reference is None or other is None or control is None:
            missing = [n for n, r in (("reference", reference), ("run", other), ("control", control)) if r is None]
            return self.row(leg, check, "FAIL", f"a run failed: {', '.join(missing)} (logs in {self.work})")
        if not reference or len(reference) != len(other):
            return self.row(leg, check, "FAIL", f"{len(other)} updates logged against the reference's {len(reference)}")
        if counts and [counted(r) for r in reference] != [counted(r) for r in other]:
            return self.row(leg, check, "FAIL", "the updates' counts (bsz, wpb, kl_weight) differ")
        gaps, control_gaps = differences(reference, other), differences(reference, control)
        limits = {key: tolerance * self.args.tolerance_factor for key, tolerance in tolerances.items() if key in gaps}
        if not limits:
            return self.row(leg, check, "FAIL", "none of the compared values was logged")
        detail = ", ".join(f"{key} {gaps[key]:.1e} (tolerance {limit:.1e}, seeds {control_gaps[key]:.1e})"
                           for key, limit in limits.items())
        detail += f": largest relative differences over {len(reference)} updates"
        outside = [key for key, limit in limits.items() if not gaps[key] <= limit]  # NaN and inf too
        if outside:
            return self.row(leg, check, "FAIL", f"{', '.join(outside)} outside the tolerance; {detail}")
        blind = [key for key, limit in limits.items() if not control_gaps[key] > limit]
        if blind:
            return self.row(leg, check, "FAIL",
                            f"the tolerance does not separate two seeds on {', '.join(blind)}; {detail}")
        self.row(leg, check, "pass", detail)

    # -- legs -----------------------------------------------------------------------------------------

    def prepare(self):
        corpus = self.work / "corpus.txt"
        lines = (REPO / "examples" / "toy" / "sentences.txt").read_text().splitlines()
        # on a GPU the bundled toy corpus 20 times; on the CPU its first 1,000 sentences (an odd count of
        # batches, so that the uneven-epoch comparisons have their padding)
        lines = lines * 20 if self.cuda else lines[:1000]
        corpus.write_text("".join(f"{line} {i % 97}\n" for i, line in enumerate(lines)))
        self.data = self.work / "data"
        if not (self.data / "dict.txt").exists():
            status, _ = self.command("prepare", [sys.executable, REPO / "scripts" / "prepare_corpus.py", "--input",
                                                 corpus, "--out", self.data])
            if status != 0:
                raise SystemExit(f"gpu_check: preparing the corpus failed: see {self.work / 'prepare.log'}")

    def leg_cuda_tests(self):
        status, output = self.command("cuda_tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
                                                     "-p", "no:randomly", REPO / "tests" / "test_cuda.py"])
        summary = output.strip().splitlines()[-1] if output.strip() else "no output"
        passed = int((re.search(r"(\d+) passed", summary) or [0, 0])[1])
        ok = status == 0 and passed > 0 and not re.search(r"\d+ (failed|error)", summary)
        self.row("cuda-tests", "tests/test_cuda.py on CUDA", "pass" if ok else "FAIL",
                 summary + ("" if passed else ": nothing ran"))

    def leg_precision(self):
        precisions = ["fp16", "bf16", "amp"] if self.cuda else ["bf16"]
        flavours = [("stochastic WAE", self.arch["vae"], "wae_mmd", ["--kl-variance-penalty", "1", "--mmd-lambda", "10"]),
                    ("VAE", self.arch["vae"], "vae_kl", ["--kl-weight", "0.5"]),
                    ("AAE", self.arch["aae"], "aae", ["--logvar-l1", "0.01"])]
        # the CPU stand-in: the stochastic WAE alone (tests/test_trainer_paths.py runs every flavour in bfloat16)
        for name, arch, criterion, flags in flavours if self.cuda else flavours[:1]:
            flags = [*flags, "--max-update", "3", "--dropout", "0"]
            tag = name.replace(" ", "_")
            reference = self.train(f"precision-{tag}-fp32", arch, criterion, *flags)
            control = self.train(f"precision-{tag}-fp32-seed2", arch, criterion, *flags, "--seed", "2")
            for precision in precisions:
                other = self.train(f"precision-{tag}-{precision}", arch, criterion, *flags, f"--{precision}")
                self.compare("precision", f"{name} --{precision} vs float32, updates 1-3", reference, other,
                             PRECISION_TOLERANCES, control)
        if not self.cuda:
            self.row("precision", "--fp16, --amp", "skipped", "CUDA only: fairseq trains neither on the CPU")

    def leg_overflow(self):
        records = self.train("overflow", self.arch["wae"], "wae_mmd", "--fp16", "--fp16-init-scale", str(2**60),
                             "--max-update", "5")
        output = (self.work / "overflow.log").read_text(errors="replace")
        skipped = output.count("gradient overflow detected")
        scales = [float(r["loss_scale"]) for r in records or [] if "loss_scale" in r]
        ok = (records is not None and skipped > 0 and [int(r["num_updates"]) for r in records][-1:] == [5]
              and all(math.isfinite(float(r["loss"])) for r in records) and scales and scales[-1] < 2**60)
        self.row("overflow", "--fp16 from a loss scale of 2^60", "pass" if ok else "FAIL",
                 f"{skipped} updates skipped by the scaler, then {len(records or [])} logged, finite, up to update 5, "
                 f"scale {scales[-1] if scales else '?'}")

    def leg_data_parallel(self):
        if self.cuda and gpu_count() < 2:
            return self.row("data-parallel", "2 GPUs", "skipped", "one GPU visible (the CPU stand-in: --cpu)")
        where = "2 GPUs (NCCL, pytorch_ddp)" if self.cuda else "CPU stand-in: 2 gloo workers"
        common = ["--dropout", "0.2", "--max-update", "12" if self.cuda else "6"]
        flavours = [
                ("DAE, word dropout", self.arch["ae"], "ae_cross_entropy", ["--word-dropout", "0.2"]),
                ("WAE", self.arch["wae"], "wae_mmd", ["--mmd-lambda", "10"]),
                ("stop-at-peak VAE", self.arch["vae"], "vae_kl", ["--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "4",
                                                                   "--kl-anneal-steepness", "0.5",
                                                                   "--kl-anneal-stop-at-peak"]),
                ("AAE", self.arch["aae"], "aae", ["--logvar-l1", "0.01", "--noise-drop", "0.2"])]
        # the CPU stand-in runs the two comparisons after these (the WAE's) alone: tests/test_distributed.py
        # compares every flavour on 2 gloo workers
        for name, arch, criterion, flags in flavours if self.cuda else []:
            tag = name.split(",")[0].replace(" ", "_")
            flags = [*flags, *common]
            one = self.train(f"dp-{tag}-1", arch, criterion, *flags, "--update-freq", "2")
            control = self.train(f"dp-{tag}-1-seed2", arch, criterion, *flags, "--update-freq", "2", "--seed", "2")
            two = self.train(f"dp-{tag}-2", arch, criterion, *flags, workers=2)
            self.compare("data-parallel", f"{where} vs 1 x --update-freq 2: {name}", one, two, SAME_NUMBERS, control)
        # an epoch whose last update leaves one worker without a batch: it forwards weightless padding
        # on the CPU 900 sentences in 29 batches of 32: the last update holds 5 (1 x 6), one worker padding (2 x 3)
        batch = "16" if self.cuda else "32"
        flags = ["--mmd-lambda", "10", "--dropout", "0.2", "--max-epoch", "1", "--batch-size", batch]
        one = self.train("dp-uneven-1", self.arch["wae"], "wae_mmd", *flags, "--update-freq", "6")
        control = self.train("dp-uneven-1-seed2", self.arch["wae"], "wae_mmd", *flags, "--update-freq", "6", "--seed", "2")
        two = self.train("dp-uneven-2", self.arch["wae"], "wae_mmd", *flags, "--update-freq", "3", workers=2)
        check = f"{where} x --update-freq 3 vs 1 x 6, an uneven last update"
        if one is not None and int(one[-1]["bsz"]) >= int(one[0]["bsz"]):
            self.row("data-parallel", check, "FAIL", "the epoch's last update is not uneven: has the corpus changed?")
        else:
            self.compare("data-parallel", check, one, two, SAME_NUMBERS, control)
        # --mmd-global: the last update (one worker's padding) is one process's on the last batch (learning rate 0)
        flags = ["--mmd-global", "--mmd-lambda", "10", "--max-epoch", "1", "--batch-size", batch, "--lr", "0"]
        one = self.train("dp-global-1", self.arch["wae"], "wae_mmd", *flags, "--update-freq", "2")
        control = self.train("dp-global-1-seed2", self.arch["wae"], "wae_mmd", *flags, "--update-freq", "2", "--seed", "2")
        two = self.train("dp-global-2", self.arch["wae"], "wae_mmd", *flags, workers=2)
        last = [records[-1:] if records else None for records in (one, two, control)]
        self.compare("data-parallel", f"{where} --mmd-global, the last update (a worker's padding) vs 1 process",
                     *last[:2], SAME_NUMBERS, last[2])

    def aae_checkpoint(self, seed):
        """(the checkpoint of 20 updates of an AAE validated at the last, its training's output or None
        where it failed), trained once per run: the validation leg's, whose seed 1 the sampling leg reads."""
        if seed not in self.checkpoints:
            save_dir = self.work / f"validation-ckpt{seed}"
            status, output = self.command(f"validation-train{seed}", [
                "fairseq-train", self.data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch",
                self.arch["aae"], "--criterion", "aae", "--optimizer", "adam", "--lr", "0.001", "--batch-size", "32",
                "--max-update", "20", "--validate-interval-updates", "20", "--save-dir", save_dir, "--seed", seed,
                "--log-format", "json", "--no-epoch-checkpoints", *([] if self.cuda else ["--cpu"])],
                env={"CUDA_VISIBLE_DEVICES": "0"} if self.cuda else {})
            self.checkpoints[seed] = (save_dir / "checkpoint_last.pt", output if status == 0 else None)
        return self.checkpoints[seed]

    def leg_validation(self):
        losses = {"2": (None, None)}
        for seed in ("1", "2"):
            checkpoint, output = self.aae_checkpoint(seed)
            logged = [r for r in json_records(output) if "valid_loss" in r] if output is not None else []
            if seed == "2":  # the control: the valid loss of a run with another seed
                losses[seed] = ([{"loss": logged[-1]["valid_loss"]}] if logged else None, None)
                continue
            status, output = self.command(f"validation-validate{seed}", [
                "fairseq-validate", self.data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                checkpoint, "--batch-size", "32", "--log-format", "json",
                *([] if self.cuda else ["--cpu"])], env={"CUDA_VISIBLE_DEVICES": "0"} if self.cuda else {})
            validated = [r for r in json_records(output) if "valid_loss" in r] if status == 0 else []
            losses[seed] = ([{"loss": logged[-1]["valid_loss"]}] if logged else None,
                            [{"loss": validated[-1]["valid_loss"]}] if validated else None)
        (logged, validated), (control, _) = losses["1"], losses["2"]
        self.compare("validation", "fairseq-validate of an AAE checkpoint vs the valid loss its training logged",
                     logged, validated, SAME_NUMBERS, control, counts=False)

    def leg_speed(self):
        """Train words/s of the WAE against fairseq's own lstm of the same sizes (no attention), on the same
        binaries (the plugin's, linked under the translation task's names) and batch, one after the other."""
        sizes = {"embed": 300, "hidden": 100} if self.cuda else {"embed": 32, "hidden": 64}
        # whole epochs: a run stopped mid-epoch can abort at exit while fairseq's prefetching thread collates
        # ("terminate called without an active exception": 4 of 6 fairseq-train runs of 30 updates here)
        epochs, interval = ("2", "20") if self.cuda else ("1", "5")
        batch = ["--batch-size", "128" if self.cuda else "32", "--max-epoch", epochs, "--log-interval", interval]
        pair = self.work / "pair"
        pair.mkdir(exist_ok=True)
        for side in ("src", "tgt"):
            for name, target in [(f"dict.{side}.txt", "dict.txt")] + [
                    (f"{split}.src-tgt.{side}.{kind}", f"{split}.{kind}") for split in ("train", "valid")
                    for kind in ("bin", "idx")]:
                if not (pair / name).exists():
                    (pair / name).symlink_to(self.data / target)
        lstm = self.train("speed-lstm", "lstm", "cross_entropy", *batch, "--task", "translation", "--source-lang",
                          "src", "--target-lang", "tgt", "--encoder-embed-dim", sizes["embed"], "--decoder-embed-dim",
                          sizes["embed"], "--encoder-hidden-size", sizes["hidden"], "--decoder-hidden-size",
                          sizes["hidden"], "--decoder-out-embed-dim", sizes["hidden"], "--decoder-attention", "0",
                          data=pair, user_dir=False)
        ours = self.train("speed-ours", self.arch["wae"], "wae_mmd", *batch)
        check = f"train words/s vs fairseq's lstm of the same sizes (at least {SPEED_RATIO}x)"
        if not ours or not lstm:
            return self.row("speed", check, "FAIL", f"a run failed (logs in {self.work})")
        mine, theirs = median_words_per_second(ours), median_words_per_second(lstm)
        self.row("speed", check, "pass" if mine >= SPEED_RATIO * theirs else "FAIL",
                 f"{mine:.0f} / {theirs:.0f} = {mine / theirs:.2f}x (median of the logged intervals after the first)")

    def leg_sampling(self):
        checkpoint, trained = self.aae_checkpoint("1")
        wanted = 10000 if self.cuda else 500
        start = time.time()
        status_generate, output = self.command("sampling", [
            "fairseq-generate", self.data, "--user-dir", USER_DIR, "--task", "prior_sampling", "--num-samples", wanted,
            "--seed", "1", "--path", checkpoint, "--beam", "1", "--batch-size", "1000",
            "--max-len-b", "20", *([] if self.cuda else ["--cpu"])])
        seconds = time.time() - start
        check = f"{wanted} prior samples, greedy, batch 1000: sentences of the dictionary's words"
        if trained is None or status_generate != 0:
            return self.row("sampling", check, "FAIL", f"a command failed (logs in {self.work})")
        status, detail = read_samples(output, wanted, self.data / "dict.txt")
        self.row("sampling", check, status, f"{detail}, in {seconds:.1f} s (whole command)")

    def run(self):
        self.prepare()
        for leg in self.args.only or LEGS:
            if leg in CUDA_ONLY and not self.cuda:
                self.row(leg, leg, "skipped", "CUDA only")
                continue
            getattr(self, "leg_" + leg.replace("-", "_"))()
        device = "CPU (stand-ins)" if not self.cuda else gpu_names()
        print(f"\ngpu_check on {device}; logs in {self.work}")
        print("| leg | check | result | detail |\n|---|---|---|---|")
        for leg, check, status, detail in self.rows:
            print(f"| {leg} | {check} | {status} | {detail} |")
        failed = [row for row in self.rows if row[2] == "FAIL"]
        ran = [row for row in self.rows if row[2] == "pass"]
        print(f"\n{len(ran)} passed, {len(failed)} failed, {len(self.rows) - len(ran) - len(failed)} skipped")
        return 1 if failed or not ran else 0


def counted(record):
    return [record.get(key) for key in COUNTS]


def differences(a, b):
    """{value: its largest relative difference over the updates} (inf where one is not finite)."""
    largest = {}
    for x, y in zip(a, b):
        for key in COMPARED:
            if key in x and key in y:
                u, v = float(x[key]), float(y[key])
                gap = abs(u - v) / max(abs(u), 1e-3) if math.isfinite(u) and math.isfinite(v) else math.inf
                largest[key] = max(largest.get(key, 0.0), gap)
    return largest


def median_words_per_second(records):
    speeds = sorted(float(r["wps"]) for r in records[1:] if "wps" in r)
    return speeds[len(speeds) // 2] if speeds else 0.0


#: what fairseq's dictionaries hold besides words: its special symbols and the fillers of --padding-factor
#: (<unk> is a word here: a prepared corpus writes it for the words outside its vocabulary)
NOT_WORDS = re.compile(r"<pad>|<s>|</s>|madeupword\d+")


def read_samples(output, wanted, dictionary):
    """(status, detail) of fairseq-generate's hypotheses: ``wanted`` sentences, each of one or more words
    of ``dictionary`` (dict.txt, and <unk>), no padding, sentence boundary or filler symbol."""
    lines = Path(dictionary).read_text(encoding="utf-8").splitlines()
    words = {line.split()[0] for line in lines if line.split() and not NOT_WORDS.fullmatch(line.split()[0])} | {"<unk>"}
    samples = {}
    for line in output.splitlines():
        if line.startswith("H-"):
            fields = line.split("\t")
            samples[fields[0]] = fields[2].split() if len(fields) > 2 else []
    bad = [tokens for tokens in samples.values() if not tokens or not all(token in words for token in tokens)]
    detail = f"{len(samples)} of {wanted} sentences, {len(bad)} not made of the dictionary's words"
    if bad:
        detail += f" (the first: {' '.join(bad[0])!r})"
    return ("pass" if len(samples) == wanted and not bad else "FAIL"), detail


def json_records(text):
    records = []
    for line in text.splitlines():
        if "{" in line and '"' in line:
            try:
                records.append(json.loads(line[line.index("{"):]))
            except ValueError:
                pass
    return records


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cuda_available():
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0


def gpu_count():
    probe = "import torch; print(torch.cuda.device_count())"
    return int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() or 0)


def gpu_names():
    probe = "import torch; print(torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is present")
    parser.add_argument("--work", help="folder for data and logs (default: a new temporary folder)")
    parser.add_argument("--only", nargs="+", choices=LEGS, help="run these legs alone")
    parser.add_argument("--tolerance-factor", type=float, default=1.0,
                        help="multiplies every tolerance (0: every comparison that is not exact fails)")
    args = parser.parse_args(argv)
    if not 0 <= args.tolerance_factor < math.inf:
        parser.error(f"--tolerance-factor must be a finite number >= 0, got {args.tolerance_factor}")
    if args.work and os.path.exists(args.work) and not os.path.isdir(args.work):
        parser.error(f"--work {args.work} is a file: give a folder (it is made if missing)")
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
