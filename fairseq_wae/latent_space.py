"""Diagnostics of the latent space.

For Gaussian heads (He et al. 2019; Li et al. 2019; Burda et al. 2016) these take the model in eval
mode and the encoder's inputs from the Python interface
(:meth:`fairseq_wae.models.hub_interface.AutoencoderHubInterface.batches`); results are per sentence, in nats. For
any head, code_spectrum, blend_toward_prior and gaussian_fit_sample compare encoded codes with the prior
N(0, I) the samples come from (used by scripts/latent_coverage.py), and :func:`prior_codes` draws those
samples' codes (for ``--task prior_sampling`` and the Python interface alike).
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from fairseq_wae.errors import Refusal
from fairseq_wae.models.latent import reparameterize
from fairseq_wae.penalties import gaussian_kl
from fairseq_wae.seeding import keyed_draws


def log_normal(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mean, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (((z - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


def mutual_information(mean: Tensor, logvar: Tensor, generator=None) -> float:
    """I(x; z) under q(z|x) p_data(x), with q(z) estimated by the mixture of the batch's posteriors
    (He et al. 2019): E_x E_q[log q(z|x)] - E_q(z)[log q(z)]."""
    n, dim = mean.shape
    negative_entropy = (-0.5 * dim * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = reparameterize(mean, logvar, generator)
    log_density = log_normal(z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))  # [z of x_i, posterior j]
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(n)
    return (negative_entropy - log_qz.mean()).item()


#: Burda et al. (2016): a dimension is active when its posterior mean varies over the data by more.
ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(mean: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies over the data by more than ``threshold``."""
    return int((mean.var(dim=0) > threshold).sum().item())


def active_units_from_sums(mean_sum: Tensor, mean_square_sum: Tensor, count) -> Optional[float]:
    """:func:`active_units` from per-dimension sums of the posterior means and of their squares over
    ``count`` sentences: statistics that add up over micro-batches and workers, so that one process,
    ``--update-freq N`` and N workers count the same units. None for fewer than two sentences."""
    count = float(count)
    if count < 2:
        return None
    mean_sum, mean_square_sum = torch.as_tensor(mean_sum).double(), torch.as_tensor(mean_square_sum).double()
    variance = (mean_square_sum - mean_sum.pow(2) / count) / (count - 1)
    return float((variance > ACTIVE_UNIT_THRESHOLD).sum())


#: The keys of :func:`gaussian_posterior_stats` that are sums to be added up, not sentence means.
GAUSSIAN_SUMMED_STATISTICS = ("latent_mean_sum", "latent_mean_square_sum")


def gaussian_posterior_stats(latent: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """What the criterions log of a batch's q(z|x), as tensors: the mean posterior variance (a sentence
    mean), and the per-dimension sums from which :func:`active_units_from_sums` counts active units."""
    mean = latent["mean"].detach().double()
    return {"posterior_var": latent["logvar"].detach().exp().mean(),
            "latent_mean_sum": mean.sum(0), "latent_mean_square_sum": mean.pow(2).sum(0)}


@torch.no_grad()
def sentence_log_likelihood(model, tokens: Tensor, lengths: Tensor, z: Tensor, eos: int, pad: int) -> Tensor:
    """log p(x | z) per sentence, teacher-forced."""
    target = tokens
    prev = torch.cat([torch.full_like(tokens[:, :1], eos), tokens[:, :-1]], dim=1).masked_fill(tokens.eq(pad), pad)
    logits, _ = model.decoder(prev, {"z": z})
    lprobs = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return lprobs.masked_fill(target.eq(pad), 0.0).sum(-1)


@torch.no_grad()
def evaluate_latent_space(model, task, batches: List, num_importance_samples: int = 50, seed: int = 1) -> Dict:
    """KL(q(z|x)||p(z)), MI, active units and importance-weighted NLL/PPL over the sentences."""
    dictionary = task.source_dictionary
    generator = torch.Generator().manual_seed(seed)
    means, logvars, kls, iw_nll, words = [], [], [], [], 0
    for tokens, lengths in batches:
        latent = model.encoder(tokens, lengths)
        mean, logvar = latent["mean"].double(), latent["logvar"].double()
        means.append(mean)
        logvars.append(logvar)
        kls.append(gaussian_kl(mean, logvar).sum(-1))
        log_weights = []
        for _ in range(num_importance_samples):
            z = reparameterize(mean, logvar, generator)
            log_px_z = sentence_log_likelihood(model, tokens, lengths, z.float(), dictionary.eos(), dictionary.pad())
            log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
            log_weights.append(log_px_z.double() + log_pz - log_normal(z, mean, logvar))
        iw_nll.append(-(torch.logsumexp(torch.stack(log_weights), 0) - math.log(num_importance_samples)))
        words += int(lengths.sum())  # EOS included, as in the LM metrics
    mean, logvar = torch.cat(means), torch.cat(logvars)
    nll = torch.cat(iw_nll)
    return {
        "kl": torch.cat(kls).mean().item(),
        "mutual_information": mutual_information(mean, logvar, generator),
        "active_units": active_units(mean),
        "iw_nll_per_sentence": nll.mean().item(),
        "iw_ppl": math.exp(nll.sum().item() / words),
        "importance_samples": num_importance_samples,
        "sentences": int(mean.size(0)),
    }


def code_spectrum(z: Tensor) -> Dict[str, float]:
    """How codes fill the latent space, against N(0, I), whose mean is 0 and covariance eigenvalues 1.

    The norm of their mean, the eigenvalues of their covariance (smallest, median, largest, sum) and
    the participation ratio (sum of eigenvalues)^2 / (sum of squared eigenvalues), the number of
    dimensions the codes effectively spread over (the latent size for N(0, I)).
    """
    if z.dim() != 2 or z.size(0) < 2:
        raise Refusal(f"need at least two codes as rows of a matrix, got shape {tuple(z.shape)}")
    z = z.double()
    eigenvalues = torch.linalg.eigvalsh(torch.cov(z.T))
    return {
        "codes": int(z.size(0)),
        "mean_norm": z.mean(0).norm().item(),
        "eigenvalue_min": eigenvalues.min().item(),
        "eigenvalue_median": eigenvalues.median().item(),
        "eigenvalue_max": eigenvalues.max().item(),
        "eigenvalue_sum": eigenvalues.sum().item(),
        "participation_ratio": (eigenvalues.sum() ** 2 / (eigenvalues**2).sum()).item(),
    }


def blend_toward_prior(z: Tensor, weight: float, generator=None) -> Tensor:
    """sqrt(1 - s^2) z + s eps with eps ~ N(0, I): s = 0 keeps the codes, s = 1 is a prior sample.

    Were the codes N(0, I)-distributed, so would every blend be: the blends walk from where the decoder
    was trained to where prior samples land without leaving the prior's scale.
    """
    if not 0.0 <= weight <= 1.0:
        raise Refusal(f"the blend weight s must be in [0, 1], got {weight}")
    noise = torch.randn(z.shape, generator=generator, dtype=z.dtype)
    return math.sqrt(1.0 - weight * weight) * z + weight * noise


def gaussian_fit_sample(z: Tensor, num_samples: int, generator=None) -> Tensor:
    """``num_samples`` draws from N(mean(z), cov(z)): what prior samples would be if the codes' first two
    moments were all that the prior had to match."""
    mean = z.double().mean(0)
    covariance = torch.cov(z.double().T)
    jitter = 1e-6 * covariance.diagonal().mean() * torch.eye(len(mean), dtype=mean.dtype)
    factor = torch.linalg.cholesky(covariance + jitter)
    noise = torch.randn(num_samples, len(mean), generator=generator, dtype=mean.dtype)
    return (mean + noise @ factor.T).to(z.dtype)


def prior_codes(ids: Sequence[int], latent_dim: int, seed: int, temperature: float,
                dtype: torch.dtype = torch.float32, what: str = "--latent-temperature", prior=None) -> torch.Tensor:
    """The code of each sample index i of ``ids``, made of draws from a generator seeded by (seed, i)
    (:func:`keyed_draws`), in float32: z_i ~ N(0, temperature^2 I), or with a fitted ``prior``
    (:class:`fairseq_wae.fitted_prior.FittedPrior`) the same unit draws scaled by ``temperature``
    around that density. Refused, naming the option ``what``, when a code does not fit in ``dtype``
    (the model's): fairseq's search would fail on the infinite scores with an AssertionError."""
    unit, uniform = keyed_draws(ids, latent_dim, seed)
    exact = temperature * unit.double() if prior is None else prior.transform(unit, uniform, temperature)
    codes = temperature * unit if prior is None else exact.float()
    if not torch.isfinite(codes.to(dtype)).all():
        raise Refusal(f"{what} {temperature:g} draws codes beyond the range of the model's {dtype} (|z| up to "
                      f"{float(exact.abs().max()):.3g}, the largest it holds is "
                      f"{torch.finfo(dtype).max:.3g}): choose a smaller temperature")
    return codes
