"""State that is no tensor (the dictionary fingerprint), kept in a model's state dict as a tensor.

fairseq's tools take every value of a checkpoint's model state for a tensor: its
``scripts/average_checkpoints.py`` clones, sums and divides each one (a dict or None fails with
``AttributeError``), and ``--ema`` averages each one exponentially. JSON is kept as its UTF-8 bytes,
one float32 per byte: the average of equal states is then that state again, whichever division the
averaging uses (a sum of n equal whole numbers below 2^24 is exact in float32 and so is its true
division by n; an integer tensor would need the floor division of fairseq >= 0.10, and fairseq's older
loop divides in place with ``div_``, which fails on integers), and an exponential average comes back
within rounding, which the reader removes.
"""
import json
from typing import Any

import torch
from torch import Tensor

from fairseq_wae.errors import CheckpointError


def json_to_tensor(value: Any) -> Tensor:
    return torch.tensor(list(json.dumps(value, sort_keys=True).encode("utf-8")), dtype=torch.float32)


def tensor_to_json(tensor: Tensor, what: str) -> Any:
    """The value :func:`json_to_tensor` stored; a :class:`CheckpointError` naming ``what`` when the tensor
    holds no such value (the average of checkpoints whose ``what`` differ)."""
    values = tensor.detach().double().cpu().view(-1)
    codes = values.round()
    unreadable = tensor.dim() != 1 or not len(values) or (values - codes).abs().max() > 0.01 \
        or codes.min() < 0 or codes.max() > 255
    try:
        if not unreadable:
            return json.loads(bytes(codes.to(torch.uint8).tolist()).decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and json's JSONDecodeError included
        pass
    raise CheckpointError(f"the {what} in this checkpoint's model state is unreadable: was it averaged from "
                          f"checkpoints whose {what} differ (other dictionaries, or data folders)? Average only "
                          "checkpoints of one training")
