"""Fits a density to a trained model's codes of its training split: a prior to sample from instead of N(0, I).

    fairseq-wae-fit-prior --checkpoint work/ckpt/checkpoint_last.pt --data data/snli --density gmm \\
        --out work/priors/dae.gmm.pt [--components K]

Every sentence of the training split (as training read it: --max-sentence-len applies) is encoded, in
batches, to its code (the posterior mean for a Gaussian head). A share of the codes, drawn with
--seed, is held out; the density is fitted to the others: ``gaussian`` (one full-covariance Gaussian),
``gmm`` (scikit-learn's GaussianMixture, full covariances, --components K or the K of 1, 2, 4, 8, 16 with
the best held-out likelihood), ``flow`` (a zuko affine coupling flow, MAF with two passes, --flow-steps Adam
steps). The file (fairseq_wae/fitted_prior.py) records the model (its dictionary's fingerprint, latent
size), the split and its sha256, and the held-out log-likelihood per code beside N(0, I)'s, printed too.
Use it with ``fairseq-generate --task prior_sampling --prior-file FILE`` or ``fairseq-wae-export --prior FILE``.
"""
import argparse
import logging
import math
import os
import time

import torch

from fairseq_wae.errors import Refusal, command
from fairseq_wae.fitted_prior import (DENSITIES, FORMAT, VERSION, FittedPrior, build_flow, save_prior,
                                      standard_normal_log_prob)

logger = logging.getLogger(__name__)

HELD_OUT_SHARE = 0.1
#: the numbers of components tried when --components is not given (those below the codes fitted). Not 32 or
#: 64: an EM run of 64 full 100-d covariances over 20k codes takes tens of minutes on 2 cores (--components K
#: fits any K)
CANDIDATE_COMPONENTS = (1, 2, 4, 8, 16)
#: added to every covariance, times the codes' mean variance: keeps each factor positive definite
COVARIANCE_FLOOR = 1e-6
#: what is added instead when there are no more codes than dimensions, whose covariance is singular
SHRINKAGE = 1e-2


class FitError(Refusal):
    """Codes or flags a density cannot be fitted to: the message names them."""


def training_codes(checkpoint: str, data: str, batch_size: int):
    """(the codes of every sentence of ``data``'s training split, the interface): through the Python
    interface's batched encoder, which refuses a folder whose dictionary is not the model's."""
    from fairseq_wae.models.hub_interface import from_checkpoint

    autoencoder = from_checkpoint(checkpoint, data)
    autoencoder.task.load_dataset("train")
    sentences = autoencoder.task.dataset("train").src
    ids = [sentences[i] for i in range(len(sentences))]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # batches of similar lengths pad little
    codes = autoencoder.encode_token_ids([ids[i] for i in order], batch_size).double()
    unsorted = torch.empty_like(codes)
    unsorted[torch.tensor(order)] = codes
    return unsorted, autoencoder


def check_codes(codes: torch.Tensor, checkpoint: str) -> None:
    bad = (~torch.isfinite(codes).all(1)).nonzero().flatten().tolist()
    if bad:
        raise FitError(f"{checkpoint} encodes {len(bad)} of {len(codes)} training sentences to NaN or infinite codes "
                       f"(sentence {bad[0] + 1} first): the model is broken; no density can be fitted to them")
    if len(codes) < 4:
        raise FitError(f"the training split has {len(codes)} sentences: at least 4 codes are needed (some held out)")


def split_codes(codes: torch.Tensor, seed: int):
    """(codes fitted, codes held out): a share chosen by ``seed``."""
    order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))
    held = max(1, round(HELD_OUT_SHARE * len(codes)))
    return codes[order[held:]], codes[order[:held]]


def covariance_regularisation(codes: torch.Tensor, notes: list) -> float:
    """What is added to each covariance's diagonal: a floor, or, with no more codes than dimensions
    (a singular covariance), a shrinkage that is said so."""
    scale = float(codes.var(0).mean()) or 1.0
    if len(codes) <= codes.size(1):
        notes.append(f"{len(codes)} codes fitted for {codes.size(1)} dimensions: the covariance is singular, so "
                     f"{SHRINKAGE:g} x their mean variance ({SHRINKAGE * scale:.3g}) is added to its diagonal")
        logger.warning(notes[-1])
        return SHRINKAGE * scale
    return COVARIANCE_FLOOR * scale


def fit_gaussian(codes: torch.Tensor, notes: list) -> dict:
    covariance = torch.cov(codes.T, correction=0).reshape(codes.size(1), codes.size(1))
    covariance += covariance_regularisation(codes, notes) * torch.eye(codes.size(1), dtype=codes.dtype)
    return {"weights": torch.ones(1, dtype=torch.float64), "means": codes.mean(0, keepdim=True),
            "scale_tril": torch.linalg.cholesky(covariance).unsqueeze(0)}


def fit_mixture(codes: torch.Tensor, components: int, seed: int, notes: list) -> dict:
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(components, covariance_type="full", reg_covar=covariance_regularisation(codes, notes),
                              max_iter=200, random_state=seed).fit(codes.numpy())
    if not mixture.converged_:
        notes.append(f"the EM of {components} components stopped at 200 iterations before converging")
    covariances = torch.from_numpy(mixture.covariances_)
    return {"weights": torch.from_numpy(mixture.weights_), "means": torch.from_numpy(mixture.means_),
            "scale_tril": torch.linalg.cholesky(covariances)}


def held_out_log_likelihood(density: dict, held_out: torch.Tensor) -> float:
    return float(FittedPrior({**density, "latent_dim": held_out.size(1)}).log_prob(held_out).mean())


def fit_gmm(fitted: torch.Tensor, held_out: torch.Tensor, components, seed: int, notes: list) -> dict:
    """The mixture of ``components``, or of the candidate K with the best held-out likelihood (the search
    stops at the first K worse than the best so far)."""
    if components is not None:
        if components > len(fitted):
            raise FitError(f"--components {components} is more than the {len(fitted)} codes fitted (the training "
                           f"split's {len(fitted) + len(held_out)} less {len(held_out)} held out): choose at most "
                           f"{len(fitted)}, or leave --components out to choose K by held-out likelihood")
        return {**fit_mixture(fitted, components, seed, notes), "density": "gmm"}
    best, scores = None, {}
    for k in (k for k in CANDIDATE_COMPONENTS if k <= len(fitted) // 2):
        density = fit_mixture(fitted, k, seed, notes)
        scores[k] = held_out_log_likelihood({**density, "density": "gmm"}, held_out)
        logger.info(f"{k} components: held-out log-likelihood {scores[k]:.3f} per code")
        if best is not None and scores[k] < scores[best[0]]:
            break
        if best is None or scores[k] > scores[best[0]]:
            best = (k, density)
    notes.append("components chosen by held-out log-likelihood per code: "
                 + ", ".join(f"K={k}: {v:.3f}" for k, v in scores.items()))
    return {**best[1], "density": "gmm"}


def fit_flow(fitted: torch.Tensor, steps: int, seed: int, notes: list, batch_size: int = 512) -> dict:
    """A zuko masked autoregressive flow of affine coupling layers (passes=2: fast both ways; its spline flow,
    NSF, was 13 times slower a step and 20 times slower to sample, measured), trained on the codes standardised
    per dimension by maximum likelihood for ``steps`` Adam steps on batches drawn with ``seed``. A tenth of
    the codes (at most 10,000) is kept aside: the weights kept are those of the check, every 50 steps,
    with the best likelihood there (a flow overfits a few codes within a few hundred steps)."""
    shift, scale = fitted.mean(0), fitted.std(0).clamp_min(1e-6)
    arguments = {"class": "MAF", "features": fitted.size(1), "transforms": 3, "passes": 2,
                 "hidden_features": [128, 128]}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        flow = build_flow(arguments)
    data = ((fitted - shift) / scale).float()
    aside = min(10_000, max(1, len(data) // 10))
    checked, data = data[:aside], data[aside:]  # already in a random order
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(seed)
    best = (-math.inf, None, 0)
    for step in range(1, steps + 1):
        flow.train()
        batch = data[torch.randint(len(data), (min(batch_size, len(data)),), generator=batches)]
        loss = -flow().log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        optimizer.step()
        if step % 50 == 0 or step == steps:
            with torch.no_grad():
                score = float(flow.eval()().log_prob(checked).mean())
            if score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in flow.state_dict().items()}, step)
    notes.append(f"flow: the weights of step {best[2]} of {steps}, the best on {aside:,} codes kept aside from the fit")
    return {"density": "flow", "flow_arguments": arguments, "shift": shift, "scale": scale, "flow_state": best[1]}


def fit_density(codes: torch.Tensor, density: str, components=None, flow_steps: int = 2000, seed: int = 1,
                max_fit_codes=None) -> dict:
    """The record of a prior file but the model's identity: the density fitted to ``codes`` (held out
    as :func:`split_codes` says), its held-out log-likelihood per code beside N(0, I)'s, and notes."""
    fitted, held_out = split_codes(codes, seed)
    notes = []
    if max_fit_codes is not None and len(fitted) > max_fit_codes:
        notes.append(f"fitted to a random subsample of {max_fit_codes:,} of the {len(fitted):,} codes not held out")
        fitted = fitted[:max_fit_codes]  # already in a random order
    fitted, held_out = fitted.double(), held_out.double()
    started = time.time()
    if density == "gaussian":
        record = {**fit_gaussian(fitted, notes), "density": "gaussian"}
    elif density == "gmm":
        record = fit_gmm(fitted, held_out, components, seed, notes)
    else:
        record = fit_flow(fitted, flow_steps, seed, notes)
    record.update(format=FORMAT, version=VERSION, latent_dim=codes.size(1), codes=len(codes), fitted_codes=len(fitted),
                  held_out_codes=len(held_out), seed=seed, fit_seconds=round(time.time() - started, 1), notes=notes)
    record["held_out_log_likelihood"] = float(FittedPrior(record).log_prob(held_out).mean())
    record["held_out_log_likelihood_standard_normal"] = float(standard_normal_log_prob(held_out).mean())
    for key in ("weights", "means", "scale_tril"):  # the sampler's precision; the fit's was float64
        if key in record:
            record[key] = record[key].double()
    return record


def fit_prior(checkpoint: str, data: str, density: str, out: str, components=None, flow_steps: int = 2000,
              seed: int = 1, batch_size: int = 256, max_fit_codes=None) -> dict:
    """Encodes, fits and writes the prior file ``out`` (see the module's docstring); returns its record."""
    from fairseq_wae.checkpoint_utils import check_checkpoint_file
    from fairseq_wae.preprocess.manifest import sha256_of

    if density not in DENSITIES:
        raise FitError(f"--density must be one of {', '.join(DENSITIES)}, got {density!r}")
    if components is not None and (density != "gmm" or components < 1):
        raise FitError(f"--components {components}: give a number >= 1, and only with --density gmm")
    if density == "flow" and flow_steps < 1:
        raise FitError(f"--flow-steps must be at least 1, got {flow_steps}")
    if os.path.isdir(out):
        raise FitError(f"--out {out} is a folder: give the prior file to write")
    check_checkpoint_file(checkpoint)
    if density == "flow":
        build_flow({"class": "MAF", "features": 2})  # zuko is there, before the encoding
    codes, autoencoder = training_codes(checkpoint, data, batch_size)
    check_codes(codes, checkpoint)
    record = fit_density(codes, density, components, flow_steps, seed, max_fit_codes)
    fingerprint = autoencoder.model.dictionary_binding.fingerprint
    split = os.path.join(data, "train.bin")
    record.update(dictionary_sha256=fingerprint["sha256"], dictionary_size=fingerprint["size"],
                  checkpoint=os.path.abspath(checkpoint), checkpoint_sha256=sha256_of(checkpoint),
                  data=os.path.abspath(data), split="train", split_sha256=sha256_of(split))
    save_prior(record, out)
    return record


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--checkpoint", required=True, help="a fairseq-train checkpoint, or an export's model.pt")
    parser.add_argument("--data", required=True, help="the data folder it was trained on (its training split is encoded)")
    parser.add_argument("--density", required=True, choices=DENSITIES)
    parser.add_argument("--out", required=True, help="the prior file to write")
    parser.add_argument("--components", type=int, help="gmm: the number of components (default: chosen by held-out "
                                                        "likelihood among 1, 2, 4, 8, 16)")
    parser.add_argument("--flow-steps", type=int, default=2000, help="flow: Adam steps of 512 codes (default: %(default)s)")
    parser.add_argument("--max-fit-codes", type=int, help="fit to a random subsample of this many codes (default: all)")
    parser.add_argument("--batch-size", type=int, default=256, help="sentences encoded at a time")
    parser.add_argument("--seed", type=int, default=1, help="the held-out codes, the subsample, the fit's initialisation")
    args = parser.parse_args(argv)
    record = fit_prior(args.checkpoint, args.data, args.density, args.out, args.components, args.flow_steps,
                       args.seed, args.batch_size, args.max_fit_codes)
    for note in record["notes"]:
        print(f"note: {note}")
    gain = record["held_out_log_likelihood"] - record["held_out_log_likelihood_standard_normal"]
    print(f"{args.out}: {FittedPrior(record).describe()}, fitted to {record['fitted_codes']:,} codes in "
          f"{record['fit_seconds']} s; held-out log-likelihood per code {record['held_out_log_likelihood']:.3f} nats "
          f"(N(0, I): {record['held_out_log_likelihood_standard_normal']:.3f}, {gain:+.3f}) over "
          f"{record['held_out_codes']:,} codes")
    if not math.isfinite(gain):
        logger.warning("the held-out log-likelihood is not finite")


if __name__ == "__main__":
    main()
