"""Task ``sentence_autoencoding``: every sentence is both the source and the target."""
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from fairseq import utils
from fairseq.data import (
    AppendTokenDataset,
    Dictionary,
    LanguagePairDataset,
    StripTokenDataset,
    TruncateDataset,
    data_utils,
)
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, open_dict

logger = logging.getLogger(__name__)


@dataclass
class SentenceAutoencodingConfig(FairseqDataclass):
    data: Optional[str] = field(
        default=None, metadata={"help": "folder of `fairseq-preprocess --only-source` output (dict.txt, train.bin, ...)"}
    )
    max_sentence_len: Optional[int] = field(
        default=None, metadata={"help": "longest sentence in words (EOS excluded); the authors' code used 20"}
    )
    overlong_sentences: ChoiceEnum(["truncate", "skip"]) = field(
        default="truncate", metadata={"help": "what to do with sentences over --max-sentence-len"}
    )
    sample_posterior: bool = field(
        default=False,
        metadata={"help": "generation: decode from a sample of q(z|x) instead of its mean (Gaussian latents only)"},
    )
    dataset_impl: Optional[str] = II("dataset.dataset_impl")
    seed: int = II("common.seed")


@register_task("sentence_autoencoding", dataclass=SentenceAutoencodingConfig)
class SentenceAutoencodingTask(FairseqTask):
    """Reconstructs each sentence of a monolingual binarized corpus through a sentence code z.

    Also drives the criterion's schedules: it passes the global update and epoch counts on every
    training step.
    """

    def __init__(self, cfg: SentenceAutoencodingConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.epoch = 1

    @classmethod
    def setup_task(cls, cfg: SentenceAutoencodingConfig, **kwargs):
        if not cfg.data:
            raise ValueError("give the data folder (the output of fairseq-preprocess --only-source)")
        if cfg.max_sentence_len is not None and cfg.max_sentence_len < 1:
            raise ValueError(f"--max-sentence-len must be at least 1, got {cfg.max_sentence_len}")
        dict_path = os.path.join(utils.split_paths(cfg.data)[0], "dict.txt")
        if not os.path.isfile(dict_path):
            raise FileNotFoundError(f"no dictionary at {dict_path}: is {cfg.data} a fairseq-preprocess output folder?")
        dictionary = Dictionary.load(dict_path)
        logger.info(f"dictionary {dict_path}: {len(dictionary)} types")
        return cls(cfg, dictionary)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        data_dir = utils.split_paths(self.cfg.data)[(epoch - 1) % len(utils.split_paths(self.cfg.data))]
        prefix = os.path.join(data_dir, split)
        sentences = data_utils.load_indexed_dataset(prefix, self.dictionary, self.cfg.dataset_impl)
        if sentences is None:
            raise FileNotFoundError(f"split {split!r} not found: no {prefix}.bin/.idx in {data_dir}")
        self._check_vocabulary(sentences, prefix)
        sizes = sentences.sizes
        if self.cfg.max_sentence_len is not None and self.cfg.overlong_sentences == "truncate":
            eos = self.dictionary.eos()
            sentences = AppendTokenDataset(
                TruncateDataset(StripTokenDataset(sentences, eos), self.cfg.max_sentence_len), eos
            )
            sizes = np.minimum(sizes, self.cfg.max_sentence_len + 1)
        self.datasets[split] = LanguagePairDataset(
            sentences, sizes, self.dictionary,
            sentences, sizes, self.dictionary,
            left_pad_source=False, left_pad_target=False, shuffle=(split == "train"),
        )
        logger.info(f"{split}: {len(sentences)} sentences from {prefix}")

    def _check_vocabulary(self, sentences, prefix: str) -> None:
        """A dict.txt from another preprocessing run would silently scramble every sentence."""
        tokens = getattr(sentences, "_bin_buffer", None)
        if tokens is None or len(sentences) == 0:
            return
        largest = int(np.frombuffer(tokens, dtype=sentences._index.dtype).max())
        if largest >= len(self.dictionary):
            raise ValueError(
                f"{prefix}.bin holds token id {largest} but the dictionary has {len(self.dictionary)} entries: "
                f"dict.txt in {self.cfg.data} does not belong to this data"
            )

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        """fairseq-interactive: the typed sentences, to be reconstructed."""
        return LanguagePairDataset(src_tokens, src_lengths, self.source_dictionary, left_pad_source=False)

    def filter_indices_by_size(self, indices, dataset, max_positions=None, ignore_invalid_inputs=False):
        if self.cfg.max_sentence_len is not None and self.cfg.overlong_sentences == "skip":
            keep = dataset.src_sizes[indices] <= self.cfg.max_sentence_len + 1
            if not keep.all():
                logger.info(f"skipping {int((~keep).sum())} sentences over --max-sentence-len {self.cfg.max_sentence_len}")
            indices = indices[keep]
        return super().filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)

    def get_batch_iterator(self, dataset, *args, required_batch_size_multiple=1, **kwargs):
        # fairseq drops a last batch whose size is not a multiple of --required-batch-size-multiple:
        # an autoencoder must see (and reconstruct) every sentence, so batches may have any size.
        return super().get_batch_iterator(dataset, *args, required_batch_size_multiple=1, **kwargs)

    def build_model(self, cfg, from_checkpoint=False):
        if from_checkpoint and getattr(cfg, "embed_path", None):
            # the checkpoint holds the trained embeddings: the file need not be read, nor even exist
            with open_dict(cfg):
                cfg.embed_path = None
        return super().build_model(cfg, from_checkpoint)

    def begin_epoch(self, epoch, model):
        self.epoch = epoch

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if hasattr(criterion, "set_training_progress"):
            criterion.set_training_progress(update_num, self.epoch)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def build_generator(self, models, args, **kwargs):
        if self.cfg.sample_posterior and not all(getattr(m, "is_gaussian", False) for m in models):
            raise ValueError("--sample-posterior needs a Gaussian latent head (a VAE or stochastic WAE checkpoint)")
        return super().build_generator(models, args, **kwargs)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if self.cfg.sample_posterior:
            sample["net_input"]["sample_posterior"] = True
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)

    def max_positions(self):
        return (1024, 1024) if self.cfg.max_sentence_len is None else (self.cfg.max_sentence_len + 1,) * 2

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
