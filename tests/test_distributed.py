"""Data-parallel training on 2 CPU processes (gloo), against 1 process with --update-freq 2."""
import socket
import subprocess

import pytest
import torch
import torch.multiprocessing as mp

from conftest import CLI_ENV, REPO, USER_DIR, parse_json_log, run

LAUNCHER = REPO / "scripts" / "train_distributed_cpu.sh"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common_flags(arch, criterion):
    return ["--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch, "--criterion", criterion,
            "--optimizer", "adam", "--lr", "0.005", "--batch-size", "16", "--max-update", "30", "--seed", "3",
            "--log-format", "json", "--log-interval", "10", "--no-save", "--disable-validation"]


def launch(data, *flags):
    env = {**CLI_ENV, "NPROC": "2", "PORT": str(free_port()), "TIMEOUT": "300"}
    return subprocess.run(["bash", str(LAUNCHER), str(data), *flags], env=env, capture_output=True, text=True,
                          timeout=400)


def inner_records(text):
    return [r for r in parse_json_log(text) if "loss" in r and "num_updates" in r]


@pytest.mark.parametrize("arch,criterion,flags,compare", [
    ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.2"], True),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "10"], True),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "10", "--mmd-global"], False),
    # the Gaussian head's noise comes from fairseq's per-update seed, the same on every worker,
    # so a VAE run is checked for completing and aggregating, not for equality
    ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "linear", "--kl-anneal-steps", "20",
                                 "--word-dropout", "0.1"], False),
])
def test_two_processes_match_one_process_with_update_freq_2(toy_data, arch, criterion, flags, compare):
    two = launch(toy_data, *common_flags(arch, criterion), *flags)
    assert two.returncode == 0, two.stderr[-3000:]
    distributed = inner_records(two.stdout + two.stderr)
    assert [r["num_updates"] for r in distributed] == ["10", "20", "30"]  # rank 0 alone logs
    assert all(float(r["bsz"]) == 32 for r in distributed)  # aggregated over both workers
    for metric in {"ae_cross_entropy": ["nll_loss", "word_dropout"], "wae_mmd": ["mmd", "mmd_weight"],
                   "vae_kl": ["kl", "kl_weight", "active_units", "word_dropout"]}[criterion]:
        assert metric in distributed[-1], metric
    if criterion == "vae_kl":
        assert float(distributed[0]["kl_weight"]) == pytest.approx(sum(range(10)) / 10 / 20, abs=0.01)  # updates 0..9
        assert float(distributed[-1]["word_dropout"]) == pytest.approx(0.1)
    if compare:
        one = run(["fairseq-train", toy_data, *common_flags(arch, criterion), *flags, "--cpu", "--update-freq", "2"])
        single = inner_records(one.stdout + one.stderr)
        assert [r["num_updates"] for r in single] == ["10", "20", "30"]
        for a, b in zip(distributed, single):
            assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=2e-3), (a, b)


def test_a_two_process_run_resumes_with_its_saved_stop_at_peak_state(toy_data, tmp_path):
    flags = [f for f in common_flags("lstm_vae_tiny", "vae_kl") if f != "--no-save"] + [
        "--save-dir", tmp_path, "--kl-anneal", "sigmoid", "--kl-anneal-midpoint", "10",
        "--kl-anneal-steepness", "0.3", "--kl-anneal-stop-at-peak"]
    first = launch(toy_data, *flags)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "checkpoint_last.pt"
    state = torch.load(checkpoint, weights_only=False)
    # as if frozen at 0.3; the schedule itself is above 0.999 from update 35 on
    state["model"]["schedule_state._extra_state"]["frozen_weight"] = 0.3
    torch.save(state, checkpoint)
    resumed = launch(toy_data, *flags, "--max-update", "50")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = inner_records(resumed.stdout + resumed.stderr)
    assert [r["num_updates"] for r in records] == ["40", "50"]
    assert [float(r["kl_weight"]) for r in records] == [0.3, 0.3]


def test_a_failing_rank_fails_the_launch(toy_data):
    result = launch(toy_data, *common_flags("lstm_wae_tiny", "wae_mmd"), "--mmd-lambda", "-1")
    assert result.returncode != 0 and "--mmd-lambda" in result.stderr


def _gather_worker(rank, port, z_full, results):
    import torch.distributed as dist

    from fairseq_wae.distributed import gather_with_local_grad
    from fairseq_wae.penalties import imq_kernel, mmd_unbiased

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    sizes = [5, 3]  # unequal batches, as at the end of an epoch
    start = sum(sizes[:rank])
    local = z_full[start:start + sizes[rank]].clone().requires_grad_(True)
    gathered = gather_with_local_grad(local)
    prior = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mmd = mmd_unbiased(gathered, prior, lambda d: imq_kernel(d, 4, (1.0,), 2.0))
    mmd.backward()
    results[rank] = (gathered.detach(), mmd.item(), local.grad.clone())
    dist.destroy_process_group()


def test_mmd_global_gathers_the_batch_and_keeps_local_gradients():
    from fairseq_wae.penalties import imq_kernel, mmd_unbiased

    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_gather_worker, args=(free_port(), z, results), nprocs=2, join=True)
    prior = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = z.clone().requires_grad_(True)
    expected = mmd_unbiased(reference, prior, lambda d: imq_kernel(d, 4, (1.0,), 2.0))
    expected.backward()
    for rank, rows in ((0, slice(0, 5)), (1, slice(5, 8))):
        gathered, mmd, grad = results[rank]
        assert torch.equal(gathered, z)
        assert mmd == pytest.approx(expected.item(), rel=1e-12)
        assert torch.allclose(grad, reference.grad[rows])


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
