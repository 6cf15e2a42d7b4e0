"""Checks of command-line values shared by the components: each error names the flag."""


def check_rate(flag: str, value: float) -> None:
    """A probability: in [0, 1]."""
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"--{flag} must be in [0, 1], got {value}")


def check_non_negative(flag: str, value: float) -> None:
    """A weight: >= 0."""
    if not value >= 0.0:  # also refuses NaN
        raise ValueError(f"--{flag} must be >= 0, got {value}")


def resolved(cfg, key: str):
    """A config value read through an interpolation (``II``), or None where it cannot be resolved: a
    component config made by hand, outside a full fairseq config."""
    try:
        value = getattr(cfg, key)
    except Exception:  # omegaconf's interpolation errors
        return None
    return None if isinstance(value, str) and value.startswith("${") else value
