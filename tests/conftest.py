"""Fixtures: the toy corpus binarized, and a DAE overfit to 50 sentences (helpers are in helpers.py).

Under pytest-xdist (``-n``, set in pytest.ini) the workers share these: the first worker to ask builds one
under a file lock, the others wait for it and reuse it, so each is built once per test run."""
import os
from pathlib import Path

import pytest

from helpers import built_once, preprocess, toy_sentences, train

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    # one thread per worker: the workers already take every core, and more threads would only contend
    torch.set_num_threads(1)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core and one more, which runs while another waits for a fixture
    being built or for a command's subprocesses."""
    return (os.cpu_count() or 1) + 1


#: the tests that take minutes of one worker: started first, so that the others fill the cores around them
#: instead of leaving one core busy with them at the end
LONGEST_FIRST = ("test_gpu_check.py::test_gpu_check_runs_on_the_cpu_and_passes",)
#: the tests that read what those build: queued last, so that no worker sits waiting for it while tests are left
READ_THEIR_RUN = ("tests/test_gpu_check.py::",)


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which is the same in every xdist worker
def pytest_collection_modifyitems(session, config, items):
    def place(item):
        if item.nodeid.endswith(LONGEST_FIRST):
            return 0
        return 2 if item.nodeid.startswith(READ_THEIR_RUN) else 1

    items.sort(key=place)


def pytest_terminal_summary(terminalreporter, config):
    """pytest-randomly's seed at the end of the report too: its header line, which -q leaves out, sits far
    above a failure that only this order shows."""
    if config.pluginmanager.hasplugin("randomly") and getattr(config.option, "randomly_seed", None) is not None:
        terminalreporter.write_line(f"tests ran in a random order (pytest-randomly): --randomly-seed="
                                    f"{config.option.randomly_seed} repeats it, -p no:randomly runs them in file order")


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """1200 training, 100 validation and 101 test sentences from the toy grammar, binarized.

    101 is on purpose: fairseq drops a last batch that is not a multiple of 8 unless the task prevents it."""
    def build(folder):
        sentences = toy_sentences(1401)
        return preprocess(folder, {"train": sentences[:1200], "valid": sentences[1200:1300], "test": sentences[1300:]})

    return built_once(tmp_path_factory, "toy", build)


@pytest.fixture(scope="session")
def overfit_dae(tmp_path_factory):
    """A tiny DAE trained on 50 sentences until it reconstructs them: (data, checkpoint dir, log)."""
    def build(folder):
        sentences = toy_sentences(50, seed=7)
        data = preprocess(folder, {"train": sentences, "valid": sentences, "test": sentences})
        # validated and saved every 50 epochs, not each: the same weights (training draws are keyed by
        # update), in half the time
        log = train(data, folder / "ckpt", "--lr", "0.01", "--validate-interval", "50", "--save-interval", "50",
                    arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=300, batch_size=10)
        return data, folder / "ckpt", log

    return built_once(tmp_path_factory, "overfit", build)
