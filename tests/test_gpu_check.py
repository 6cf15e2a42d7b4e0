"""scripts/gpu_check.sh, the run planned for a GPU, on the CPU: a correct build passes every row that runs
there (bfloat16 standing in for half precision, 2 gloo workers for 2 GPUs), and each break injected into
one of its runs fails exactly the row that reads that run. The passing run is the script's own Check with
its fairseq commands run in this process (each logged to its file, as the script logs them); the corpus
preparation and the 2-worker launches stay real processes, through the script's own runner (the ranks
forked from a server that imported torch and fairseq, helpers.forked_ranks). The breaks rerun that one
run in this process (the break patched in) and read every other run's log from the passing run, so that
all the tests share one run of the script."""
import argparse
import contextlib
import io
import re
import subprocess
import time

import pytest

from helpers import CLI_ENV, REPO, built_once, forked_ranks, in_process, load_script, run

SCRIPT = REPO / "scripts" / "gpu_check.sh"
HALF_RUN = "precision-stochastic_WAE-bf16"  # the stochastic WAE (MMD and variance penalty) in bfloat16
PRECISION_ROW = ("precision", "stochastic WAE --bf16 vs float32, updates 1-3")


def gpu_check(work):
    """The script's run on the CPU (``bash scripts/gpu_check.sh --cpu --work WORK``) as a completed process:
    its Check, whose fairseq commands run in this process and write their logs where the script's runner
    writes them; the others (the corpus preparation, the launches of 2 gloo workers) through that runner."""
    check = load_script(REPO / "scripts" / "gpu_check.py").Check(
        argparse.Namespace(cpu=True, work=str(work), only=None, tolerance_factor=1.0))
    as_a_process = check.command

    def command(name, cmd, env=None):
        if cmd[0] == "bash":  # the launches of 2 workers, their ranks forked (helpers.forked_ranks)
            return as_a_process(name, cmd, {**(env or {}), **forked_ranks()})
        if name == "prepare" or in_process([str(c) for c in cmd]) is None:
            return as_a_process(name, cmd, env)
        result = run(cmd, check=False)
        (work / f"{name}.log").write_text(result.stdout + result.stderr)
        return result.returncode, result.stdout + result.stderr

    check.command = command
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = check.run()
    return subprocess.CompletedProcess(["bash", str(SCRIPT), "--cpu", "--work", str(work)], status,
                                       printed.getvalue(), "")


def table(output):
    """{(leg, check): result} from the closing table."""
    rows = [line.split(" | ") for line in output.splitlines() if line.startswith("| ") and "|---" not in line]
    return {(row[0][2:], row[1]): row[2] for row in rows[1:]}


@pytest.fixture(scope="module")
def passing(tmp_path_factory):
    """(the work folder, the completed run) of the whole script on the CPU, run once for every pytest-xdist
    worker that takes a test of this file (a module fixture is made again in each: two runs of a minute)."""
    return built_once(tmp_path_factory, "gpu_check", lambda work: (work, gpu_check(work)))


def rows_with(work, capsys, reruns=None, tolerance_factor=1.0):
    """The script's rows over the passing run's logs, the runs named in ``reruns`` ({name: patch}) made
    again in this process with ``patch`` (a context manager) applied."""
    check = load_script(REPO / "scripts" / "gpu_check.py").Check(
        argparse.Namespace(cpu=True, work=str(work), only=None, tolerance_factor=tolerance_factor))

    def command(name, cmd, env=None):
        if name not in (reruns or {}):
            return 0, (work / f"{name}.log").read_text()
        with reruns[name]():
            result = run(cmd, check=False)
        return result.returncode, result.stdout + result.stderr

    check.command = command
    status = check.run()
    capsys.readouterr()
    return status, {(leg, name): result for leg, name, result, _ in check.rows}, check.rows


def test_gpu_check_runs_on_the_cpu_and_passes(passing):
    work, result = passing
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    rows = table(result.stdout)
    assert rows[("cuda-tests", "cuda-tests")] == rows[("overflow", "overflow")] == "skipped"
    ran = {check for (leg, check), status in rows.items() if status == "pass"}
    assert {"data-parallel", "precision", "validation", "speed", "sampling"} == {
        leg for (leg, _), status in rows.items() if status == "pass"}
    assert any("uneven last update" in check for check in ran) and any("--mmd-global" in check for check in ran)
    assert "FAIL" not in rows.values()
    passed, failed = map(int, re.search(r"(\d+) passed, (\d+) failed", result.stdout).groups())
    assert passed == len(ran) >= 6 and failed == 0
    # the precision row compares each value under its own tolerance, every one wider apart for two seeds
    detail = next(line for line in result.stdout.splitlines() if line.startswith("| precision | stochastic"))
    assert all(f"{value} " in detail for value in ("loss", "nll_loss", "mmd", "variance_kl", "gnorm"))


def test_the_rows_read_back_from_the_logs_pass_and_a_tolerance_of_0_fails_the_precision_row(passing, capsys):
    work, _ = passing
    status, rows, _ = rows_with(work, capsys)
    assert status == 0 and "FAIL" not in rows.values()
    status, rows, _ = rows_with(work, capsys, tolerance_factor=0)
    assert status == 1 and rows[PRECISION_ROW] == "FAIL"


def patched(target, name, replacement):
    """A context manager that sets ``target.name`` to ``replacement(original)``."""
    @contextlib.contextmanager
    def context():
        original = getattr(target, name)
        setattr(target, name, replacement(original))
        try:
            yield
        finally:
            setattr(target, name, original)

    return context()


def detached_penalty():
    """The WAE's MMD computed but not reaching the gradient, on the half path."""
    from fairseq_wae.criterions import wae_mmd

    return patched(wae_mmd, "mmd_unbiased", lambda mmd: lambda *args, **kwargs: mmd(*args, **kwargs).detach())


def prior_under_another_key():
    """The prior sample drawn under another draw's key, on the half path."""
    from fairseq_wae.criterions.wae_mmd import WaeMmdCriterion

    return patched(WaeMmdCriterion, "random_generator", lambda generator: lambda self, device, draw, *args, **kwargs:
                   generator(self, device, "posterior" if draw == "prior" else draw, *args, **kwargs))


def slow_step():
    """A quarter of a second more in every training step (the lstm keeps its logged speed)."""
    from fairseq.trainer import Trainer

    def slower(step):
        def train_step(self, *args, **kwargs):
            time.sleep(0.25)
            return step(self, *args, **kwargs)
        return train_step

    return patched(Trainer, "train_step", slower)


@pytest.mark.parametrize("rerun,breaks,row", [
    (HALF_RUN, detached_penalty, PRECISION_ROW),
    (HALF_RUN, prior_under_another_key, PRECISION_ROW),
    ("speed-ours", slow_step, ("speed", "train words/s vs fairseq's lstm of the same sizes (at least 0.5x)")),
], ids=["detached-penalty", "prior-under-another-key", "slow-step"])
def test_each_injected_break_fails_exactly_its_row(passing, capsys, rerun, breaks, row):
    work, _ = passing
    status, rows, details = rows_with(work, capsys, {rerun: breaks})
    assert status == 1 and rows[row] == "FAIL", details
    assert {key for key, result in rows.items() if result == "FAIL"} == {row}, details


def test_gpu_check_refuses_nonsense_options_before_running_anything(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for flags, message in ((["--tolerance-factor", "inf"], "finite number >= 0"), (["--tolerance-factor", "nan"],
                           "finite number >= 0"), (["--work", str(a_file)], "is a file"),
                           (["--only", "bogus"], "invalid choice")):
        result = subprocess.run(["bash", str(SCRIPT), "--cpu", *flags], env=CLI_ENV, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and message in result.stderr, (flags, result.stderr[-2000:])
