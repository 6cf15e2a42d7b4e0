"""fairseq-hydra-train: a named architecture is the yaml shipped for it (fairseq's idiom), which builds the
network --arch builds; a bare name whose settings a hydra config does not hold is refused, naming the yaml."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_wae.models.architectures import ARCHITECTURES, CONFIG_DIR, SEARCH_PATH, architecture_yaml, config_path
from helpers import (HYDRA_TRAIN, USER_DIR, configure, generated_sentences, in_process_allowed, run, run_in_process,
                     train)

NAMES = sorted(ARCHITECTURES)
TINY = {"embed_dim": 32, "encoder_hidden_size": 64, "decoder_hidden_size": 64, "latent_dim": 16}
# flavour: (the shipped yaml, criterion, sizes changed on top of the yaml by hydra overrides)
FLAVOURS = {
    "dae": ("lstm_ae_tiny", {"_name": "ae_cross_entropy"}, {}),
    "vae": ("lstm_vae_tiny", {"_name": "vae_kl"}, {}),
    "wae": ("lstm_wae_tiny", {"_name": "wae_mmd"}, {"latent_dim": 32}),
    "swae": ("lstm_vae_tiny", {"_name": "wae_mmd", "kl_variance_penalty": 1.0}, {}),
    # the discriminator reads model.latent_dim: a size changed on top of the yaml reaches it
    "daae": ("lstm_aae_tiny", {"_name": "aae", "logvar_l1": 0.01, "noise_drop": 0.3}, {"latent_dim": 24}),
}


def yaml_config(name):
    """The model config fairseq-hydra-train makes from the shipped yaml: the file on the model dataclass's
    defaults, as fairseq's add_defaults merges them."""
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models import MODEL_DATACLASS_REGISTRY

    loaded = OmegaConf.load(config_path(name))
    return merge_with_parent(MODEL_DATACLASS_REGISTRY[loaded._name](), loaded)


def shapes(model):
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def write_config(folder: Path, data, model, criterion):
    """folder/run.yaml: ``model`` a shipped yaml's name (selected as hydra defaults) or a model config;
    batches of 32 sentences, saved to folder/ckpt."""
    config = {
        "hydra": {"searchpath": [SEARCH_PATH]},
        "common": {"user_dir": USER_DIR, "cpu": True, "seed": 1},
        "task": {"_name": "sentence_autoencoding", "data": str(data)},
        "criterion": criterion,
        "optimizer": {"_name": "adam"},
        "lr_scheduler": {"_name": "fixed"},
        "optimization": {"lr": [0.005], "max_update": 100},
        "dataset": {"batch_size": 32},
        "checkpoint": {"save_dir": str(folder / "ckpt"), "no_epoch_checkpoints": True},
    }
    if isinstance(model, str):
        config["defaults"] = [{"model": model}, "_self_"]
    else:
        config["model"] = model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.yaml").write_text(OmegaConf.to_yaml(config))


def hydra_train(folder: Path, data, model, criterion, *overrides, check=True, process=None):
    """fairseq-hydra-train on the config ``write_config`` writes to ``folder`` (``--config-dir``/
    ``--config-name``, hydra's run folder), for 3 updates (a hydra override): ``process`` True, as a real
    process, for what only a process shows (its exit status, what hydra's handler prints); False, through
    its entry point in this process; None, in this process unless TESTS_IN_PROCESS=0."""
    write_config(folder, data, model, criterion)
    cmd = ["fairseq-hydra-train", "--config-dir", folder, "--config-name", "run", "optimization.max_update=3",
           *overrides]
    if process or (process is None and not in_process_allowed()):
        return run(cmd, cwd=folder, check=check)
    result = run_in_process(HYDRA_TRAIN, [*map(str, cmd), f"hydra.run.dir={folder}"])
    assert not check or result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def generate(data, checkpoint):
    """fairseq-generate's reconstructions of the toy test split from ``checkpoint``."""
    return generated_sentences(run([
        "fairseq-generate", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--path", checkpoint,
        "--gen-subset", "test", "--beam", "1", "--batch-size", "32", "--cpu"]).stdout)


def test_every_named_architecture_ships_the_yaml_written_from_its_settings():
    from fairseq.models import ARCH_MODEL_INV_REGISTRY

    named = {arch for model in ("lstm_autoencoder", "transformer_autoencoder")
             for arch in ARCH_MODEL_INV_REGISTRY[model] if arch != model}
    assert set(NAMES) == named and {n.rsplit("_", 1)[1] for n in NAMES} == {"paper", "small", "tiny"}
    assert sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml")) == NAMES
    stale = [name for name in NAMES if Path(config_path(name)).read_text(encoding="utf-8") != architecture_yaml(name)]
    assert not stale, f"{stale}: the shipped yaml differs from the settings; run python scripts/write_model_configs.py"


@pytest.mark.parametrize("name", NAMES)
def test_the_shipped_yaml_builds_the_network_arch_builds(toy_data, name):
    task, cfg = configure(toy_data, name, "ae_cross_entropy")
    by_arch, by_yaml = cfg.model, yaml_config(name)
    assert by_yaml._name == ARCHITECTURES[name].model_name
    options = [key for key in by_yaml if key != "_name"]
    assert {key: str(by_yaml[key]) for key in options} == {key: str(by_arch[key]) for key in options}
    assert shapes(task.build_model(by_yaml)) == shapes(task.build_model(by_arch))


# the first as a real process (its exit status and what it prints), the second through the same hydra handler
# in this process
@pytest.mark.parametrize("name, criterion, process", [("lstm_wae_tiny", "wae_mmd", True),
                                                      ("lstm_vae_paper", "vae_kl", None)])
def test_a_bare_architecture_name_under_fairseq_hydra_train_is_refused_naming_its_yaml(toy_data, tmp_path, name,
                                                                                        criterion, process):
    result = hydra_train(tmp_path, toy_data, {"_name": name}, {"_name": criterion}, check=False, process=process)
    # one line and status 2, as under fairseq-train (hydra would print its traceback and exit 1)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("fairseq-hydra-train: error: ") and f"another network than --arch {name}" in line
    assert config_path(name) in line and f"defaults: [model: {name}, _self_]" in line
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("variable", ["FAIRSEQ_WAE_TRACEBACK", "HYDRA_FULL_ERROR"])
def test_either_traceback_variable_keeps_the_traceback_of_a_refusal_under_fairseq_hydra_train(toy_data, tmp_path,
                                                                                             variable):
    import subprocess

    from helpers import CLI_ENV

    write_config(tmp_path, toy_data, {"_name": "lstm_wae_tiny"}, {"_name": "wae_mmd"})
    result = subprocess.run(["fairseq-hydra-train", "--config-dir", str(tmp_path), "--config-name", "run"],
                            cwd=tmp_path, env={**CLI_ENV, variable: "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" in result.stderr, result.stderr[-3000:]
    assert "Refusal: " in result.stderr
    assert "another network than --arch lstm_wae_tiny" in result.stderr


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_each_flavour_trains_through_fairseq_hydra_train_with_the_shipped_tiny_yaml(toy_data, tmp_path, flavour):
    name, criterion, changed = FLAVOURS[flavour]
    hydra_train(tmp_path, toy_data, name, criterion, *(f"model.{key}={value}" for key, value in changed.items()))
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=True)
    model, expected = state["cfg"]["model"], {**TINY, **changed}
    assert model["_name"] == "lstm_autoencoder"
    assert str(model["latent_head"]) == ARCHITECTURES[name].settings["latent_head"]
    assert {key: model[key] for key in expected} == expected
    assert {key: state["cfg"]["criterion"][key] for key in criterion} == criterion
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert state["model"]["encoder.embed_tokens.weight"].shape[1] == 32
    if flavour == "wae":  # a hydra checkpoint, with a size changed on top of the yaml, loads for generation
        assert len(generate(toy_data, tmp_path / "ckpt" / "checkpoint_last.pt")) == 101


def test_a_checkpoint_of_an_arch_name_with_a_size_flag_still_loads(toy_data, tmp_path):
    train(toy_data, tmp_path, "--latent-dim", "32", "--max-update", "3", arch="lstm_wae_tiny")
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["cfg"]["model"]["_name"] == "lstm_wae_tiny" and state["cfg"]["model"]["latent_dim"] == 32
    assert len(generate(toy_data, tmp_path / "checkpoint_last.pt")) == 101


def test_fairseq_train_after_a_hydra_job_in_the_same_process_builds_from_its_arch(toy_data, tmp_path):
    """A notebook that ran fairseq-hydra-train's entry point and then fairseq-train's: the second builds the
    network --arch and its flags name, without the refusal meant for hydra's configs."""
    import sys

    from fairseq_wae.models.architectures import under_hydra_train

    # in this process whatever TESTS_IN_PROCESS says: the process is the point
    hydra_train(tmp_path / "hydra", toy_data, "lstm_wae_tiny", {"_name": "wae_mmd"}, process=False)
    assert "fairseq_cli.hydra_train" in sys.modules and not under_hydra_train()
    train(toy_data, tmp_path / "after", "--latent-dim", "32", "--max-update", "3", arch="lstm_wae_tiny")
    state = torch.load(tmp_path / "after" / "checkpoint_last.pt", weights_only=True)
    assert state["cfg"]["model"]["_name"] == "lstm_wae_tiny" and state["cfg"]["model"]["latent_dim"] == 32
