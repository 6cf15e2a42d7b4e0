"""Hydra configs shipped with the plugin (``pkg://fairseq_wae.config``): model/<arch>.yaml for each
named architecture, written by scripts/write_model_configs.py."""
