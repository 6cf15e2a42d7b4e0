"""fairseq-hydra-train: a named architecture is the yaml shipped for it (fairseq's idiom), which builds the
network --arch builds."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fairseq_wae.models.architectures import ARCHITECTURES, CONFIG_DIR, architecture_yaml, config_path
from helpers import USER_DIR

NAMES = sorted(ARCHITECTURES)


def arch_config(data, name):
    """(task, model config) as fairseq-train makes them from ``--arch name``."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data), "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", name, "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task), cfg.model


def yaml_config(name):
    """The model config fairseq-hydra-train makes from the shipped yaml: the file on the model dataclass's
    defaults, as fairseq's add_defaults merges them."""
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models import MODEL_DATACLASS_REGISTRY

    loaded = OmegaConf.load(config_path(name))
    return merge_with_parent(MODEL_DATACLASS_REGISTRY[loaded._name](), loaded)


def shapes(model):
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


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
    task, by_arch = arch_config(toy_data, name)
    by_yaml = yaml_config(name)
    assert by_yaml._name == ARCHITECTURES[name].model_name
    options = [key for key in by_yaml if key != "_name"]
    assert {key: str(by_yaml[key]) for key in options} == {key: str(by_arch[key]) for key in options}
    assert shapes(task.build_model(by_yaml)) == shapes(task.build_model(by_arch))
