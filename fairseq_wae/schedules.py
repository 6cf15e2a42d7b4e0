"""Training schedules: the VAE's KL weight lambda(t) and the word-dropout rate.

Both are pure functions of the global update or epoch count, so every data-parallel worker and a
resumed run compute the same value. The only state is the paper's stop-at-peak rule
(:class:`PeakStopper`), which the model carries in its state dict (:class:`ScheduleStateSlot`).
"""
import math
from typing import Optional

import torch
from torch import nn

from fairseq_wae.errors import Refusal

KL_ANNEAL_CHOICES = ("constant", "linear", "sigmoid", "tanh", "cyclical")


def kl_weight(
    schedule: str,
    step: int,
    max_weight: float,
    anneal_steps: int,
    midpoint: int,
    steepness: float,
) -> float:
    """lambda_VAE(t) of eq. (2) at update ``step``.

    - ``constant``: ``max_weight`` throughout (the paper's VAE without annealing, Figure 3);
    - ``linear``: 0 -> ``max_weight`` over ``anneal_steps`` updates;
    - ``sigmoid``: ``max_weight / (1 + exp(-steepness * (step - midpoint)))`` (the paper's annealing);
    - ``tanh``: ``max_weight * (tanh(steepness * (step - midpoint)) + 1) / 2``, the authors' code
      (midpoint 4500, steepness 1/1000);
    - ``cyclical``: Fu et al. (2019): cycles of ``anneal_steps`` updates, rising linearly over the
      first half of each cycle and held at ``max_weight`` over the second.
    """
    if schedule == "constant":
        return max_weight
    if schedule == "linear":
        return max_weight * min(1.0, step / max(anneal_steps, 1))
    if schedule == "sigmoid":
        x = steepness * (step - midpoint)
        # written to stay finite for large |x|
        return max_weight * (1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x)))
    if schedule == "tanh":
        return max_weight * (math.tanh(steepness * (step - midpoint)) + 1.0) / 2.0
    if schedule == "cyclical":
        position = (step % max(anneal_steps, 1)) / max(anneal_steps, 1)
        return max_weight * min(1.0, position / 0.5)
    raise Refusal(f"unknown --kl-anneal {schedule!r}; choose from {', '.join(KL_ANNEAL_CHOICES)}")


def word_dropout_rate(epoch: int, start: float, increment: float, maximum: float) -> float:
    """Word-dropout rate in (1-based) ``epoch``: ``start`` plus ``increment`` per finished epoch, capped.

    The paper: start 0, +0.05 per epoch, at most 0.5.
    """
    return min(maximum, start + increment * max(epoch - 1, 0)) if increment > 0 else start


class PeakStopper:
    """The paper's rule "stop annealing once lambda * KL reaches its peak".

    Tracks an exponential moving average of lambda * KL over updates; once it has fallen
    ``tolerance`` (relative) below the highest average seen, the weight in force is frozen for the
    rest of training. The average smooths batch noise so that one batch cannot decide.

    The start of training is skipped: there lambda*KL moves with the KL of a freshly initialised
    encoder (on SNLI it spikes, then falls for ~200 updates), not with the annealing whose peak the
    rule is after. Watching starts once the weight has doubled from its first positive value, and a
    peak counts only after the average has risen ``tolerance`` above its lowest value since then.
    """

    def __init__(self, decay: float = 0.98, tolerance: float = 0.05):
        self.decay = decay
        self.tolerance = tolerance
        self.first_weight: Optional[float] = None
        self.average: Optional[float] = None
        self.trough = math.inf
        self.peak = -math.inf
        self.frozen_weight: Optional[float] = None

    def update(self, weight: float, weighted_kl: float) -> None:
        if self.frozen_weight is not None:
            return
        if self.first_weight is None:
            self.first_weight = weight if weight > 0 else None
        if self.first_weight is None or weight < 2 * self.first_weight:
            return
        self.average = (
            weighted_kl if self.average is None else self.decay * self.average + (1 - self.decay) * weighted_kl
        )
        if self.peak == -math.inf:
            self.trough = min(self.trough, self.average)
            if self.average <= (1 + self.tolerance) * self.trough:
                return
        self.peak = max(self.peak, self.average)
        if self.average < (1 - self.tolerance) * self.peak:
            self.frozen_weight = weight

    #: the state, in the order :meth:`state_dict` keeps it
    FIELDS = ("first_weight", "average", "trough", "peak", "frozen_weight")

    def state_dict(self) -> torch.Tensor:
        """The state as numbers (NaN for None), as fairseq's tools expect of every value of a model's state:
        fairseq's checkpoint averaging then averages each number (a None in any checkpoint stays None)."""
        return torch.tensor([math.nan if getattr(self, key) is None else getattr(self, key) for key in self.FIELDS],
                            dtype=torch.float64)

    def load_state_dict(self, state) -> None:
        """From :meth:`state_dict`'s tensor, or the dict that checkpoints written before it kept."""
        if torch.is_tensor(state):
            state = {key: None if math.isnan(value) else value for key, value in zip(self.FIELDS, state.tolist())}
        for key, value in state.items():
            setattr(self, key, value)


class ScheduleStateSlot(nn.Module):
    """A place in the model's state dict for a criterion's schedule state (a :class:`PeakStopper`).

    fairseq-train's resume restores the model, the optimiser and the data order, but never hands the
    task its saved state (only fairseq-generate's loader does), so schedule state kept anywhere but in
    the model is lost when a run goes on. The criterion attaches its state object on its first step;
    from then on the model's checkpoint saves that object's ``state_dict()``.
    """

    def __init__(self):
        super().__init__()
        self.owner = None
        self.restored = None

    def attach(self, owner) -> bool:
        """Makes ``owner`` the state saved here and gives it the state restored from a checkpoint, if
        there was any (returned: whether there was)."""
        self.owner = owner
        if self.restored is not None:
            owner.load_state_dict(self.restored)
        return self.restored is not None

    def get_extra_state(self):
        """A tensor (an empty one when there is no state), as fairseq's tools expect of every value of a
        model's state."""
        if self.owner is not None:
            return self.owner.state_dict()
        return self.restored if self.restored is not None else torch.zeros(0, dtype=torch.float64)

    def set_extra_state(self, state) -> None:
        if isinstance(state, dict):  # a stop-at-peak state as checkpoints kept it before it was a tensor
            stopper = PeakStopper()
            stopper.load_state_dict(state)
            state = stopper.state_dict()
        # None: a checkpoint written before the slot existed (see upgrade_state_dict_named)
        self.restored = None if state is None or (torch.is_tensor(state) and not state.numel()) else state
        if self.owner is not None and self.restored is not None:
            self.owner.load_state_dict(self.restored)

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        # checkpoints written before the slot existed load with an empty slot
        state_dict.setdefault(f"{name}._extra_state", None)
