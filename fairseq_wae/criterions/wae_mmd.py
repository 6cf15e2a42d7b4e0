"""``wae_mmd``: the WAE objective, cross-entropy + lambda * MMD(q(z), p(z)) (eq. 4).

With a Gaussian latent head and ``--kl-variance-penalty gamma`` it is the stochastic WAE.
"""
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Tuple

import torch
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from torch import Tensor

from fairseq_wae.criterions.ae_cross_entropy import AutoencoderCrossEntropyConfig, AutoencoderCrossEntropyCriterion
from fairseq_wae.distributed import gather_rows, global_sum, scale_gradient
from fairseq_wae.errors import Refusal
from fairseq_wae.latent_space import GAUSSIAN_SUMMED_STATISTICS, gaussian_posterior_stats
from fairseq_wae.options import check_non_negative
from fairseq_wae.penalties import AUTHORS_IMQ_C_BASE_PER_DIM, AUTHORS_IMQ_SCALES, imq_kernel, mmd_unbiased, rbf_kernel, variance_kl
from fairseq_wae.seeding import normal_rows


@dataclass
class WaeMmdConfig(AutoencoderCrossEntropyConfig):
    mmd_lambda: float = field(default=10.0, metadata={"help": "lambda_WAE, the MMD weight (the paper: 3 or 10)"})
    mmd_kernel: ChoiceEnum(["imq", "rbf"]) = field(
        default="imq", metadata={"help": "inverse multiquadratic, or Gaussian with the median-heuristic bandwidth"}
    )
    imq_scales: str = field(
        default=",".join(str(s) for s in AUTHORS_IMQ_SCALES),
        metadata={"help": "comma-separated multiples of C_base summed by the IMQ kernel ('1' for a single C)"},
    )
    imq_c_base_per_dim: float = field(
        default=AUTHORS_IMQ_C_BASE_PER_DIM,
        metadata={"help": "C_base = this * latent dim (authors' code: 4; Tolstikhin et al.: 2)"}
    )
    kl_variance_penalty: float = field(
        default=0.0, metadata={"help": "gamma: weight of KL(N(mu,sigma)||N(mu,I)), the stochastic WAE (Gaussian heads)"}
    )
    mmd_global: bool = field(
        default=False, metadata={"help": "estimate MMD on the batch gathered from all data-parallel workers"}
    )


@register_criterion("wae_mmd", dataclass=WaeMmdConfig)
class WaeMmdCriterion(AutoencoderCrossEntropyCriterion):
    sentence_mean_metrics = AutoencoderCrossEntropyCriterion.sentence_mean_metrics + (
        "mmd", "mmd_weight", "weighted_mmd", "variance_kl", "posterior_var")
    count_metrics = ("mmd_skipped",)
    summed_statistics = GAUSSIAN_SUMMED_STATISTICS + ("mmd_sentences",)
    # a batch too small for the estimate logs an MMD of 0 for its sentences, which its mean leaves out
    metric_weights = {"mmd": "mmd_sentences", "weighted_mmd": "mmd_sentences"}

    def __init__(self, task, cfg: WaeMmdConfig):
        super().__init__(task, cfg)
        check_non_negative("mmd-lambda", cfg.mmd_lambda)
        check_non_negative("kl-variance-penalty", cfg.kl_variance_penalty)
        try:
            scales = tuple(float(s) for s in str(cfg.imq_scales).split(","))
        except ValueError:
            raise Refusal(f"--imq-scales must be comma-separated numbers, got {cfg.imq_scales!r}")
        if not all(0 < number < math.inf for number in (*scales, cfg.imq_c_base_per_dim)):  # NaN too
            raise Refusal(f"--imq-scales and --imq-c-base-per-dim must be finite and positive, got {cfg.imq_scales!r}, "
                          f"{cfg.imq_c_base_per_dim}")
        self.mmd_lambda = cfg.mmd_lambda
        self.kernel_name = str(cfg.mmd_kernel)
        self.imq_scales, self.imq_c_base_per_dim = scales, cfg.imq_c_base_per_dim
        self.variance_weight = cfg.kl_variance_penalty
        self.mmd_global = cfg.mmd_global

    def check_model(self, model) -> None:
        if self.variance_weight > 0 and not model.is_gaussian:
            raise Refusal("--kl-variance-penalty (the stochastic WAE) needs a Gaussian latent head: "
                          "use --arch lstm_swae_paper or transformer_swae_small, or --latent-head gaussian")

    def global_mmd(self, z: Tensor) -> Tuple[Tensor, int]:
        """(MMD of the codes of every worker's batch, how many codes that is), as one process would
        estimate it on the concatenated batch. fairseq's dummy batch (a worker out of data at an epoch's
        end) contributes no codes."""
        codes = gather_rows(z if self.counted else z[:0])
        if codes.size(0) < 2:  # the unbiased estimator needs two codes (a host integer: no sync)
            return z.new_zeros(()), codes.size(0)
        generator = self.random_generator(z.device, "prior", per_worker=False)
        prior = normal_rows(codes.size(0), codes.size(1), generator, z.device, z.dtype)
        return mmd_unbiased(codes, prior, self.kernel(z.size(1))), codes.size(0)

    def kernel(self, latent_dim: int):
        if self.kernel_name == "rbf":
            return rbf_kernel
        return partial(imq_kernel, latent_dim=latent_dim, scales=self.imq_scales, c_base_per_dim=self.imq_c_base_per_dim)

    def latent_penalty(self, model, latent: Dict[str, Tensor], sample) -> Tuple[Tensor, Dict[str, Tensor]]:
        if self.mmd_global:
            mmd, codes = self.global_mmd(latent["z"])
            estimated = mmd.new_full((), float(codes >= 2))
        else:
            z = latent["z"]
            if z.size(0) >= 2:
                prior = torch.randn(z.shape, generator=self.random_generator(z.device, "prior"), device=z.device,
                                    dtype=z.dtype)
                mmd = mmd_unbiased(z, prior, self.kernel(z.size(1)))
            else:  # the unbiased estimator needs two codes: a one-sentence batch trains on cross-entropy alone
                mmd = z.new_zeros(())
            estimated = mmd.new_full((), float(z.size(0) >= 2))
        penalty = self.mmd_lambda * mmd
        logs = {"mmd": mmd.detach(), "mmd_weight": torch.full_like(mmd, self.mmd_lambda).detach(),
                "weighted_mmd": penalty.detach(), "mmd_skipped": 1.0 - estimated,
                "mmd_sentences": estimated * latent["z"].size(0)}
        if self.mmd_global:
            # the caller weighs the penalty by this worker's tokens, and fairseq divides the summed
            # gradients by the global count: a global estimate's gradient must carry the global weight
            tokens = latent["z"].new_full((), float(sample["ntokens"] if self.counted else 0))
            penalty = scale_gradient(penalty, global_sum(tokens) / tokens.clamp_min(1.0))
        if model.is_gaussian:
            logs.update(gaussian_posterior_stats(latent))
            variance_penalty = variance_kl(latent["logvar"]).mean()
            logs["variance_kl"] = variance_penalty.detach()
            if self.variance_weight > 0:
                penalty = penalty + self.variance_weight * variance_penalty
        return penalty, logs
