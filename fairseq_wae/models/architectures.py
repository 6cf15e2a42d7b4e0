"""Named architectures (``--arch lstm_wae_paper``, ...) and their yaml twins for fairseq-hydra-train.

A name's settings (sizes, latent head) are one dict, registered here. fairseq-train applies them through
the name's architecture function, which fills the flags left unset. Under fairseq-hydra-train it cannot:
fairseq's ``add_defaults`` fills every model field from the model dataclass's defaults before the
function runs, so a bare name there would silently train the default network. fairseq's own idiom is a
yaml per architecture: each name ships ``config/model/<name>.yaml``, written from the same dict by
scripts/write_model_configs.py, and a bare name whose settings a hydra config does not hold is refused.
"""
import multiprocessing
import os
import sys
from dataclasses import fields
from typing import Any, Dict, NamedTuple

from fairseq.models import register_model_architecture
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from fairseq_wae.errors import Refusal

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config")
# what a hydra config adds to hydra.searchpath to find the yamls, installed or in a checkout
SEARCH_PATH = "pkg://fairseq_wae.config"


class NamedArchitecture(NamedTuple):
    model_name: str  # the registered model (lstm_autoencoder, transformer_autoencoder)
    settings: Dict[str, Any]  # what the name sets; every other option keeps the model's default


ARCHITECTURES: Dict[str, NamedArchitecture] = {}


def architecture_registrar(model_name: str, config_class):
    """A function registering named architectures of ``model_name``: ``settings`` are a name's defaults,
    command-line flags still win, and every other option gets the config's default."""

    def register(name: str, **settings):
        def arch(args):
            for key, value in settings.items():
                if getattr(args, key, None) is None:
                    setattr(args, key, value)
            for f in fields(config_class):
                if not hasattr(args, f.name):
                    setattr(args, f.name, f.default)

        arch.__name__ = name
        register_model_architecture(model_name, name)(arch)
        ARCHITECTURES[name] = NamedArchitecture(model_name, settings)

    return register


def config_path(name: str) -> str:
    """Where the yaml of the named architecture ``name`` is shipped."""
    return os.path.join(CONFIG_DIR, "model", f"{name}.yaml")


def architecture_yaml(name: str) -> str:
    """The text of ``name``'s yaml: the model's name and the settings ``--arch name`` applies, nothing
    else, so that every other option keeps the dataclass default there too."""
    architecture = ARCHITECTURES[name]
    return (f"# @package _group_\n# --arch {name} as a hydra config, written by scripts/write_model_configs.py\n"
            "# from the settings the architecture function applies: do not edit\n"
            + OmegaConf.to_yaml({"_name": architecture.model_name, **architecture.settings}))


def under_hydra_train() -> bool:
    """Whether this model is built for fairseq-hydra-train, whose model config comes from yaml and dataclass
    defaults, not from --arch: inside its hydra job (hydra sets its config for the job's length), or in a
    worker it spawned (which imported the entry point to unpickle its main). Not merely in a process that
    imported the entry point once: a notebook's fairseq-train after it builds from --arch."""
    if HydraConfig.initialized():
        return True
    return multiprocessing.parent_process() is not None and "fairseq_cli.hydra_train" in sys.modules


def check_named_architecture(cfg) -> None:
    """Refuses, under fairseq-hydra-train, a model ``_name`` that is a named architecture whose settings
    the config does not hold: the network would be another than ``--arch`` with that name builds.
    Call it for a model built for training, not for one loaded from a checkpoint (whose config holds
    the sizes it was trained with, flags included)."""
    name = getattr(cfg, "_name", None)
    if name not in ARCHITECTURES or not under_hydra_train():
        return
    architecture = ARCHITECTURES[name]
    differences = [f"{key} {getattr(cfg, key, None)} (not {value})" for key, value in architecture.settings.items()
                   if str(getattr(cfg, key, None)) != str(value)]
    if differences:
        raise Refusal(
            f"model _name {name} under fairseq-hydra-train: fairseq fills the model config from "
            f"{architecture.model_name}'s defaults, not from the architecture, so this config builds another "
            f"network than --arch {name} ({', '.join(differences)}). Select the architecture's yaml in place of the "
            f"name: `defaults: [model: {name}, _self_]` and `hydra: {{searchpath: [{SEARCH_PATH}]}}` in your "
            f"config, and no model._name (the file is {config_path(name)}); change a size on top of it, e.g. "
            "model.latent_dim=32")
