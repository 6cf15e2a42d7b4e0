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
