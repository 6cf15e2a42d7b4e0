#!/usr/bin/env python
"""Writes fairseq_wae/config/model/<arch>.yaml for every named architecture, from the settings its
architecture function applies: fairseq-hydra-train selects an architecture by its yaml (see
fairseq_wae/models/architectures.py). Run it after changing a name's settings; tests/test_hydra.py
fails while a shipped yaml differs from what this writes."""
import os

# importing the package registers its models, and with them the architectures
from fairseq_wae.models.architectures import ARCHITECTURES, architecture_yaml, config_path


def main():
    for name in sorted(ARCHITECTURES):
        path = config_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(architecture_yaml(name))
        print(path)


if __name__ == "__main__":
    main()
