"""Data-parallel training on 2 CPU processes (gloo), against 1 process with --update-freq 2."""
import math
import socket
import subprocess
import sys
import time

import pytest
import torch

from helpers import CLI_ENV, REPO, USER_DIR, forked_ranks, parse_json_log, run, start_workers

LAUNCHER = REPO / "scripts" / "train_distributed_cpu.sh"
#: fairseq's two data-parallel backends: legacy_ddp, and pytorch_ddp (the GPU default), which runs on CPU
#: workers through a test-only shim (tests/shims/pytorch_ddp_on_cpu.py: torch refuses fairseq's device ids
#: for CPU modules)
BACKENDS = ("legacy_ddp", "pytorch_ddp")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common_flags(arch, criterion):
    return ["--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch, "--criterion", criterion,
            "--optimizer", "adam", "--lr", "0.005", "--batch-size", "16", "--max-update", "30", "--seed", "3",
            "--log-format", "json", "--log-interval", "1", "--no-save", "--disable-validation", "--num-workers", "0"]


def launch(data, *flags, backend="legacy_ddp", cwd=None, rank_command=None):
    """The launcher's run, its ranks forked from a server that imported torch and fairseq (helpers.forked_ranks),
    in ``cwd`` (fairseq saves a step that raised as checkpoints/crash.pt there whatever --no-save says: a
    test whose step raises gives its own folder); ``rank_command``: what each rank runs in place of fairseq-train."""
    env = {**CLI_ENV, "NPROC": "2", "PORT": str(free_port()), "TIMEOUT": "300", "DDP_BACKEND": backend,
           **forked_ranks(REPO / "tests" / "shims" / "pytorch_ddp_on_cpu.py" if backend == "pytorch_ddp" else None)}
    if rank_command:
        env["FAIRSEQ_TRAIN"] = rank_command
    return subprocess.run(["bash", str(LAUNCHER), str(data), *flags], env=env, capture_output=True, text=True,
                          timeout=400, cwd=cwd)


#: logged counts, equal to the digit; and the losses and gradient norm, equal to fairseq's printed 3 decimals
#: but for the order in which float32 sums the workers' gradients, which moves a last digit in 30 updates
COUNTS = ("num_updates", "bsz", "wpb", "kl_weight")
VALUES = ("loss", "nll_loss", "gnorm", "mmd", "kl", "discriminator_loss")


def assert_same_updates(distributed, single):
    assert [[r.get(key) for key in COUNTS] for r in distributed] == [[r.get(key) for key in COUNTS] for r in single]
    for a, b in zip(distributed, single):
        for key in VALUES:
            if key in a:
                assert float(a[key]) == pytest.approx(float(b[key]), abs=2e-3, rel=1e-3), (key, a, b)


def inner_records(text):
    return [r for r in parse_json_log(text) if "loss" in r and "num_updates" in r]


@pytest.mark.parametrize("arch,criterion,flags,compare", [
    ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.2"], True),
    # the WAE, on the LSTM and the Transformer: the uneven-epoch test below; --mmd-global: the one-sentence
    # batch test (what one process logs on the gathered batch) and the per-code gradients, in process
    # annealed fast enough that lambda*KL peaks and stop-at-peak freezes the weight near update 25
    ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "12", "--kl-anneal-steepness",
                                 "0.25", "--kl-anneal-stop-at-peak", "--word-dropout", "0.1"], True),
    # the discriminator belongs to the criterion (fairseq all-reduces its gradients like the model's); DAAE
    # noise and the LAAE term ride along, their draws keyed by global micro-batch
    ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01", "--noise-drop", "0.2", "--noise-shuffle-distance", "2"], True),
])
def test_two_processes_match_one_process_with_update_freq_2(toy_data, arch, criterion, flags, compare):
    """With --dropout 0.2: the model's dropout masks are keyed like every other draw. On fairseq's
    pytorch_ddp, the GPU default (the aae's discriminator wrapped in torch's DDP too); legacy_ddp runs in
    the uneven-epoch and NaN tests below."""
    backend = "pytorch_ddp"
    flags = [*flags, "--dropout", "0.2"]
    two = launch(toy_data, *common_flags(arch, criterion), *flags, backend=backend)
    assert two.returncode == 0, two.stderr[-3000:]
    distributed = inner_records(two.stdout + two.stderr)
    assert [int(r["num_updates"]) for r in distributed] == list(range(1, 31))  # rank 0 alone logs
    assert all(float(r["bsz"]) == 32 for r in distributed)  # aggregated over both workers
    for metric in {"ae_cross_entropy": ["nll_loss", "word_dropout"], "wae_mmd": ["mmd", "mmd_weight"],
                   "vae_kl": ["kl", "kl_weight", "active_units", "word_dropout"],
                   "aae": ["adversarial", "discriminator_loss", "discriminator_accuracy", "logvar_l1"]}[criterion]:
        assert metric in distributed[-1], metric
    if "--kl-anneal-stop-at-peak" in flags:
        weights = [float(r["kl_weight"]) for r in distributed]
        assert weights[0] == pytest.approx(1 / (1 + math.exp(0.25 * 12)), abs=1e-4)  # the schedule at update 0
        assert weights[-3] == weights[-2] == weights[-1] < 1 / (1 + math.exp(-0.25 * (29 - 12)))  # frozen
        assert float(distributed[-1]["word_dropout"]) == pytest.approx(0.1)
    if compare:
        one = run(["fairseq-train", toy_data, *common_flags(arch, criterion), *flags, "--cpu", "--update-freq", "2"])
        single = inner_records(one.stdout + one.stderr)
        assert [int(r["num_updates"]) for r in single] == list(range(1, 31))
        assert_same_updates(distributed, single)


#: validation values of each logging step's batches, one per worker (2 batches on 2 workers, 1 in one process),
#: not of the model: words and sentences per step, speed, and the active units of the step's sentences
BATCHING = {"valid_wps", "valid_wpb", "valid_bsz", "valid_active_units"}


def test_a_bn_vae_from_two_workers_of_either_backend_validates_and_saves_as_one_process(toy_data, tmp_path):
    """BN-VAE: each worker normalises by its own batch, as one process does micro-batch by micro-batch, and
    the running statistics that evaluation uses move once an update, from every sentence of every worker.
    3 tiny epochs, of the 101 sentences of the test split in 7 batches: each epoch's last update holds one
    batch (the other worker forwards weightless padding); then validation (100 sentences, 7 batches)."""
    flags = [f for f in common_flags("lstm_vae_tiny", "vae_kl") if f not in ("--disable-validation", "--no-save")]
    flags += ["--bn-posterior-mean", "0.6", "--dropout", "0.2", "--train-subset", "test", "--max-epoch", "3",
              "--no-epoch-checkpoints"]
    flags[flags.index("--max-update") + 1] = "0"
    one = run(["fairseq-train", toy_data, *flags, "--save-dir", tmp_path / "one", "--cpu", "--update-freq", "2"])
    single = parse_json_log(one.stdout + one.stderr)
    valid_single = [r for r in single if "valid_loss" in r]
    assert [int(r["valid_num_updates"]) for r in valid_single] == [4, 8, 12]
    saved = torch.load(tmp_path / "one" / "checkpoint_last.pt", weights_only=True)["model"]
    norm = "encoder.latent_head.mean_norm."
    for backend in BACKENDS:
        two = launch(toy_data, *flags, "--save-dir", tmp_path / backend, backend=backend)
        assert two.returncode == 0, two.stderr[-3000:]
        records = parse_json_log(two.stdout + two.stderr)
        assert_same_updates(inner_records(two.stdout + two.stderr), inner_records(one.stdout + one.stderr))
        valid = [r for r in records if "valid_loss" in r]
        assert len(valid) == 3 and valid[0].keys() == valid_single[0].keys()
        for a, b in zip(valid, valid_single):
            for key in set(a) - BATCHING:  # every value of the model as logged (3 or 4 decimals)
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), (backend, key, a, b)
        model = torch.load(tmp_path / backend / "checkpoint_last.pt", weights_only=True)["model"]
        for key in ("running_mean", "running_var"):
            assert torch.allclose(model[norm + key], saved[norm + key], rtol=0, atol=1e-5), (backend, key)
    # the running statistics moved far from their start, by more than the tolerance
    assert (saved[norm + "running_var"] - 1).abs().max() > 0.01


# each network on pytorch_ddp (the GPU default) here; legacy_ddp on the LSTM and --mmd-global's padding in
# scripts/gpu_check.py's CPU stand-in (test_gpu_check.py), and on the BN-VAE and the non-finite update below
@pytest.mark.parametrize("arch,backend", [("lstm_wae_tiny", "pytorch_ddp"), ("transformer_wae_tiny", "pytorch_ddp")])
def test_n_workers_times_update_freq_k_equal_one_process_times_n_k_with_dropout_and_an_uneven_last_update(
        toy_data, arch, backend):
    """2 workers x --update-freq 3 = 1 process x --update-freq 6, dropout 0.2 and the MMD's draws included,
    over an epoch of 75 batches whose last update holds 3 (one worker then forwards weightless padding)."""
    flags = [*common_flags(arch, "wae_mmd"), "--mmd-lambda", "10", "--dropout", "0.2", "--max-epoch", "1",
             "--max-update", "0"]
    two = launch(toy_data, *flags, "--update-freq", "3", backend=backend)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run(["fairseq-train", toy_data, *flags, "--cpu", "--update-freq", "6"])
    distributed, single = inner_records(two.stdout + two.stderr), inner_records(one.stdout + one.stderr)
    assert len(single) == 13 and single[-1]["bsz"] == "48"  # 1200 sentences in batches of 16: 12 x 6 + 3
    assert all(key in distributed[-1] for key in ("mmd", "mmd_weight", "weighted_mmd"))
    assert_same_updates(distributed, single)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_finite_update_on_two_workers_is_named(toy_data, backend, tmp_path):
    result = launch(toy_data, *common_flags("lstm_wae_tiny", "wae_mmd"), "--mmd-lambda", "1e38", backend=backend,
                    cwd=tmp_path)
    assert result.returncode != 0
    assert "non-finite loss at update 1 (cross-entropy" in result.stderr, result.stderr[-3000:]


def _batch_norm_worker(rank, port, data, results):
    import torch.distributed as dist

    from helpers import build, first_batch

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    # each worker its own weights: at initialisation one model's means of two sets of sentences differ by
    # too little to tell the gathered statistics from a worker's own (see the test's last line)
    torch.manual_seed(rank)
    task, model, criterion = build(data, "lstm_vae_tiny", "vae_kl", "--bn-posterior-mean", "0.6")
    model.train()
    norm = model.encoder.latent_head.mean_norm
    seen = []
    norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().clone()))
    before = norm.running_mean.clone(), norm.running_var.clone()
    for size in (16 + 8 * rank, 5):  # each worker its own micro-batches, of other sizes
        criterion(model, first_batch(task, size))
    model.end_update()  # what the task calls after every optimizer step
    results[rank] = (before, torch.cat(seen), (norm.running_mean.clone(), norm.running_var.clone()))
    dist.destroy_process_group()


def test_bn_vae_running_statistics_move_once_an_update_from_the_sentences_of_every_worker(toy_data):
    """Each worker normalises by its own batch; at the update's end every worker's running statistics move
    from the mean and variance of every sentence all workers encoded in it (as a synchronised BatchNorm
    gathers them): one process encoding all of them in one update keeps the same statistics."""
    results = start_workers(_batch_norm_worker, (free_port(), toy_data))
    (before, means0, after0), (before1, means1, after1) = results[0], results[1]
    assert all(torch.equal(a, b) for a, b in zip(before, before1))
    means = torch.cat([means0, means1]).double()
    assert len(means) == 16 + 24 + 5 + 5
    expected = (before[0].double().lerp(means.mean(0), 0.1), before[1].double().lerp(means.var(0), 0.1))
    for i in range(2):  # mean, variance
        assert torch.allclose(after0[i].double(), expected[i], rtol=0, atol=1e-6), (after0[i] - expected[i]).abs().max()
        assert torch.equal(after0[i], after1[i])
    # the workers' own sentences alone would give other statistics, by far more than the tolerance
    assert (before[1].double().lerp(means0.double().var(0), 0.1) - expected[1]).abs().max() > 1e-4


def test_a_run_requeued_on_two_workers_resumes_a_one_process_run_with_its_saved_stop_at_peak_state(
        toy_data, tmp_path):
    """A job preempted and requeued with another worker count: 1 process x --update-freq 2, then 2 workers."""
    flags = [f for f in common_flags("lstm_vae_tiny", "vae_kl") if f != "--no-save"] + [
        "--save-dir", tmp_path, "--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "10",
        "--kl-anneal-steepness", "0.3", "--kl-anneal-stop-at-peak"]
    run(["fairseq-train", toy_data, *flags, "--cpu", "--update-freq", "2"])
    checkpoint = tmp_path / "checkpoint_last.pt"
    from fairseq_wae.schedules import PeakStopper

    state = torch.load(checkpoint, weights_only=True)
    saved = PeakStopper()
    saved.load_state_dict(state["model"]["schedule_state._extra_state"])
    saved.frozen_weight = 0.3  # as if frozen at 0.3; the schedule itself is above 0.999 from update 35 on
    state["model"]["schedule_state._extra_state"] = saved.state_dict()
    torch.save(state, checkpoint)
    resumed = launch(toy_data, *flags, "--max-update", "50")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = inner_records(resumed.stdout + resumed.stderr)
    assert [int(r["num_updates"]) for r in records] == list(range(31, 51))
    assert {float(r["kl_weight"]) for r in records} == {0.3}


def test_the_launcher_refuses_bf16_naming_the_route_that_works(toy_data):
    result = launch(toy_data, *common_flags("lstm_wae_tiny", "wae_mmd"), "--bf16")
    assert result.returncode == 2 and "fairseq-hydra-train and common.bf16=true" in result.stderr


def test_a_failing_rank_fails_the_launch_with_its_status_and_stops_the_others(toy_data, tmp_path):
    """Rank 1 fails at once while rank 0 would run for a minute: the launch ends with rank 1's status and
    message, rank 0 stopped (a real rank's refusal through the launcher: the non-finite update's test)."""
    rank = tmp_path / "rank.sh"
    rank.write_text('for arg in "$@"; do [ "$previous" = --distributed-rank ] && r=$arg; previous=$arg; done\n'
                    'if [ "$r" = 1 ]; then echo "rank 1 refused its flags" >&2; exit 3; fi\nexec sleep 60\n')
    start = time.monotonic()
    result = launch(toy_data, rank_command=f"bash {rank}")
    assert result.returncode == 3 and "rank 1 refused its flags" in result.stderr, result.stderr[-3000:]
    assert time.monotonic() - start < 30


def _kernel(name):
    from functools import partial

    from fairseq_wae.penalties import imq_kernel, rbf_kernel

    return rbf_kernel if name == "rbf" else partial(imq_kernel, latent_dim=4, scales=(1.0,), c_base_per_dim=2.0)


#: (kernel, rows on each worker) of the gather test: unequal batches, and one worker holding padding alone
GATHER_CASES = [(kernel, sizes) for sizes in ((5, 3), (8, 0)) for kernel in ("imq", "rbf")]


def _gather_worker(rank, port, codes, results):
    """Every case of GATHER_CASES in one process group: (gathered rows, MMD, the local codes' gradient)."""
    import torch.distributed as dist

    from fairseq_wae.distributed import gather_rows
    from fairseq_wae.penalties import mmd_unbiased
    from fairseq_wae.seeding import normal_rows

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for case, ((kernel, sizes), z_full) in enumerate(zip(GATHER_CASES, codes)):
        start = sum(sizes[:rank])
        local = z_full[start:start + sizes[rank]].clone().requires_grad_(True)
        gathered = gather_rows(local)
        prior = normal_rows(gathered.size(0), 4, torch.Generator().manual_seed(0), "cpu", torch.float64)
        mmd = mmd_unbiased(gathered, prior, _kernel(kernel))
        mmd.backward()
        results[rank, case] = (gathered.detach(), mmd.item(), local.grad.clone())
    dist.destroy_process_group()


def test_mmd_global_gathers_the_batch_and_keeps_local_gradients():
    """Each worker gathers the others' row counts, pads to the largest and drops the padding after the
    gather: exactly the 8 real codes, in rank order, whose estimate is the MMD against 8 prior rows, and
    each worker's codes get their share of its gradient. Every case in one pair of workers."""
    from fairseq_wae.penalties import mmd_unbiased
    from fairseq_wae.seeding import normal_rows

    codes = [torch.randn(sum(sizes), 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
             for _, sizes in GATHER_CASES]
    results = start_workers(_gather_worker, (free_port(), codes))
    for case, ((kernel, sizes), z) in enumerate(zip(GATHER_CASES, codes)):
        prior = normal_rows(len(z), 4, torch.Generator().manual_seed(0), "cpu", torch.float64)
        reference = z.clone().requires_grad_(True)
        expected = mmd_unbiased(reference, prior, _kernel(kernel))
        expected.backward()
        for rank, rows in ((0, slice(0, sizes[0])), (1, slice(sizes[0], len(z)))):
            gathered, mmd, grad = results[rank, case]
            assert torch.equal(gathered, z), (kernel, sizes)  # the real rows alone: no (2N x largest batch)^2 matrix
            assert mmd == pytest.approx(expected.item(), rel=1e-12), (kernel, sizes)
            assert torch.allclose(grad, reference.grad[rows], rtol=1e-10, atol=1e-14), (kernel, sizes)


def test_launcher_refuses_a_busy_port_and_bad_nproc(toy_data):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(["bash", str(LAUNCHER), str(toy_data)], env={**CLI_ENV, "PORT": str(port)},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and f"port {port} is busy" in result.stderr
    result = subprocess.run(["bash", str(LAUNCHER), str(toy_data)], env={**CLI_ENV, "NPROC": "two"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "NPROC must be a positive number" in result.stderr


def _code_gradients(task_data, flags, batch, rank=None):
    """d(loss)/dz for each code of ``batch`` (a collated sample) as fairseq reduces it: every worker's
    gradient summed, over the global token count. ``rank``: one of 2 gloo workers (the process group
    made) holding half the batch, else one process (``--update-freq 2`` when flags ask for it)."""
    import torch.distributed as dist

    from helpers import build

    task, model, criterion = build(task_data, "lstm_wae_tiny", "wae_mmd", *flags)
    torch.manual_seed(0)
    for parameter in model.parameters():  # the same weights in every process
        torch.nn.init.normal_(parameter, std=0.3)
    model.double()  # so that the comparison sees the estimator, not float32 rounding
    model.train()
    criterion.set_training_progress(5, 1)
    halves = [slice(0, 7), slice(7, 16)]  # unequal, as at the end of an epoch
    if rank is not None:
        parts = [halves[rank]]
    else:
        parts = halves if "--update-freq" in flags else [slice(0, 16)]
    gradients, total_tokens = [], 0
    for rows in parts:
        sample = {"net_input": {k: v[rows] for k, v in batch["net_input"].items()},
                  "target": batch["target"][rows], "ntokens": int(batch["target"][rows].ne(1).sum())}
        net_input = sample["net_input"]
        z = model.encoder(net_input["src_tokens"], net_input["src_lengths"])["z"].detach().requires_grad_(True)
        sample["net_input"]["latent"] = z  # the encoder passes given codes through: their gradient is readable
        loss, sample_size, _ = criterion(model, sample)
        loss.backward()
        gradients.append(z.grad)
        total_tokens += sample_size
    gradient = torch.cat(gradients)
    if rank is not None:
        tokens = torch.tensor([float(total_tokens)])
        dist.all_reduce(tokens)
        return gradient / tokens.item()
    return gradient / total_tokens


#: (kernel, mode) of the per-code gradient test: --mmd-global, and per-worker MMD (--update-freq 2 in one process)
GRADIENT_CASES = [(kernel, mode) for mode in ("global", "per-worker") for kernel in ("imq", "rbf")]


def _gradient_flags(kernel):
    return ["--mmd-lambda", "50", "--mmd-kernel", kernel, "--seed", "4"]


def _code_gradient_worker(rank, port, data, batch, results):
    """Every case of GRADIENT_CASES in one process group."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for case, (kernel, mode) in enumerate(GRADIENT_CASES):
        flags = _gradient_flags(kernel) + (["--mmd-global"] if mode == "global" else [])
        results[rank, case] = _code_gradients(data, flags, batch, rank)
    dist.destroy_process_group()


def test_per_code_gradients_of_two_workers_equal_one_process(toy_data):
    """--mmd-global: one process on the concatenated batch; per-worker MMD: one process, --update-freq 2.
    Every kernel and mode in one pair of workers."""
    from helpers import build, first_batch

    batch = first_batch(build(toy_data, "lstm_wae_tiny", "wae_mmd", *_gradient_flags("imq"))[0], size=16)
    results = start_workers(_code_gradient_worker, (free_port(), toy_data, batch))
    no_penalty = _code_gradients(toy_data, ["--mmd-lambda", "0", "--seed", "4"], batch)
    for case, (kernel, mode) in enumerate(GRADIENT_CASES):
        two_workers = torch.cat([results[0, case], results[1, case]])
        # --mmd-global in one process estimates on its own batch, drawing the prior as the gathered batch does
        one_process = _code_gradients(toy_data, _gradient_flags(kernel) + (
            ["--update-freq", "2"] if mode == "per-worker" else ["--mmd-global"]), batch)
        difference = (two_workers - one_process).abs().max()
        assert torch.allclose(two_workers, one_process, atol=1e-6, rtol=0), (kernel, mode, difference)
        # the penalty carries real weight here: without it the gradients differ by far more than the tolerance
        assert (no_penalty - one_process).abs().max() > 1e-3, (kernel, mode)


@pytest.mark.parametrize("arch,criterion,flags,single", [
    # the stochastic WAE logs every kind of key: sentence means, counts, and the posterior means' sums
    ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"], ["--update-freq", "2"]),
    # the MMD of the batch gathered from both workers is that of one process on the concatenated batch
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-global"], ["--batch-size", "3"]),
    # the same with batches made by --max-tokens alone: 2 + 1 sentences, gathered without padding (the gather
    # reads their sizes); and validated, with a --batch-size-valid larger than any training batch
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-global", "--max-tokens"], ["--batch-size", "3"]),
])
def test_a_one_sentence_batch_on_one_worker_logs_what_one_process_logs(tmp_path, arch, criterion, flags, single):
    # 3 sentences in batches of 2: one worker gets 2 sentences, the other 1, every update. fairseq sums the
    # logging outputs of both in one buffer under the first one's keys: any key or type that differed
    # between the batches would abort gloo or mix up the numbers.
    from helpers import preprocess, toy_sentences

    sentences = toy_sentences(3, seed=5)
    data = preprocess(tmp_path, {"train": sentences, "valid": sentences})
    flags = [f if f != "16" else "2" for f in common_flags(arch, criterion)] + flags
    flags[flags.index("--max-update") + 1] = "6"
    distributed = list(flags)
    if "--max-tokens" in flags:  # twice the longest sentence (with its end of sentence): batches of 2 and 1
        flags.remove("--max-tokens")
        distributed = list(flags)
        i = distributed.index("--batch-size")
        distributed[i:i + 2] = ["--max-tokens", str(2 * max(len(s.split()) + 1 for s in sentences))]
        distributed.remove("--disable-validation")
        distributed += ["--batch-size-valid", "64", "--validate-interval-updates", "6"]
    two = launch(data, *distributed)
    assert two.returncode == 0, two.stderr[-3000:]
    if "--batch-size-valid" in distributed:
        logged = parse_json_log(two.stdout + two.stderr)
        assert [r for r in logged if "valid_mmd" in r]
        assert {float(r["mmd_skipped"]) for r in logged if "mmd" in r} == {0.0}
    one = run(["fairseq-train", data, *flags, "--cpu", *single])
    distributed, alone = inner_records(two.stdout + two.stderr), inner_records(one.stdout + one.stderr)
    assert [int(r["num_updates"]) for r in distributed] == [int(r["num_updates"]) for r in alone] == list(range(1, 7))
    metrics = ["loss", "nll_loss", "mmd", "weighted_mmd"]
    if arch == "lstm_vae_tiny":
        metrics += ["variance_kl", "posterior_var", "active_units", "mmd_skipped"]
    for a, b in zip(distributed, alone):
        assert float(a["bsz"]) == float(b["bsz"]) == 3
        for metric in metrics:
            assert float(a[metric]) == pytest.approx(float(b[metric]), abs=2e-3), (metric, a, b)
