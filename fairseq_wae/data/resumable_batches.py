"""A mid-epoch resume trains each sentence of the epoch once, whatever the batching of the resumed run.

fairseq's checkpoint records how many batches of the epoch each worker had taken, and a resumed run
skips that many batches of *its* batching: with another ``--batch-size``, ``--max-tokens`` or worker count
it skipped other sentences than were trained (240 of 320 trained after doubling the batch size). Here the
checkpoint also records which sentences the epoch has trained; a resume whose batches differ from the
ones they were counted in trains the rest of the epoch on exactly the others, batched its own way.
"""
import hashlib
import logging
from typing import Optional

import numpy as np
import torch
from fairseq.data.iterators import EpochBatchIterator
from omegaconf import DictConfig

logger = logging.getLogger(__name__)


def batches_digest(batches, num_shards: int, update_freq) -> str:
    """What the position in an epoch is counted in: the epoch's batches before shuffling, the workers they
    are dealt to, and how many make an update (fairseq counts the batches taken, and a resume groups them
    anew: 5 taken, resumed at --update-freq 2, ran the epoch's rest and then the whole epoch again)."""
    digest = hashlib.sha256(f"{num_shards} {update_freq}".encode())
    for batch in batches:
        digest.update(np.asarray(batch, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


class ResumableEpochBatchIterator(EpochBatchIterator):
    """fairseq's EpochBatchIterator whose state also names the sentences its epoch has trained (a bool
    tensor over the split) and the batches its position counts; see the module's docstring."""

    update_freq = None  # fairseq-train's --update-freq, where the task knows it
    resumed_epoch: Optional[int] = None  # the epoch whose batches leave out what it trained before a resume
    trained_before: Optional[np.ndarray] = None

    @classmethod
    def of(cls, iterator: EpochBatchIterator, task_cfg=None) -> "ResumableEpochBatchIterator":
        """fairseq's task builds its EpochBatchIterator inline (FairseqTask.get_batch_iterator, with no
        class to choose): the one it built is given this class, which adds methods and no state of its own
        but fairseq-train's --update-freq, read from the whole config ``task_cfg`` is part of."""
        if not isinstance(iterator, cls):
            iterator.__class__ = cls
        root = task_cfg._get_root() if isinstance(task_cfg, DictConfig) else None
        if root is not None and root is not task_cfg and "optimization" in root:
            iterator.update_freq = list(root.optimization.update_freq)
        return iterator

    def ordered_batches(self, epoch, fix_batches_to_gpus, shuffle):
        if self.resumed_epoch != epoch:
            return super().ordered_batches(epoch, fix_batches_to_gpus, shuffle)
        batches = self.frozen_batches
        # left out before sharding, so that every worker still gets as many batches as the others
        untrained = (np.asarray(batch, dtype=np.int64) for batch in batches)
        self._frozen_batches = tuple(kept for kept in (b[~self.trained_before[b]] for b in untrained) if len(kept))
        try:
            return super().ordered_batches(epoch, fix_batches_to_gpus, shuffle)
        finally:
            self._frozen_batches = batches

    def trained_in_epoch(self, epoch: int, shuffle: bool, taken: int) -> np.ndarray:
        """The sentences the epoch has trained once every worker has taken ``taken`` batches."""
        trained = np.zeros(len(self.dataset), dtype=bool)
        if self.resumed_epoch == epoch:
            trained |= self.trained_before
        own_shard = self.shard_id
        try:
            for shard in range(self.num_shards):
                self.shard_id = shard  # the batches fairseq deals to that worker
                for batch in self.ordered_batches(epoch, False, shuffle)[:taken]:
                    trained[np.asarray(batch, dtype=np.int64)] = True
        finally:
            self.shard_id = own_shard
        return trained

    def state_dict(self):
        state = super().state_dict()
        if state["iterations_in_epoch"] > 0:
            state["trained_sentences"] = torch.from_numpy(
                self.trained_in_epoch(state["epoch"], state["shuffle"], state["iterations_in_epoch"]))
            state["batches"] = batches_digest(self.frozen_batches, self.num_shards, self.update_freq)
            state["batches_left_out"] = self.resumed_epoch == state["epoch"]
        return state

    def load_state_dict(self, state_dict):
        taken = state_dict.get("iterations_in_epoch", 0)
        self.resumed_epoch = self.trained_before = None
        if taken == 0:
            return super().load_state_dict(state_dict)
        trained = state_dict.get("trained_sentences")
        same_batches = state_dict.get("batches") == batches_digest(self.frozen_batches, self.num_shards, self.update_freq)
        if trained is not None and same_batches and not state_dict.get("batches_left_out"):
            return super().load_state_dict(state_dict)  # fairseq's own skip is exact: the same batches
        epoch = state_dict["epoch"]
        if trained is None or len(trained) != len(self.dataset):
            why = ("written before checkpoints named the sentences an epoch has trained" if trained is None else
                   f"its epoch counted {len(trained)} sentences, this split has {len(self.dataset)}")
            logger.warning(f"resuming in the middle of epoch {epoch} ({taken} batches per worker taken) from a "
                           f"checkpoint {why}: which sentences were trained cannot be told, so epoch {epoch} "
                           "starts again from its first batch")
            return super().load_state_dict({**state_dict, "iterations_in_epoch": 0})
        self.trained_before = trained.numpy().astype(bool)
        self.resumed_epoch = self.epoch = epoch
        logger.info(f"resuming epoch {epoch} with other batches than the checkpoint's (batch size, max tokens, "
                    f"worker count or update frequency changed): training the {int((~self.trained_before).sum())} of its "
                    f"{len(self.trained_before)} sentences not trained yet")
        self._next_epoch_itr = self._get_iterator_for_epoch(epoch, shuffle=state_dict.get("shuffle", True))
