"""Checks of command-line values shared by the components: each error names the flag."""
import math

from omegaconf import DictConfig, ListConfig

from fairseq_wae.errors import Refusal


def check_rate(flag: str, value: float) -> None:
    """A probability: in [0, 1]."""
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise Refusal(f"--{flag} must be in [0, 1], got {value}")


def check_non_negative(flag: str, value: float) -> None:
    """A weight: finite and >= 0."""
    if not 0.0 <= value < math.inf:  # also refuses NaN
        raise Refusal(f"--{flag} must be a finite number >= 0, got {value}")


def _numbers(node, path):
    if isinstance(node, DictConfig):
        for key in node.keys():
            try:
                value = node[key]
            except Exception:  # an interpolation that cannot be resolved here: another command's value
                continue
            yield from _numbers(value, path + [str(key)])
    elif isinstance(node, (list, tuple, ListConfig)):
        for value in node:
            yield from _numbers(value, path)
    elif isinstance(node, float):
        yield path, node


def check_finite_numbers(cfg) -> None:
    """Every number of a whole fairseq config is finite: ``--mmd-lambda inf`` or ``--lr nan`` is refused
    at start-up, naming the flag, instead of failing at the first update (no default is infinite)."""
    for path, value in _numbers(cfg, []):
        if not math.isfinite(value):
            raise Refusal(f"--{path[-1].replace('_', '-')} ({'.'.join(path)} in hydra) must be a finite number, "
                          f"got {value}")


def resolved(cfg, key: str):
    """A config value read through an interpolation (``II``), or None where it cannot be resolved: a
    component config made by hand, outside a full fairseq config."""
    try:
        value = getattr(cfg, key)
    except Exception:  # omegaconf's interpolation errors
        return None
    return None if isinstance(value, str) and value.startswith("${") else value


#: fairseq's sizes and counts, by the smallest value that means something: fairseq reads 0 as "no limit"
#: for some (``--batch-size 0`` batched a whole split as one) and divides by others (a zero interval)
LEAST_VALUES = {
    ("dataset", "batch_size"): 1, ("dataset", "max_tokens"): 1, ("dataset", "batch_size_valid"): 1,
    ("dataset", "max_tokens_valid"): 1, ("dataset", "required_batch_size_multiple"): 1,
    ("dataset", "required_seq_len_multiple"): 1, ("dataset", "validate_interval"): 1, ("dataset", "num_shards"): 1,
    ("dataset", "num_workers"): 0, ("dataset", "data_buffer_size"): 0, ("dataset", "validate_interval_updates"): 0,
    ("dataset", "validate_after_updates"): 0, ("dataset", "max_valid_steps"): 0, ("dataset", "curriculum"): 0,
    ("dataset", "shard_id"): 0, ("optimization", "update_freq"): 1, ("optimization", "max_epoch"): 0,
    ("optimization", "max_update"): 0, ("checkpoint", "save_interval"): 1, ("checkpoint", "save_interval_updates"): 0,
    ("checkpoint", "keep_interval_updates"): -1, ("checkpoint", "keep_last_epochs"): -1,
    ("checkpoint", "keep_best_checkpoints"): -1, ("common", "log_interval"): 1,
    ("distributed_training", "distributed_world_size"): 1,
}


def check_sizes_and_counts(cfg) -> None:
    """Every size and count of fairseq's batching, schedule and saving is at least its least meaningful
    value, refused at start-up naming the flag (``--batch-size 0`` trained a whole split as one batch)."""
    for (section, key), least in LEAST_VALUES.items():
        node = cfg.get(section) if isinstance(cfg, DictConfig) else getattr(cfg, section, None)
        try:
            value = node.get(key) if node is not None else None
        except Exception:  # an interpolation that cannot be resolved here
            continue
        for number in value if isinstance(value, (list, tuple, ListConfig)) else [value]:
            if isinstance(number, int) and not isinstance(number, bool) and number < least:
                meaning = "a positive number" if least == 1 else f"at least {least}"
                raise Refusal(f"--{key.replace('_', '-')} ({section}.{key} in hydra) must be {meaning}, got {number}")
