"""``aae``: the adversarial autoencoder (Makhzani et al. 2016; WAE-GAN, Tolstikhin et al. 2018), as
text-autoencoders trains it (Shen et al., ICML 2020): cross-entropy + lambda * the non-saturating
generator loss of a latent discriminator D, which learns to tell prior codes N(0, I) from posterior
codes. ``--logvar-l1`` adds their LAAE's L1 penalty on a Gaussian head's log-variance, and the base
criterion's ``--noise-*`` flags their DAAE's input noise.

D is text-autoencoders' MLP, Linear(latent_dim, 512)-ReLU-Linear(512, 1), its sigmoid folded into a
binary cross-entropy on logits (the same loss, without BCE's clamping of log 0). D's parameters belong
to the criterion: fairseq's trainer optimises them with the model's (chain(model.parameters(),
criterion.parameters())), all-reduces their gradients across workers and keeps them in the checkpoint's
"criterion" entry, which a resumed run loads back (strict).

One optimiser, one backward: the two games are kept apart in the graph. D's loss is computed on
detached codes (it cannot move the encoder) and the generator loss with D's parameters detached
(torch.func.functional_call; it cannot move D). text-autoencoders gives D an Adam of its own with the
model's learning rate and betas (0.5, 0.999), the betas of its autoencoder's Adam too. Adam is
per-parameter, so one fairseq Adam over both is those two optimisers whenever the betas, learning rate
and schedule are the same: pass ``--adam-betas '(0.5, 0.999)'`` to train as they do. What differs is
that ``--clip-norm`` clips the norm of all gradients, D's included, and that an lr schedule applies to
D as well. fairseq's composite optimiser (a separate optimiser per parameter group) would lift that, but
it is configured only through hydra files and refuses ``--groups`` on the command line: one optimiser
keeps ``fairseq-train`` commands the same for every flavour.

D's loss enters the backward pass with value zero (``loss_d - loss_d.detach()``): the logged and
validated loss is the autoencoder's objective, cross-entropy + lambda * generator loss (+ the LAAE
term), as text-autoencoders reports it, and D's loss is logged on its own.

Weights: the plugin weighs a per-sentence penalty against the per-token mean cross-entropy (eq. 4 of
the WAE paper); text-autoencoders weighs it against the cross-entropy summed over a sentence's words.
Their ``--lambda_adv 10`` and ``--lambda_p 0.01`` are about ``--adversarial-lambda 10/T`` and
``--logvar-l1 0.01/T`` here, T the mean number of tokens per sentence (SNLI: about 11).
"""
from dataclasses import dataclass, field
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.criterions import register_criterion
from omegaconf import II
from torch import Tensor
from torch.func import functional_call

from fairseq_wae.criterions.ae_cross_entropy import AutoencoderCrossEntropyConfig, AutoencoderCrossEntropyCriterion
from fairseq_wae.errors import Refusal
from fairseq_wae.latent_space import GAUSSIAN_SUMMED_STATISTICS, gaussian_posterior_stats
from fairseq_wae.options import check_non_negative


@dataclass
class AdversarialAutoencoderConfig(AutoencoderCrossEntropyConfig):
    adversarial_lambda: float = field(
        default=1.0, metadata={"help": "weight of the generator loss against the per-token cross-entropy "
                                       "(text-autoencoders' lambda_adv, divided by the tokens per sentence)"}
    )
    discriminator_dim: int = field(
        default=512, metadata={"help": "hidden units of the latent discriminator (text-autoencoders' dim_d)"}
    )
    logvar_l1: float = field(
        default=0.0, metadata={"help": "LAAE: weight of |log sigma^2| summed over z's dimensions (Gaussian heads)"}
    )
    # the discriminator reads z: it is built with the criterion, before the first batch
    latent_dim: int = II("model.latent_dim")


def latent_discriminator(latent_dim: int, hidden: int) -> nn.Module:
    """text-autoencoders' D, without its final sigmoid: the logit that a code was drawn from the prior."""
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))


@register_criterion("aae", dataclass=AdversarialAutoencoderConfig)
class AdversarialAutoencoderCriterion(AutoencoderCrossEntropyCriterion):
    sentence_mean_metrics = AutoencoderCrossEntropyCriterion.sentence_mean_metrics + (
        "adversarial", "adversarial_weight", "weighted_adversarial", "discriminator_loss", "discriminator_accuracy",
        "logvar_l1", "posterior_var")
    summed_statistics = GAUSSIAN_SUMMED_STATISTICS

    def __init__(self, task, cfg: AdversarialAutoencoderConfig):
        super().__init__(task, cfg)
        check_non_negative("adversarial-lambda", cfg.adversarial_lambda)
        check_non_negative("logvar-l1", cfg.logvar_l1)
        if cfg.discriminator_dim < 1:
            raise Refusal(f"--discriminator-dim must be at least 1, got {cfg.discriminator_dim}")
        self.adversarial_lambda = cfg.adversarial_lambda
        self.logvar_weight = cfg.logvar_l1
        self.latent_dim = int(cfg.latent_dim)
        self.discriminator = latent_discriminator(self.latent_dim, cfg.discriminator_dim)

    def check_model(self, model) -> None:
        if model.latent_dim != self.latent_dim:
            raise Refusal(f"--criterion aae built its discriminator for {self.latent_dim}-dimensional codes, but the "
                          f"model's z has {model.latent_dim}: build the criterion from the model's config "
                          "(model.latent_dim)")
        if self.logvar_weight > 0 and not model.is_gaussian:
            raise Refusal("--logvar-l1 (the LAAE) penalises a Gaussian head's log-variance: use --arch "
                          "lstm_aae_paper or transformer_aae_small, or --latent-head gaussian")

    def discriminate(self, z: Tensor, train_discriminator: bool) -> Tensor:
        """D's logits for ``z``, in float32 whatever the precision D's parameters are kept in. With
        ``train_discriminator`` False D's parameters are detached: the result trains only what made z."""
        parameters = {name: (p if train_discriminator else p.detach()).float()
                      for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, parameters, (z,)).squeeze(-1)

    def latent_penalty(self, model, latent: Dict[str, Tensor], sample) -> Tuple[Tensor, Dict[str, Tensor]]:
        z = latent["z"]
        if self.discriminator[0].weight.device != z.device:
            # fairseq-train moves the criterion with the model; fairseq-validate moves the model alone
            self.discriminator.to(z.device)
        prior = torch.randn(z.shape, generator=self.random_generator(z.device, "prior"), device=z.device,
                            dtype=z.dtype)
        # D's game, on detached codes: posterior codes are labelled 0, prior samples 1
        fake_logits, real_logits = self.discriminate(torch.cat([z.detach(), prior]), True).split(z.size(0))
        discriminator_loss = (F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                              + F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)))
        # the encoder's game against a fixed D: the non-saturating loss -log D(z)
        generator_logits = self.discriminate(z, False)
        adversarial = F.binary_cross_entropy_with_logits(generator_logits, torch.ones_like(generator_logits))
        penalty = self.adversarial_lambda * adversarial
        accuracy = torch.cat([fake_logits < 0, real_logits > 0]).float().mean()
        logs = {"adversarial": adversarial.detach(),
                "adversarial_weight": torch.full_like(adversarial, self.adversarial_lambda).detach(),
                "weighted_adversarial": penalty.detach(), "discriminator_loss": discriminator_loss.detach(),
                "discriminator_accuracy": accuracy.detach()}
        if model.is_gaussian:
            logs.update(gaussian_posterior_stats(latent))
            logvar_l1 = latent["logvar"].abs().sum(-1).mean()
            logs["logvar_l1"] = logvar_l1.detach()
            if self.logvar_weight > 0:
                penalty = penalty + self.logvar_weight * logvar_l1
        # D's gradient without D's loss in the reported value (see the module's docstring)
        return penalty + (discriminator_loss - discriminator_loss.detach()), logs
