"""Named architectures (``--arch lstm_wae_paper``, ...) and their yaml twins for fairseq-hydra-train.

A name's settings (sizes, latent head) are one dict, registered here. fairseq-train applies them through
the name's architecture function, which fills the flags left unset. Under fairseq-hydra-train it cannot:
fairseq's ``add_defaults`` fills every model field from the model dataclass's defaults before the
function runs, so a bare name there would silently train the default network. fairseq's own idiom is a
yaml per architecture: each name ships ``config/model/<name>.yaml``, written from the same dict by
scripts/write_model_configs.py.
"""
import os
from dataclasses import fields
from typing import Any, Dict, NamedTuple

from fairseq.models import register_model_architecture
from omegaconf import OmegaConf

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
