"""Task ``sentence_autoencoding``: every sentence is both the source and the target."""
import importlib.util
import logging
import contextlib
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
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
from omegaconf import II, DictConfig, open_dict

from fairseq_wae.checkpoint_utils import (
    CheckpointError, check_checkpoint, check_room_for_a_checkpoint, dictionary_fingerprint, guard_save_dir,
)
from fairseq_wae.data.checks import check_dictionaries, check_not_mid_preparation, check_split, check_split_sizes
from fairseq_wae.data.resumable_batches import ResumableEpochBatchIterator
from fairseq_wae.decoding import SymbolMaskingEnsemble, unproducible_symbols
from fairseq_wae.dictionary import load_dictionary
from fairseq_wae.errors import MissingFile, Refusal, show_refusals_as_one_line
from fairseq_wae.models.architectures import check_named_architecture
from fairseq_wae.models.autoencoder import SentenceAutoencoderModel
from fairseq_wae.models.latent import padding_adds_nothing
from fairseq_wae.options import check_finite_numbers, check_sizes_and_counts, resolved
from fairseq_wae.interactive import InteractiveSentences, given_bpe, interactive_tokenization_problem, not_a_sentence

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
    # read, not set, here: where fairseq-train saves and resumes (see fairseq_wae.checkpoint_utils.guard_save_dir)
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    no_save: bool = II("checkpoint.no_save")
    checkpoint_paths: Optional[str] = II("common_eval.path")


class AutoencodingDataset(LanguagePairDataset):
    """Each sentence as source and target, batched the same way whenever the batches are made.

    fairseq 0.12.3 draws the order that batches are cut from with seed + the epoch at which the batch
    iterator is first built, then keeps those batches for the rest of the run: an uninterrupted run
    builds them in epoch 1, a resumed run in the epoch it resumes at, so its batches (and losses)
    differ. Drawing the order from the seed alone makes a resumed run repeat the uninterrupted one.
    """

    def __init__(self, *args, order_seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.order_seed = order_seed

    def ordered_indices(self):
        with data_utils.numpy_seed(self.order_seed):
            return super().ordered_indices()

    def collater(self, samples, pad_to_length=None):
        """An empty batch is what fairseq hands a data-parallel worker that has run out of batches at an
        epoch's end. fairseq itself replaces an empty dict by a "dummy batch" and, when that is a worker's
        last micro-batch of an update, drops the whole update's sample size and logging outputs of that
        worker while keeping its gradients: an empty batch of zero sentences is returned instead, which
        the task forwards as weightless padding (SentenceAutoencodingTask._stand_in_for_padding)."""
        if samples:
            batch = super().collater(samples, pad_to_length)
            # the batch's name within an epoch, read on the CPU (no host sync where the batch moves to a GPU):
            # a training batch forwarded again in one update is fairseq's NaN re-run (note_training_batch)
            batch["batch_key"] = min(s["id"] for s in samples)
            return batch
        nothing = torch.zeros((0, 1), dtype=torch.long)
        return {"id": torch.zeros(0, dtype=torch.long), "nsentences": 0, "ntokens": 0, "target": nothing,
                "net_input": {"src_tokens": nothing, "src_lengths": torch.zeros(0, dtype=torch.long),
                              "prev_output_tokens": nothing}}


def _zeroed(logging_output):
    """A logging output with the same keys and types, every value 0: fairseq sums the workers' outputs key by key."""
    return {key: torch.zeros_like(value) if torch.is_tensor(value) else 0 for key, value in logging_output.items()}


def _common_config(cfg):
    """The ``common`` section of the whole config that ``cfg`` (the task's or the model's) is a node of,
    or None for a config made alone."""
    root = cfg._get_root() if isinstance(cfg, DictConfig) else None
    return root.get("common") if root is not None and root is not cfg else None


def _resumed_criterion(cfg) -> Optional[str]:
    """The criterion whose optimizer state a resumed run must find in its checkpoint: the run's own, or
    None under --reset-optimizer (which keeps only the weights) and for a config made alone."""
    root = cfg._get_root() if isinstance(cfg, DictConfig) else None
    if root is None or root is cfg or "criterion" not in root or root.get("checkpoint", {}).get("reset_optimizer"):
        return None
    return root.criterion.get("_name")


def _adapt_precision_to_device(cfg) -> None:
    """fairseq 0.12's command line turns ``--bf16`` into ``--tpu`` (options.parse_args_and_arch), and its
    trainer then asks torch_xla for a device, on GPUs and CPUs alike. Without torch_xla there is no TPU
    to mean: the flag is set back, so that ``--bf16`` trains in bfloat16 on the GPU or CPU it was given."""
    common = _common_config(cfg)
    if common is not None and common.get("bf16") and common.get("tpu") and importlib.util.find_spec("torch_xla") is None:
        logger.info("--bf16 without torch_xla: training in bfloat16 on the GPU or CPU, not on a TPU")
        common.tpu = False


def _refuse_half_precision_training_on_the_cpu(cfg) -> None:
    """fairseq cannot train with ``--fp16`` or ``--amp`` on the CPU: its fp16 optimizer handles an overflow
    with CUDA tensors (the first overflow stops the run), and its autocast and loss scaler are CUDA's
    (``--amp`` would train in float32). Generation and validation with ``--fp16`` run on the CPU."""
    common = _common_config(cfg)
    if common is None or not (common.get("cpu") or not torch.cuda.is_available()):
        return
    for flag, why in (("fp16", "its fp16 optimizer handles an overflow with CUDA tensors"),
                      ("amp", "its autocast and loss scaler are CUDA's, so this would train in float32")):
        if common.get(flag):
            also = " or --memory-efficient-fp16" if flag == "fp16" else ""
            raise Refusal(f"--{flag}{also} (common.{flag} in hydra) on the CPU: fairseq cannot train so ({why}); "
                          f"train in bfloat16 with --bf16 there, or use --{flag} on a GPU")


@register_task("sentence_autoencoding", dataclass=SentenceAutoencodingConfig)
class SentenceAutoencodingTask(FairseqTask):
    """Reconstructs each sentence of a monolingual binarized corpus through a sentence code z.

    Also drives the criterion's schedules: it passes the global update and epoch counts on every
    training step.
    """

    def __init__(self, cfg: SentenceAutoencodingConfig, dictionary: Dictionary, dictionary_path: Optional[str] = None):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.dictionary_path = dictionary_path
        self.epoch = 1
        self.model_in_training = self.criterion_in_training = None
        self.model_built_afresh = None  # (model, its config, --arch) of the latest model built from --arch
        self.model_cfg_in_training = self.criterion_to_check = None  # checked at the training's first batches
        self.save_dir_lock = None
        self.stand_in = None  # a batch that padding forwards (see _stand_in_for_padding)
        self.text_tokenization = {}  # the --tokenizer and --bpe that fairseq-interactive and -generate built
        self.inputs_read, self.refused_inputs = 0, set()  # fairseq-interactive's lines so far, the refused ones
        self.saved_progress = self.saved_criterion_parameters = None

    @classmethod
    def setup_task(cls, cfg: SentenceAutoencodingConfig, **kwargs):
        # again over torch.distributed's own hook, which a data-parallel worker has installed by now and
        # which would swallow the one line (it captures the earlier hook's output until that returns)
        show_refusals_as_one_line()
        if not cfg.data:
            raise Refusal("give the data folder (the output of fairseq-preprocess --only-source)")
        _adapt_precision_to_device(cfg)
        root = cfg._get_root() if isinstance(cfg, DictConfig) else cfg
        check_finite_numbers(root)  # the whole command line's, before anything is built
        check_sizes_and_counts(root)
        if cfg.max_sentence_len is not None and cfg.max_sentence_len < 1:
            raise Refusal(f"--max-sentence-len must be at least 1, got {cfg.max_sentence_len}")
        for folder in utils.split_paths(cfg.data):
            if not os.path.isdir(folder):
                problem = "is a file" if os.path.exists(folder) else "does not exist"
                raise MissingFile(f"the data folder {folder} {problem}: give the output folder of "
                                  "fairseq-wae-prepare (scripts/prepare_corpus.py) or fairseq-preprocess --only-source")
            check_not_mid_preparation(folder)  # before its dict.txt, which may be the other corpus's
        dict_path = os.path.join(utils.split_paths(cfg.data)[0], "dict.txt")
        if not os.path.isfile(dict_path):
            raise MissingFile(f"no dictionary at {dict_path}: is {cfg.data} a fairseq-preprocess output folder?")
        dictionary = load_dictionary(dict_path)
        check_dictionaries(utils.split_paths(cfg.data), dictionary)  # every shard's, at start-up
        for checkpoint in filter(None, utils.split_paths(resolved(cfg, "checkpoint_paths") or "")):
            # fairseq-generate's --path, before fairseq loads it: readable, weights only, this dictionary's
            check_checkpoint(checkpoint, dictionary_fingerprint(dictionary, dict_path))
        logger.info(f"dictionary {dict_path}: {len(dictionary)} types")
        return cls(cfg, dictionary, dict_path)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        with self._training_ends_on_error():
            self._load_dataset(split, epoch)

    @contextlib.contextmanager
    def _training_ends_on_error(self):
        """A training whose task raises ends there (fairseq-train does not catch it): its save dir's lock
        is given back at once, also while a Python session keeps the traceback (and with it the task)."""
        try:
            yield
        except BaseException:
            if self.save_dir_lock is not None:
                self.save_dir_lock.release()
            raise

    def _load_dataset(self, split: str, epoch: int) -> None:
        data_dir = utils.split_paths(self.cfg.data)[(epoch - 1) % len(utils.split_paths(self.cfg.data))]
        prefix = os.path.join(data_dir, split)
        check_split_sizes(data_dir, split)  # what fairseq's loader would fail on without naming the file
        sentences = data_utils.load_indexed_dataset(prefix, self.dictionary, self.cfg.dataset_impl)
        if sentences is None:
            raise MissingFile(f"split {split!r} not found: no {prefix}.bin/.idx in {data_dir}")
        check_split(data_dir, split, self.dictionary, self.dictionary_path, sentences)  # see fairseq_wae/data/checks.py
        sizes = sentences.sizes
        if self.cfg.max_sentence_len is not None and self.cfg.overlong_sentences == "truncate":
            eos = self.dictionary.eos()
            sentences = AppendTokenDataset(
                TruncateDataset(StripTokenDataset(sentences, eos), self.cfg.max_sentence_len), eos
            )
            sizes = np.minimum(sizes, self.cfg.max_sentence_len + 1)
        self.datasets[split] = AutoencodingDataset(
            sentences, sizes, self.dictionary,
            sentences, sizes, self.dictionary,
            left_pad_source=False, left_pad_target=False, shuffle=(split == "train"), order_seed=self.cfg.seed,
        )
        logger.info(f"{split}: {len(sentences)} sentences from {prefix}")

    def get_interactive_tokens_and_lengths(self, lines, encode_fn):
        """fairseq-interactive's typed lines as token ids. A line that is no sentence is refused on its
        own, with a warning naming it, and the session goes on: an empty or blank one (a byte-order mark
        alone included), one of unknown words only, one that holds ``<s>``, ``<pad>`` or ``</s>`` as a
        token (typed as tokens, which the corpus never holds). ``build_dataset_for_inference`` leaves
        them out, so they get no made-up reconstruction."""
        if self.inputs_read == 0:  # once, at the first lines: it hashes the sentencepiece model
            self._check_interactive_tokenization()
        tokens, lengths = super().get_interactive_tokens_and_lengths(lines, encode_fn)
        self.refused_inputs = set()
        for i, (line, ids) in enumerate(zip(lines, tokens)):
            problem = not_a_sentence(self.dictionary, ids)
            if problem is not None:
                self.refused_inputs.add(i)
                logger.warning(f"input line {self.inputs_read + i + 1} ({line[:80]!r}) {problem}: not reconstructed")
        self.inputs_read += len(lines)
        return tokens, lengths

    def build_tokenizer(self, args):
        self.text_tokenization["tokenizer"] = getattr(args, "_name", None) if args is not None else None
        return super().build_tokenizer(args)

    def build_bpe(self, args):
        name = getattr(args, "_name", None) if args is not None else None
        model = getattr(args, "sentencepiece_model", None)
        self.text_tokenization["bpe"] = given_bpe(name, model)
        return super().build_bpe(args)

    def _check_interactive_tokenization(self) -> None:
        problem = interactive_tokenization_problem(utils.split_paths(self.cfg.data)[0], self.text_tokenization)
        if problem is not None:
            raise Refusal(problem)

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        """fairseq-interactive: the typed sentences, to be reconstructed, but the refused lines."""
        return InteractiveSentences(src_tokens, src_lengths, self.source_dictionary, left_pad_source=False,
                                    refused=self.refused_inputs)

    def filter_indices_by_size(self, indices, dataset, max_positions=None, ignore_invalid_inputs=False):
        """Sentences over --max-sentence-len are skipped when asked to. fairseq itself leaves out of
        training, with a warning in the log, every sentence longer than the model's positions or
        --max-tokens allow: refused here, so that every sentence of the corpus is trained on."""
        split = next((name for name, d in self.datasets.items() if d is dataset), "this")
        if self.cfg.max_sentence_len is not None and self.cfg.overlong_sentences == "skip":
            keep = dataset.src_sizes[indices] <= self.cfg.max_sentence_len + 1
            if len(indices) and not keep.any():
                raise Refusal(f"--max-sentence-len {self.cfg.max_sentence_len} with --overlong-sentences skip "
                              f"leaves none of the {len(indices)} sentences of the {split} split: raise the "
                              "limit, or truncate instead")
            if not keep.all():
                logger.info(f"skipping {int((~keep).sum())} sentences over --max-sentence-len {self.cfg.max_sentence_len}")
            indices = indices[keep]
        _, too_long = dataset.filter_indices_by_size(indices, max_positions)
        if len(too_long) and (split == "train" or not ignore_invalid_inputs):
            longest = max(int(np.max(dataset.size(i))) for i in too_long)
            raise Refusal(
                f"{len(too_long):,} sentence(s) of the {split} split are longer than fairseq can batch (max positions "
                f"{max_positions}, from the model's --max-target-positions and --max-tokens; the longest has "
                f"{longest:,} tokens with EOS, e.g. sentence #{too_long[0]}), and fairseq would leave them out "
                "without an error: give --max-sentence-len N to truncate them (--overlong-sentences skip leaves them "
                "out), or raise --max-target-positions / --max-tokens")
        return super().filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)

    def get_batch_iterator(self, dataset, *args, required_batch_size_multiple=1, **kwargs):
        if self.model_cfg_in_training is not None:
            # the training's first batches, which fairseq's trainer asks for before it builds its optimizer
            cfg, self.model_cfg_in_training = self.model_cfg_in_training, None
            with self._training_ends_on_error():
                _refuse_half_precision_training_on_the_cpu(cfg)
                self.criterion_to_check.check_model(self.model_in_training)  # at start-up, not at the first update
        # fairseq drops a last batch whose size is not a multiple of --required-batch-size-multiple:
        # an autoencoder must see (and reconstruct) every sentence, so batches may have any size; a resume
        # with other batches trains the rest of the epoch exactly (fairseq_wae/data/resumable_batches.py)
        return ResumableEpochBatchIterator.of(
            super().get_batch_iterator(dataset, *args, required_batch_size_multiple=1, **kwargs), self.cfg)

    def build_model(self, cfg, from_checkpoint=False):
        if not from_checkpoint:
            check_named_architecture(cfg)  # fairseq-hydra-train would build another network than the name's
        if from_checkpoint and getattr(cfg, "embed_path", None):
            # the checkpoint holds the trained embeddings: the file need not be read, nor even exist
            with open_dict(cfg):
                cfg.embed_path = None
        model = super().build_model(cfg, from_checkpoint)
        arch = getattr(cfg, "_name", None) or getattr(cfg, "arch", None)
        if not isinstance(model, SentenceAutoencoderModel):
            raise Refusal(f"--arch {arch or '?'} "
                          f"({type(model).__name__}) is not a sentence autoencoder: --task {self.cfg._name} "
                          "needs one of fairseq-wae's (--arch lstm_*_paper, transformer_*_small, their *_tiny "
                          "sizes, lstm_autoencoder or transformer_autoencoder)")
        self.model_built_afresh = None if from_checkpoint else (model, cfg, arch)
        return model

    def _guard_save_dir(self, model, arch: str) -> None:
        """Lock the save dir for this task's training (see fairseq_wae.save_dir_lock.SaveDirLock), and
        mend a truncated checkpoint_last.pt (the first worker alone, the others wait for it), then refuse to
        resume from a checkpoint of another dictionary."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        first_worker = not distributed or torch.distributed.get_rank() == 0
        fingerprint = model.dictionary_binding.fingerprint if hasattr(model, "dictionary_binding") \
            else dictionary_fingerprint(self.dictionary, self.dictionary_path)
        error = None
        if first_worker:
            try:
                self.save_dir_lock = guard_save_dir(self.cfg.save_dir, self.cfg.restore_file, fingerprint,
                                                    model_class=type(model), arch=arch, owner=self,
                                                    criterion=_resumed_criterion(self.cfg))
            except CheckpointError as e:
                error = e
        if distributed:
            device = torch.device("cuda", torch.cuda.current_device()) \
                if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
            failed = torch.tensor([error is not None], dtype=torch.long, device=device)
            torch.distributed.all_reduce(failed)  # every worker stops when the first one refuses
            if failed.item() and error is None:
                raise CheckpointError("the first worker refused the save dir: see its message")
        if error is not None:
            raise error

    def build_criterion(self, cfg):
        """Also where the task learns that it trains: fairseq-train (fairseq_cli/train.py, also run by
        fairseq-hydra-train and by each data-parallel worker) builds a model from --arch
        (``build_model(cfg.model)``, not ``from_checkpoint``) and then its criterion, before its trainer
        resumes from the save dir. fairseq-validate and fairseq-generate (and ``from_pretrained``) build
        their model from a checkpoint, and fairseq-generate builds no criterion. A model built afresh
        followed by a criterion is therefore a training: its save dir is locked and checked (unless
        --no-save). Half precision on the CPU, and a model the criterion cannot train (check_model), are
        refused when the training first asks for batches (get_batch_iterator: fairseq's trainer does so
        before it builds its optimizer, which fails on the CPU under --fp16), not here: a Python session
        may build a model and a criterion to call them itself, and meet their refusal at the forward."""
        criterion = super().build_criterion(cfg)
        if not hasattr(criterion, "check_model"):
            raise Refusal(f"--criterion {cfg._name} is not an autoencoder objective (no KL, MMD or adversarial "
                          "term on z, no word dropout): use ae_cross_entropy (the DAE), vae_kl, wae_mmd or aae")
        built_afresh, self.model_built_afresh = self.model_built_afresh, None
        if built_afresh is not None and resolved(self.cfg, "save_dir") is not None:
            model, self.model_cfg_in_training, arch = built_afresh
            self.model_in_training, self.criterion_to_check = model, criterion
            if not self.cfg.no_save:
                self._guard_save_dir(model, arch)
        elif self.saved_progress is not None:
            # fairseq-validate: the schedules where the checkpoint's training left them, so that the
            # loss is the one its training validated (an annealed KL weight is not that of update 0)
            criterion.set_training_progress(self.saved_progress["num_updates"], self.saved_progress["epoch"])
            self._restore_criterion_parameters(criterion)
        return criterion

    def _restore_criterion_parameters(self, criterion) -> None:
        """fairseq-validate builds the criterion afresh from the checkpoint's config: one with parameters
        of its own (aae's discriminator) takes back those its training ended with, or its loss would be
        that of an untrained discriminator."""
        if not any(True for _ in criterion.parameters()):
            return
        if self.saved_criterion_parameters is None:
            raise CheckpointError(f"--criterion {type(criterion).__name__} has parameters of its own, and this "
                                  "checkpoint's task_state does not hold them (written before fairseq-wae kept "
                                  "them there): its validation loss cannot be computed")
        criterion.load_state_dict(self.saved_criterion_parameters)

    def state_dict(self):
        """What fairseq keeps in a checkpoint's ``task_state`` and gives back to the evaluation tools
        (not to a resumed fairseq-train): the criterion's update and epoch at the last step, and the
        criterion's own parameters if it has any. fairseq-train keeps those in the checkpoint's
        "criterion" entry too, but fairseq-validate never reads that entry; a copy here is what its task
        is given back (an aae's discriminator: 0.2 MB at 100d codes)."""
        state = dict(super().state_dict())
        criterion = self.criterion_in_training
        if self.save_dir_lock is not None and self.model_in_training is not None:
            with self._training_ends_on_error():  # fairseq-train is about to save: it asks for this first
                check_room_for_a_checkpoint(self.cfg.save_dir, self.model_in_training)
        if criterion is not None:
            state["training_progress"] = {"num_updates": criterion.num_updates, "epoch": self.epoch}
            if any(True for _ in criterion.parameters()):
                state["criterion_parameters"] = {key: value.detach().cpu()
                                                 for key, value in criterion.state_dict().items()}
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        self.saved_progress = state.pop("training_progress", None)
        self.saved_criterion_parameters = state.pop("criterion_parameters", None)
        super().load_state_dict(state)

    def begin_epoch(self, epoch, model):
        self.epoch = epoch

    def _stand_in_for_padding(self, sample):
        """(the batch to forward, whether it is padding). A worker out of batches at an epoch's end gets an
        empty batch (:meth:`AutoencodingDataset.collater`): it forwards a batch it saw before, weighted 0,
        so that it takes part in the workers' collectives (DDP's gradient all-reduce, --mmd-global's
        gather) and adds nothing to the update."""
        if sample["nsentences"] > 0:
            if self.stand_in is None:
                self.stand_in = sample
            return sample, False
        if self.stand_in is None:
            raise Refusal("a data-parallel worker got no batch at all: this split has fewer batches than there "
                          "are workers; use fewer workers or a smaller --batch-size")
        return self.stand_in, True

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        sample, padding = self._stand_in_for_padding(sample)
        ignore_grad = ignore_grad or padding
        if hasattr(criterion, "set_training_progress"):
            criterion.set_training_progress(update_num, self.epoch, counted=not ignore_grad)
        self.criterion_in_training = criterion
        # fairseq's trainer re-runs an update whose gradients were not finite (and that no loss scaler
        # took) under its NanDetector: the criterion sees a batch again that it forwarded in this update,
        # draws again what the first try drew, and the loss is then checked on the host, naming the failure
        rerun = hasattr(criterion, "note_training_batch") and \
            criterion.note_training_batch(None if ignore_grad else sample.get("batch_key"))
        if self.model_in_training is not None and getattr(criterion, "starts_update", False):
            self.model_in_training.begin_update()  # a retried update (a re-run included) counts its batches once
        # padding trains nothing, and adds nothing to the update's batch statistics (BN-VAE)
        with padding_adds_nothing(model) if ignore_grad else contextlib.nullcontext():
            loss, sample_size, logging_output = super().train_step(sample, model, criterion, optimizer, update_num,
                                                                    ignore_grad)
        if rerun and hasattr(criterion, "check_finite"):
            criterion.check_finite(logging_output, f"update {update_num + 1}")
        return (loss, 0, _zeroed(logging_output)) if ignore_grad else (loss, sample_size, logging_output)

    def valid_step(self, sample, model, criterion):
        sample, padding = self._stand_in_for_padding(sample)
        if hasattr(criterion, "set_counted"):
            criterion.set_counted(not padding)
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if padding:
            return loss, 0, _zeroed(logging_output)
        if hasattr(criterion, "check_finite"):
            criterion.check_finite(logging_output, "validation")
        return loss, sample_size, logging_output

    def optimizer_step(self, optimizer, model, update_num):
        super().optimizer_step(optimizer, model, update_num)
        if self.model_in_training is not None:
            self.model_in_training.end_update()
        if hasattr(self.criterion_in_training, "end_update"):
            self.criterion_in_training.end_update()

    def build_generator(self, models, args, **kwargs):
        if self.cfg.sample_posterior and not all(getattr(m, "is_gaussian", False) for m in models):
            raise Refusal("--sample-posterior needs a Gaussian latent head (a VAE or stochastic WAE checkpoint)")
        if not getattr(args, "score_reference", False):  # fairseq's scorer takes the models as they are
            models = SymbolMaskingEnsemble(models, unproducible_symbols(self.target_dictionary))
        return super().build_generator(models, args, **kwargs)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if self.cfg.sample_posterior:
            sample["net_input"]["sample_posterior"] = True
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)

    def max_positions(self):
        # no limit of the task's own without --max-sentence-len: the model's and --max-tokens' apply
        return None if self.cfg.max_sentence_len is None else (self.cfg.max_sentence_len + 1,) * 2

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary
