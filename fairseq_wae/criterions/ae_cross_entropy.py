"""``ae_cross_entropy``: the DAE objective (eq. 1), and the base of the VAE and WAE criterions.

A subclass changes only :meth:`AutoencoderCrossEntropyCriterion.latent_penalty`. The penalty is a
per-sentence mean weighed against the per-token mean cross-entropy, as in the authors' code; since
fairseq sums the loss over tokens, it is multiplied by the batch's token count.

Whatever the model's precision (``--fp16``, ``--bf16``, ``--amp``), the loss, the penalties and the
statistics they log are computed in float32 with autocast off, as fairseq upcasts before its own
log-softmax: a kernel sum over a batch of 128 codes passes float16's maximum. The step keeps every
logged value a tensor and reads nothing back to the host (a synchronisation on a GPU).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from omegaconf import II
from torch import Tensor

from fairseq_wae.distributed import data_parallel_workers
from fairseq_wae.data.noising import InputNoise
from fairseq_wae.errors import Refusal
from fairseq_wae.latent_space import active_units_from_sums
from fairseq_wae.options import check_non_negative, check_rate, resolved
from fairseq_wae.schedules import word_dropout_rate
from fairseq_wae.seeding import seeded_generator, seeded_seed

#: What a training forward draws at random, each from its own seeded generator (a new purpose goes at
#: the end: the index is part of the seed, so inserting one would change the draws of those after it).
#: "dropout" seeds torch's global generator, which the model's dropout layers draw from.
RANDOM_DRAWS = ("word_dropout", "prior", "posterior") + InputNoise.NAMES + ("dropout",)
#: Stands for the update in the key of a validation batch's draws (updates count from 0).
VALIDATION = -1


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Summed token cross-entropy whose backward is softmax - one-hot, computed in place from the
    saved log-probabilities: one pass over the (tokens x vocabulary) scores, where log_softmax + nll_loss
    zero-fill a gradient, scatter into it and take log_softmax's backward. The output layer dominates
    the step; this made it about 20% faster (scripts/benchmark.py, BENCHMARKS.md)."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, padding_idx: int) -> Tensor:
        lprobs = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
        keep = target.ne(padding_idx)
        ctx.save_for_backward(lprobs, target, keep)
        ctx.input_dtype, ctx.backward_done = logits.dtype, False
        return -(lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1) * keep).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        if ctx.backward_done:  # the in-place exp below consumed the saved log-probabilities
            raise RuntimeError("reconstruction_loss: backward twice through one loss (retain_graph) is unsupported")
        ctx.backward_done = True
        lprobs, target, keep = ctx.saved_tensors
        grad = lprobs.exp_()
        grad.scatter_add_(-1, target.unsqueeze(-1), grad.new_full((grad.size(0), 1), -1.0))
        grad.mul_((keep * grad_output).unsqueeze(-1).to(grad.dtype))
        return grad.to(ctx.input_dtype), None, None


def reconstruction_loss(logits: Tensor, target: Tensor, padding_idx: int) -> Tensor:
    """Eq. 1: the reconstruction cross-entropy -sum_t log p(x_t | x_<t, z), summed over the batch's
    non-padding tokens (``logits``: batch x length x vocabulary scores)."""
    return _SoftmaxCrossEntropy.apply(logits.reshape(-1, logits.size(-1)), target.reshape(-1), padding_idx)


@dataclass
class AutoencoderCrossEntropyConfig(FairseqDataclass):
    word_dropout: float = field(
        default=0.0, metadata={"help": "rate of replacing decoder input words by <unk> in training (in epoch 1)"}
    )
    word_dropout_increment: float = field(
        default=0.0, metadata={"help": "added to the word-dropout rate after each epoch (the paper: 0.05)"}
    )
    word_dropout_max: float = field(
        default=0.5, metadata={"help": "the word-dropout rate never grows past this (the paper: 0.5)"}
    )
    # text-autoencoders' input noise (DAAE: --noise-drop 0.3), on the encoder's input alone; see data/noising.py
    noise_drop: float = field(
        default=0.0, metadata={"help": "encoder input: probability of dropping each word in training"}
    )
    noise_blank: float = field(
        default=0.0, metadata={"help": "encoder input: probability of replacing each word by the blank <s>"}
    )
    noise_substitute: float = field(
        default=0.0, metadata={"help": "encoder input: probability of replacing each word by a random word"}
    )
    noise_shuffle_distance: int = field(
        default=0, metadata={"help": "encoder input: shuffle words locally, none moving more than this many places"}
    )
    seed: int = II("common.seed")
    # unread since draws are keyed by the batch's place in the update; kept so that older checkpoints load
    update_freq: List[int] = II("optimization.update_freq")
    # read, not set, here: under a loss scaler a training overflow is fairseq's to handle (see check_finite)
    fp16: bool = II("common.fp16")
    amp: bool = II("common.amp")


@register_criterion("ae_cross_entropy", dataclass=AutoencoderCrossEntropyConfig)
class AutoencoderCrossEntropyCriterion(FairseqCriterion):
    """Token cross-entropy of the reconstruction, with optional word dropout on decoder inputs.

    Each criterion declares what its ``latent_penalty`` logs: ``sentence_mean_metrics`` are logged as
    ``value * nsentences`` and reported as sentence-weighted means over batches and workers (over the
    sentences counted by the key that ``metric_weights`` names, where it names one); ``count_metrics``
    are summed; ``summed_statistics`` (tensors of any shape) are summed and read by ``reduce_metrics``
    alone (the posterior means' sums, from which it counts active units). A criterion logs the same keys, of the same types, for every batch: fairseq sums the
    logging outputs of all micro-batches and workers key by key, in one buffer for the numbers and one
    for the tensors, with the keys of the first output. Logging an undeclared key is an error, not a
    metric lost.
    """

    sentence_mean_metrics = ("word_dropout",)
    count_metrics = ()
    summed_statistics = ()
    metric_weights: Dict[str, str] = {}

    def __init__(self, task, cfg: AutoencoderCrossEntropyConfig):
        super().__init__(task)
        check_rate("word-dropout", cfg.word_dropout)
        check_rate("word-dropout-max", cfg.word_dropout_max)
        check_non_negative("word-dropout-increment", cfg.word_dropout_increment)
        for flag in ("noise-drop", "noise-blank", "noise-substitute"):
            check_rate(flag, getattr(cfg, flag.replace("-", "_")))
        if cfg.noise_drop == 1.0:
            raise Refusal("--noise-drop 1 drops every word: the encoder would read nothing but EOS")
        if cfg.noise_shuffle_distance < 0:
            raise Refusal(f"--noise-shuffle-distance must be >= 0 (words), got {cfg.noise_shuffle_distance}")
        self.input_noise = InputNoise(task.source_dictionary, cfg.noise_drop, cfg.noise_blank, cfg.noise_substitute,
                                      cfg.noise_shuffle_distance)
        self.word_dropout = cfg.word_dropout
        self.word_dropout_increment = cfg.word_dropout_increment
        self.word_dropout_max = cfg.word_dropout_max
        self.seed = cfg.seed
        self.loss_scaled = bool(resolved(cfg, "fp16") or resolved(cfg, "amp"))
        self.num_updates = 0
        self.epoch = 1
        self.counted = True
        self._training_forwards = 0  # of this update, on this worker
        self._forwarded = set()  # the keys of the batches forwarded in training since this update's try began
        self.rerunning = False  # whether fairseq's trainer re-runs this update's micro-batches (note_training_batch)
        self._micro_batch = 0  # the global index of the latest training forward's batch in its update
        self._validation_batch = None  # the key of the latest forward's batch, when it validated

    @classmethod
    def build_criterion(cls, cfg, task):
        return cls(task, cfg)

    # -- hooks for subclasses --------------------------------------------------------------------

    def check_model(self, model) -> None:
        """Refuses a model this criterion cannot train (called on the first forward)."""

    def latent_penalty(self, model, latent: Dict[str, Tensor], sample) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The weighted penalty (a per-sentence mean) and the values to log (tensors, declared in
        ``sentence_mean_metrics`` or ``count_metrics``). ``latent`` is in float32, autocast off."""
        return latent["z"].new_zeros(()), {}

    # -- training progress, set by the task --------------------------------------------------------

    def set_training_progress(self, num_updates: int, epoch: int, counted: bool = True) -> None:
        """Called by the task before each training forward; ``counted`` is False for padding, the batch a
        worker that ran out of data forwards with weight 0."""
        if num_updates != self.num_updates:
            self._begin_try()
        self.num_updates, self.epoch, self.counted = num_updates, epoch, counted
        self._validation_batch = None

    def set_counted(self, counted: bool) -> None:
        """Called by the task before each validation forward: False for padding (see set_training_progress)."""
        self.counted = counted

    def restart_update(self) -> None:
        """The next training forward is the first micro-batch of an update: fairseq's trainer calls
        ``train()`` at the start of every update, an overflow-retried one included, and
        :meth:`note_training_batch` calls this when fairseq re-runs a failed update under its NaN
        detector, so that a retry draws what its first try drew."""
        self._training_forwards = 0

    @property
    def starts_update(self) -> bool:
        """Whether the next training forward is the first micro-batch of an update, or of a retry of one."""
        return self._training_forwards == 0

    def _begin_try(self) -> None:
        """An update, or a retry of one that fairseq's trainer starts with ``train()`` (an --amp overflow)."""
        self.restart_update()
        self._forwarded.clear()
        self.rerunning = False

    def note_training_batch(self, key) -> bool:
        """Called by the task before each counted training forward with the batch's key (its first
        sentence index, which names a batch within an epoch; None for padding). Returns whether fairseq's
        trainer is re-running this update's micro-batches: when an update's gradients are not finite and
        no loss scaler takes the overflow, fairseq/trainer.py's train_step forwards the same samples again
        under its NanDetector, in the same call, with no ``train()`` between. A batch forwarded a second
        time in one try is that signal: the draws restart, so that the re-run draws what the first try
        drew, and the task then checks the loss on the host (check_finite) to name what went wrong."""
        if key is not None:
            if key in self._forwarded:
                self._forwarded.clear()
                self.restart_update()
                self.rerunning = True
            self._forwarded.add(key)
        return self.rerunning

    def train(self, mode: bool = True):
        if mode:
            self._begin_try()
        return super().train(mode)

    def end_update(self) -> None:
        """Called by the task after each optimizer step, on every worker."""

    def _key_draws(self, sample, training: bool) -> None:
        """Keys this forward's draws by what it is. A training micro-batch is (update, global micro-batch),
        the global index ``local index x workers + rank`` being the batch's place in the order fairseq
        deals batches out (batch i to worker i mod N): N workers x ``--update-freq K`` draw what one
        process with ``--update-freq N*K`` draws on the same batches. A validation batch is keyed by its
        first sentence, so fairseq-train's validation and fairseq-validate draw alike whatever trained before.
        Torch's global generator is seeded here too, so the model's dropout masks are keyed the same way."""
        if training:
            rank, workers = data_parallel_workers()
            self._micro_batch, self._validation_batch = self._training_forwards * workers + rank, None
            self._training_forwards += 1
            torch.manual_seed(seeded_seed(self.seed, self.num_updates, self._micro_batch, RANDOM_DRAWS.index("dropout")))
        else:
            ids = sample.get("id")
            self._validation_batch = int(ids.min()) if torch.is_tensor(ids) and ids.numel() else 0

    def random_generator(self, device, draw: str, per_worker: bool = True) -> torch.Generator:
        """A generator seeded by (seed, update, global micro-batch, what is drawn) in training, (seed,
        validation, batch, what is drawn) in validation: draws differ across workers, micro-batches and
        purposes, yet a run is reproducible from its seed, resumed or not (see :meth:`_key_draws`).
        ``per_worker=False`` gives every worker the draw of global micro-batch ``local index x workers``
        (for an estimate computed on the batch gathered from all workers)."""
        if self._validation_batch is not None:
            return seeded_generator(self.seed, VALIDATION, self._validation_batch, RANDOM_DRAWS.index(draw),
                                    device=device)
        micro_batch = self._micro_batch
        if not per_worker:
            micro_batch -= micro_batch % data_parallel_workers()[1]
        return seeded_generator(self.seed, self.num_updates, micro_batch, RANDOM_DRAWS.index(draw), device=device)

    @property
    def word_dropout_rate(self) -> float:
        return word_dropout_rate(self.epoch, self.word_dropout, self.word_dropout_increment, self.word_dropout_max)

    def drop_words(self, prev_output_tokens: Tensor, rate: float) -> Tensor:
        """Word dropout (Bowman et al. 2016): decoder inputs replaced by <unk> with probability ``rate``.

        The first input (the start symbol) and padding are never replaced.
        """
        dictionary = self.task.target_dictionary
        draw = torch.rand(prev_output_tokens.shape, device=prev_output_tokens.device,
                          generator=self.random_generator(prev_output_tokens.device, "word_dropout"))
        droppable = prev_output_tokens.ne(dictionary.pad())
        droppable[:, 0] = False
        return prev_output_tokens.masked_fill(droppable & (draw < rate), dictionary.unk())

    def noisy_source(self, net_input) -> Dict[str, Tensor]:
        """The encoder's input with text-autoencoders' noise (``--noise-*``): new ``src_tokens`` and
        ``src_lengths``; the decoder's input and the target stay the clean sentence."""
        tokens = net_input["src_tokens"]
        tokens, lengths = self.input_noise(tokens, net_input["src_lengths"],
                                           lambda draw: self.random_generator(tokens.device, draw))
        return {"src_tokens": tokens, "src_lengths": lengths}

    # -- the loss -------------------------------------------------------------------------------------

    def forward(self, model, sample, reduce=True):
        self.check_model(model)
        self._key_draws(sample, model.training)
        net_input = sample["net_input"]
        rate = self.word_dropout_rate if model.training else 0.0
        if rate > 0:
            net_input = {**net_input, "prev_output_tokens": self.drop_words(net_input["prev_output_tokens"], rate)}
        if model.training and self.input_noise.active:
            net_input = {**net_input, **self.noisy_source(net_input)}
        if model.training and getattr(model, "is_gaussian", False):
            net_input = {**net_input, "noise_generator": self.random_generator(net_input["src_tokens"].device,
                                                                               "posterior")}
        logits, extra = model(**net_input)

        with torch.autocast(logits.device.type, enabled=False):
            nll_loss = reconstruction_loss(logits, sample["target"], self.padding_idx)
            latent = {key: value.float() for key, value in extra["latent"].items()}
            penalty, penalty_logs = self.latent_penalty(model, latent, sample)
            ntokens, nsentences = sample["ntokens"], sample["target"].size(0)
            loss = nll_loss + penalty * ntokens

        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": ntokens,
            "word_dropout": rate * nsentences,
        }
        for key, value in penalty_logs.items():
            if key in self.count_metrics or key in self.summed_statistics:
                logging_output[key] = value.detach()
            elif key in self.sentence_mean_metrics:
                logging_output[key] = value.detach() * nsentences
            else:
                raise KeyError(f"{type(self).__name__} logs {key!r}, which it declares in none of "
                               "sentence_mean_metrics, count_metrics and summed_statistics: it would never be reported")
        return loss, ntokens, logging_output

    def check_finite(self, logging_output, phase: str) -> None:
        """Raises a FloatingPointError that names the cross-entropy and the penalty when ``logging_output``'s
        loss is not finite. In training a loss scaler (``--fp16``, ``--amp``) takes an overflow itself
        (the step is skipped and the scale lowered, as for fairseq's own criterions), so the check is
        left out there; in float32 and ``--bf16`` fairseq has no scaler and stops on non-finite gradients
        by re-running the update under its NaN detector, and the task calls this then, never in a normal
        step. Validation has no scaler in any precision: the task checks every validation batch."""
        if (self.loss_scaled and phase != "validation") or torch.isfinite(torch.as_tensor(logging_output["loss"])).all():
            return
        loss, nll_loss = float(logging_output["loss"]), float(logging_output["nll_loss"])
        raise FloatingPointError(
            f"non-finite loss at {phase} (cross-entropy {nll_loss:.4g}, weighted penalty "
            f"{(loss - nll_loss) / max(float(logging_output['ntokens']), 1.0):.4g} per token): lower --lr, or "
            "check --embed-path and the penalty weights"
        )

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size, ntokens, nsentences = total("sample_size"), total("ntokens"), total("nsentences")
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        present = {key for log in logging_outputs for key in log}
        for key in cls.sentence_mean_metrics:
            if key in present:
                weight = total(cls.metric_weights[key]) if key in cls.metric_weights else nsentences
                if weight > 0:
                    metrics.log_scalar(key, total(key) / weight, weight, round=4)
        for key in cls.count_metrics:
            if key in present:
                metrics.log_scalar_sum(key, total(key))
        if "latent_mean_sum" in present:
            units = active_units_from_sums(total("latent_mean_sum"), total("latent_mean_square_sum"), nsentences)
            if units is not None:
                metrics.log_scalar("active_units", units, nsentences, round=2)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
