"""``vae_kl``: the VAE objective, cross-entropy + lambda(t) * KL(q(z|x) || N(0, I)) (eq. 2)."""
from dataclasses import dataclass, field
from typing import Dict, Tuple

import torch

from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from torch import Tensor

from fairseq_wae.criterions.ae_cross_entropy import AutoencoderCrossEntropyConfig, AutoencoderCrossEntropyCriterion
from fairseq_wae.distributed import global_sums
from fairseq_wae.errors import Refusal
from fairseq_wae.latent_space import GAUSSIAN_SUMMED_STATISTICS, gaussian_posterior_stats
from fairseq_wae.options import check_non_negative
from fairseq_wae.penalties import gaussian_kl
from fairseq_wae.schedules import KL_ANNEAL_CHOICES, PeakStopper, kl_weight


@dataclass
class VaeKlConfig(AutoencoderCrossEntropyConfig):
    kl_weight: float = field(default=1.0, metadata={"help": "lambda_VAE, the KL weight (its maximum when annealed)"})
    kl_anneal: ChoiceEnum(list(KL_ANNEAL_CHOICES)) = field(
        default="constant", metadata={"help": "KL-weight schedule over updates (see fairseq_wae.schedules.kl_weight)"}
    )
    kl_anneal_steps: int = field(
        default=10000, metadata={"help": "linear: updates to reach --kl-weight; cyclical: updates per cycle"}
    )
    kl_anneal_midpoint: int = field(
        default=4500, metadata={"help": "sigmoid/tanh: update at which the weight is half of --kl-weight"}
    )
    kl_anneal_steepness: float = field(
        default=0.001, metadata={"help": "sigmoid/tanh: steepness per update (the authors' tanh: 1/1000)"}
    )
    kl_anneal_stop_at_peak: bool = field(
        default=False,
        metadata={"help": "freeze the weight once lambda*KL has peaked, after the start-up transient "
                          "(the paper's rule)"},
    )
    kl_free_bits: float = field(
        default=0.0, metadata={"help": "free bits: nats of KL per latent dimension that go unpenalised (0: off)"}
    )


@register_criterion("vae_kl", dataclass=VaeKlConfig)
class VaeKlCriterion(AutoencoderCrossEntropyCriterion):
    sentence_mean_metrics = AutoencoderCrossEntropyCriterion.sentence_mean_metrics + (
        "kl", "kl_weight", "weighted_kl", "posterior_var")
    summed_statistics = GAUSSIAN_SUMMED_STATISTICS

    def __init__(self, task, cfg: VaeKlConfig):
        super().__init__(task, cfg)
        check_non_negative("kl-weight", cfg.kl_weight)
        check_non_negative("kl-free-bits", cfg.kl_free_bits)
        if cfg.kl_anneal_steps < 1:
            raise Refusal(f"--kl-anneal-steps must be at least 1, got {cfg.kl_anneal_steps}")
        if cfg.kl_anneal_stop_at_peak and cfg.kl_anneal == "constant":
            raise Refusal("--kl-anneal-stop-at-peak needs an annealing --kl-anneal schedule, not 'constant'")
        self.max_kl_weight = cfg.kl_weight
        self.schedule = dict(schedule=str(cfg.kl_anneal), anneal_steps=cfg.kl_anneal_steps,
                             midpoint=cfg.kl_anneal_midpoint, steepness=cfg.kl_anneal_steepness)
        self.peak_stopper = PeakStopper() if cfg.kl_anneal_stop_at_peak else None
        self._update_kl, self._update_sentences = 0.0, 0  # this update's KL (a tensor), summed over its sentences
        self.free_bits = cfg.kl_free_bits

    def check_model(self, model) -> None:
        if not model.is_gaussian:
            raise Refusal("--criterion vae_kl needs a Gaussian latent head: use --arch lstm_vae_* or "
                          "transformer_vae_*, or --latent-head gaussian")

    @property
    def current_kl_weight(self) -> float:
        if self.peak_stopper is not None and self.peak_stopper.frozen_weight is not None:
            return self.peak_stopper.frozen_weight
        return kl_weight(step=self.num_updates, max_weight=self.max_kl_weight, **self.schedule)

    def latent_penalty(self, model, latent: Dict[str, Tensor], sample) -> Tuple[Tensor, Dict[str, Tensor]]:
        kl_per_dim = gaussian_kl(latent["mean"], latent["logvar"])
        kl = kl_per_dim.sum(-1).mean()
        penalised = kl_per_dim.mean(0).clamp_min(self.free_bits).sum() if self.free_bits > 0 else kl
        if self.peak_stopper is not None:
            self._attach_peak_stopper(model)
        weight = self.current_kl_weight
        if model.training and self.counted and self.peak_stopper is not None:
            self._update_kl = self._update_kl + kl_per_dim.detach().sum()
            self._update_sentences += kl_per_dim.size(0)
        kl = kl.detach()
        logs = {"kl": kl, "kl_weight": torch.full_like(kl, weight), "weighted_kl": weight * kl,
                **gaussian_posterior_stats(latent)}
        return weight * penalised, logs

    def end_update(self) -> None:
        """The stop-at-peak rule sees one value per optimizer step: lambda times the KL averaged over
        every sentence of the update, on all workers and micro-batches (so N workers and
        ``--update-freq N`` decide alike)."""
        if self.peak_stopper is None:
            return
        weight = self.current_kl_weight
        kl_sum, sentences = global_sums([self._update_kl, self._update_sentences])
        self._update_kl, self._update_sentences = 0.0, 0
        if sentences > 0:
            self.peak_stopper.update(weight, weight * kl_sum / sentences)

    def _attach_peak_stopper(self, model) -> None:
        """Keeps the stop-at-peak state in the model's checkpoint, and takes it back from there when a
        run resumes (on the first forward)."""
        if model.schedule_state.owner is self.peak_stopper:
            return
        restored = model.schedule_state.attach(self.peak_stopper)
        if self.num_updates > 0 and not restored:
            raise RuntimeError(
                f"--kl-anneal-stop-at-peak: this run resumes at update {self.num_updates} from a checkpoint that "
                "holds no stop-at-peak state (trained without the flag, or written before fairseq-wae kept the "
                "state in the model), so the rule would start over mid-run and any KL weight frozen at the peak "
                "of lambda*KL would be lost. Start afresh in a new --save-dir, or go on with the frozen weight as "
                "a constant: drop --kl-anneal-stop-at-peak and pass --kl-anneal constant --kl-weight W, where "
                "for an older checkpoint W is its task_state['criterion_schedule']['frozen_weight'].")
