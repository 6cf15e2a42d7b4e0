"""Fixtures: the toy corpus binarized, and a DAE overfit to 50 sentences (helpers are in helpers.py)."""
from pathlib import Path

import pytest

from helpers import preprocess, toy_sentences, train


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """1200 training, 100 validation and 101 test sentences from the toy grammar, binarized.

    101 is on purpose: fairseq drops a last batch that is not a multiple of 8 unless the task prevents it."""
    sentences = toy_sentences(1401)
    return preprocess(tmp_path_factory.mktemp("toy"),
                      {"train": sentences[:1200], "valid": sentences[1200:1300], "test": sentences[1300:]})


@pytest.fixture(scope="session")
def overfit_dae(tmp_path_factory):
    """A tiny DAE trained on 50 sentences until it reconstructs them: (data, checkpoint dir, log)."""
    folder = tmp_path_factory.mktemp("overfit")
    sentences = toy_sentences(50, seed=7)
    data = preprocess(folder, {"train": sentences, "valid": sentences, "test": sentences})
    log = train(data, folder / "ckpt", "--lr", "0.01", arch="lstm_ae_tiny", criterion="ae_cross_entropy",
                epochs=300, batch_size=10)
    return data, folder / "ckpt", log
