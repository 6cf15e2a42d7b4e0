"""fairseq's own checkpoint averaging on the plugin's checkpoints: every value of a model's state is a tensor,
as fairseq's scripts/average_checkpoints.py assumes, and the averaged file resumes, generates, loads in
from_pretrained and exports; checkpoints written before (a dict and None among the values) still load."""
import sys

import pytest
import torch

from helpers import REPO, USER_DIR, generated_sentences, parse_json_log, run, train_command

EXPORT = [sys.executable, REPO / "scripts" / "export_model.py"]


def fairseq_average(paths):
    """What average_checkpoints() of fairseq's scripts/average_checkpoints.py (facebookresearch/fairseq,
    read at commit 3d262bb2; the script is not in the pip package) does, restated: the first file's state,
    whose model state becomes, for each key (the same keys in every file, in the same order), the clone of
    the first file's value (float16 read as float32) plus each other file's value in place, divided in place
    by the number of files: true division for floating-point tensors, floor division for the others. It
    takes every value for a tensor. Loaded with torch.load's default, weights only."""
    total, first = {}, None
    for path in paths:
        state = torch.load(path, map_location="cpu")
        first = first or state
        if list(state["model"]) != list(first["model"]):
            raise KeyError(f"{path}: other model keys")
        for key, value in state["model"].items():
            value = value.float() if isinstance(value, torch.HalfTensor) else value
            if key in total:
                total[key] += value
            else:
                total[key] = value.clone()
    for value in total.values():
        if value.is_floating_point():
            value.div_(len(paths))
        else:
            value.floor_divide_(len(paths))
    first["model"] = total
    return first


def generate(data, checkpoint):
    result = run(["fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path",
                  checkpoint, "--gen-subset", "test", "--beam", "1", "--batch-size", "32", "--cpu"])
    return generated_sentences(result.stdout)


def codes(data, folder, checkpoint_file="model.pt", data_name_or_path="."):
    """(the model that from_pretrained loads, its codes of the first test sentences of ``data``)."""
    from fairseq_wae.models.autoencoder import SentenceAutoencoderModel

    model = SentenceAutoencoderModel.from_pretrained(str(folder), checkpoint_file=checkpoint_file,
                                                     data_name_or_path=str(data_name_or_path))
    return model, model.encode((data.parent / "test.txt").read_text().splitlines()[:8], tokenize=False)


FLAVOURS = {
    # the stop-at-peak state (NaN for its None fields this early) is averaged too
    "lstm-vae": ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "sigmoid", "--kl-anneal-stop-at-peak"]),
    "transformer-bn-vae": ("transformer_vae_tiny", "vae_kl", ["--bn-posterior-mean", "0.6"]),
    "transformer-wae": ("transformer_wae_tiny", "wae_mmd", []),
    "lstm-aae": ("lstm_aae_tiny", "aae", []),
}


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_fairseqs_averaging_of_two_epoch_checkpoints_resumes_generates_loads_and_exports(toy_data, tmp_path, flavour):
    arch, criterion, flags = FLAVOURS[flavour]

    def train(save_dir, epochs, *more):  # tiny epochs: the 101 sentences of the test split, 3 batches
        command = train_command(toy_data, save_dir, *flags, "--train-subset", "test", *more, arch=arch,
                                criterion=criterion, epochs=epochs, batch_size=40)
        return parse_json_log(run([a for a in command if a != "--no-epoch-checkpoints"]).stdout)

    train(tmp_path / "run", 2)
    epochs = [tmp_path / "run" / f"checkpoint{epoch}.pt" for epoch in (2, 1)]  # newest first, as the script lists them
    states = [torch.load(path, weights_only=True)["model"] for path in epochs]
    assert all(torch.is_tensor(value) for state in states for value in state.values())
    averaged = fairseq_average(epochs)
    torch.save(averaged, tmp_path / "averaged.pt")
    weights = [key for key in states[0] if key.endswith("weight")]
    assert not torch.equal(states[0][weights[0]], states[1][weights[0]])  # the epochs' weights differ

    # from_pretrained: the averaged weights, the fingerprint and schedule state given back as they were saved
    model, averaged_codes = codes(toy_data, tmp_path, "averaged.pt", toy_data)
    loaded = model.model.state_dict()
    for key, value in averaged["model"].items():
        assert torch.allclose(loaded[key].double(), value.double(), equal_nan=True, rtol=0, atol=0), key
    assert torch.equal(loaded["dictionary_binding._extra_state"], states[0]["dictionary_binding._extra_state"])

    # fairseq-generate, the export, and a resumed training from the averaged file
    assert len(generate(toy_data, tmp_path / "averaged.pt")) == 101
    run([*EXPORT, "--checkpoint", tmp_path / "averaged.pt", "--data", toy_data, "--out", tmp_path / "export"])
    assert torch.equal(codes(toy_data, tmp_path / "export")[1], averaged_codes)
    resumed = train(tmp_path / "resumed", 3, "--restore-file", tmp_path / "averaged.pt")
    assert [r["epoch"] for r in resumed if "train_loss" in r] == [3]
    assert all(torch.is_tensor(value) for value in
               torch.load(tmp_path / "resumed" / "checkpoint3.pt", weights_only=True)["model"].values())


def test_equal_json_states_average_back_exactly_and_other_ones_are_refused():
    from fairseq_wae.errors import CheckpointError
    from fairseq_wae.models.state_tensors import json_to_tensor, tensor_to_json

    fingerprint = {"sha256": "0f" * 32, "size": 1234, "path": "/data/é/dict.txt", "tokenization": {"kind": "words"}}
    saved = json_to_tensor(fingerprint)
    assert tensor_to_json(sum([saved] * 7) / 7, "fingerprint") == fingerprint  # fairseq's true division
    assert tensor_to_json((saved.long() * 7) // 7, "fingerprint") == fingerprint  # its floor division on integers
    assert tensor_to_json(saved * 0.999 + saved * 0.001, "fingerprint") == fingerprint  # --ema's average
    other = json_to_tensor({**fingerprint, "size": 1235})
    with pytest.raises(CheckpointError, match="the fingerprint in this checkpoint's model state is unreadable"):
        tensor_to_json((saved + other) / 2, "fingerprint")


def old_way(state):
    """A model state as fairseq-wae wrote it before every value was a tensor: the dictionary fingerprint a
    dict, an empty schedule slot None."""
    from fairseq_wae.models.dictionary_binding import BINDING_KEY, saved_fingerprint

    model = state["model"]
    model[BINDING_KEY] = saved_fingerprint(model[BINDING_KEY])
    assert not model["schedule_state._extra_state"].numel()
    model["schedule_state._extra_state"] = None
    return state


def test_a_checkpoint_written_the_old_way_still_generates_loads_exports_and_resumes(overfit_dae, tmp_path):
    data, save_dir, _ = overfit_dae
    new = save_dir / "checkpoint_last.pt"
    old = tmp_path / "checkpoint_last.pt"
    torch.save(old_way(torch.load(new, weights_only=True)), old)
    # what fairseq's averaging met on such a file
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'clone'"):
        fairseq_average([old, old])
    assert generate(data, old) == generate(data, new)
    _, old_codes = codes(data, tmp_path, old.name, data)
    assert torch.equal(old_codes, codes(data, save_dir, new.name, data)[1])
    run([*EXPORT, "--checkpoint", old, "--data", data, "--out", tmp_path / "export"])
    assert torch.equal(codes(data, tmp_path / "export")[1], old_codes)
    # resumed for an epoch: the new checkpoint holds tensors only
    run(train_command(data, tmp_path, "--lr", "0.01", arch="lstm_ae_tiny", criterion="ae_cross_entropy", epochs=301,
                      batch_size=10))
    assert all(torch.is_tensor(value) for value in torch.load(old, weights_only=True)["model"].values())
