"""scripts/gpu_check.sh, the run planned for a GPU, on the CPU: its CUDA-only legs skipped by name, its CPU
stand-ins passing; and the same script failing (exit 1) when a tolerance is wrong."""
import re
import subprocess

from helpers import CLI_ENV, REPO

SCRIPT = REPO / "scripts" / "gpu_check.sh"


def gpu_check(tmp_path, *flags):
    return subprocess.run(["bash", str(SCRIPT), "--cpu", "--work", str(tmp_path), *flags], env=CLI_ENV,
                          capture_output=True, text=True, timeout=900)


def table(output):
    """{(leg, check): result} from the closing table."""
    rows = [line.split(" | ") for line in output.splitlines() if line.startswith("| ") and "|---" not in line]
    return {(row[0][2:], row[1]): row[2] for row in rows[1:]}


def test_gpu_check_runs_on_the_cpu_and_passes(tmp_path):
    result = gpu_check(tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    rows = table(result.stdout)
    assert rows[("cuda-tests", "cuda-tests")] == rows[("speed", "speed")] == rows[("overflow", "overflow")] == "skipped"
    ran = {check for (leg, check), status in rows.items() if status == "pass"}
    assert {"data-parallel", "precision", "validation", "sampling"} == {leg for (leg, _), status in rows.items()
                                                                        if status == "pass"}
    assert any("uneven last update" in check for check in ran) and any("--mmd-global" in check for check in ran)
    assert any("2 gloo workers vs 1 x --update-freq 2: AAE" in check for check in ran)
    assert "FAIL" not in rows.values()
    passed, failed = map(int, re.search(r"(\d+) passed, (\d+) failed", result.stdout).groups())
    assert passed == len(ran) >= 5 and failed == 0


def test_gpu_check_fails_when_a_tolerance_is_wrong(tmp_path):
    """A tolerance of 0: a bfloat16 run is near float32's but not equal, so the precision row fails."""
    result = gpu_check(tmp_path, "--only", "precision", "--tolerance-factor", "0")
    assert result.returncode == 1
    rows = table(result.stdout)
    bf16 = [status for (leg, check), status in rows.items() if "--bf16" in check]
    assert bf16 and set(bf16) == {"FAIL"}


def test_gpu_check_refuses_nonsense_options_before_running_anything(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for flags, message in ((["--tolerance-factor", "inf"], "finite number >= 0"), (["--tolerance-factor", "nan"],
                           "finite number >= 0"), (["--work", str(a_file)], "is a file"),
                           (["--only", "bogus"], "invalid choice")):
        result = subprocess.run(["bash", str(SCRIPT), "--cpu", *flags], env=CLI_ENV, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and message in result.stderr, (flags, result.stderr[-2000:])
