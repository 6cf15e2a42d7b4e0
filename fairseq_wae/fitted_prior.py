"""A density fitted to a trained model's codes, to sample from instead of N(0, I) (Ghosh et al. 2020).

``fairseq-wae-fit-prior`` (fairseq_wae/cli/fit_prior.py) fits it; this module stores, loads and samples
it with torch alone. The file is ``torch.save`` of a dict of tensors and plain values, read back
weights-only: no pickled scikit-learn or flow object, so loading it runs no code and needs neither
library. A Gaussian or a mixture is its weights, means and Cholesky factors; a flow (zuko's) is its
constructor's arguments and its state_dict, rebuilt on load (zuko is needed then, and only then).

Draws are keyed by (seed, sample index), as N(0, I)'s are (:func:`fairseq_wae.seeding.keyed_draws`):
the unit normal of sample i, scaled by the temperature, is moved onto the density (a mixture: the
component of the uniform of sample i, its mean kept, its Cholesky factor applied; a flow: its inverse
transform), so samples depend neither on batching nor on worker count.
"""
import math
import os
from typing import Dict, Optional

import torch
from torch import Tensor

from fairseq_wae.errors import MissingFile, Refusal

FORMAT = "fairseq-wae-prior"
VERSION = 1
DENSITIES = ("gaussian", "gmm", "flow")
#: the name of the prior in a model folder (fairseq-wae-export --prior): from_pretrained loads it
PRIOR_FILE = "prior.pt"
#: what a prior file's record holds besides the density's own tensors
IDENTITY_KEYS = ("format", "version", "density", "latent_dim", "dictionary_sha256", "dictionary_size")


class PriorError(Refusal):
    """A prior file that must not be used (unreadable, or fitted for another model): it is named."""


def mixture_log_prob(z: Tensor, weights: Tensor, means: Tensor, scale_tril: Tensor, rows: int = 4096) -> Tensor:
    """log sum_k w_k N(z; mu_k, L_k L_k^T) per row of ``z``, in float64, ``rows`` rows at a time."""
    means, scale_tril = means.double(), scale_tril.double()
    log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # [K]
    constant = weights.double().log() - log_det - 0.5 * z.size(-1) * math.log(2 * math.pi)
    out = []
    for chunk in z.double().split(rows):
        diff = chunk.unsqueeze(0) - means.unsqueeze(1)  # [K, n, D]
        solved = torch.linalg.solve_triangular(scale_tril, diff.transpose(1, 2), upper=False)  # [K, D, n]
        out.append(torch.logsumexp(constant.unsqueeze(1) - 0.5 * solved.pow(2).sum(1), dim=0))
    return torch.cat(out)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) per row."""
    z = z.double()
    return -0.5 * z.pow(2).sum(-1) - 0.5 * z.size(-1) * math.log(2 * math.pi)


def build_flow(arguments: Dict):
    """The zuko flow of ``arguments`` (its class name and constructor's keyword arguments)."""
    try:
        import zuko
    except ImportError:
        raise PriorError("this prior is a normalizing flow, which needs zuko: pip install 'fairseq-wae[prior]' "
                         "(or pip install zuko); Gaussian and mixture priors need nothing more") from None
    arguments = dict(arguments)
    kind = arguments.pop("class")
    return getattr(zuko.flows, kind)(**{k: tuple(v) if isinstance(v, list) else v for k, v in arguments.items()})


class FittedPrior:
    """A density over codes, as one prior file holds it (``record``: the dict torch.save wrote)."""

    def __init__(self, record: Dict, path: Optional[str] = None):
        self.record, self.path = record, path
        self.density, self.latent_dim = record["density"], int(record["latent_dim"])
        self._flow = None

    def __repr__(self):
        return f"FittedPrior({self.describe()})"

    def describe(self, with_path: bool = True) -> str:
        kind = {"gaussian": "one full-covariance Gaussian",
                "gmm": f"a mixture of {len(self.record.get('weights', []))} full-covariance Gaussians",
                "flow": f"a normalizing flow (zuko {self.record.get('flow_arguments', {}).get('class')})"}[self.density]
        return f"{kind} over {self.latent_dim}-d codes" + (f", {self.path}" if self.path and with_path else "")

    # -- the model it was fitted for -----------------------------------------------------------------

    def check_fits(self, model, what: str = "the model") -> None:
        """Refuses a model of another latent size or dictionary than the one the prior was fitted for,
        naming both."""
        fingerprint = getattr(getattr(model, "dictionary_binding", None), "fingerprint", None) or {}
        mine = (self.latent_dim, self.record["dictionary_sha256"])
        theirs = (int(model.latent_dim), fingerprint.get("sha256"))
        if mine != theirs:
            raise PriorError(
                f"the prior {self.path or ''} was fitted for a model with {self.latent_dim}-d codes and the "
                f"dictionary sha256 {self.record['dictionary_sha256'][:12]} ({self.record.get('checkpoint', '?')}), "
                f"but {what} has {theirs[0]}-d codes and the dictionary sha256 {str(theirs[1])[:12]}: fit a prior "
                "for this model with fairseq-wae-fit-prior")

    # -- density and samples ---------------------------------------------------------------------------

    def flow(self):
        """The flow rebuilt from its arguments and weights (once)."""
        if self._flow is None:
            flow = build_flow(self.record["flow_arguments"])
            flow.load_state_dict(self.record["flow_state"])
            self._flow = flow.eval()
        return self._flow

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) per row, in nats (float64)."""
        if self.density != "flow":
            return mixture_log_prob(z, self.record["weights"], self.record["means"], self.record["scale_tril"])
        shift, scale = self.record["shift"].double(), self.record["scale"].double()
        with torch.no_grad():
            inside = self.flow()().log_prob(((z.double() - shift) / scale).float()).double()
        return inside - scale.log().sum()

    def transform(self, unit: Tensor, uniform: Tensor, temperature: float) -> Tensor:
        """Codes from keyed draws: ``unit`` [n, D] of N(0, I), ``uniform`` [n] of U(0, 1), the noise
        scaled by ``temperature`` around the density (a mixture's means stay where they are)."""
        noise = temperature * unit.double()
        if self.density == "flow":
            with torch.no_grad():
                inside = self.flow()().transform.inv(noise.float()).double()
            return self.record["shift"].double() + self.record["scale"].double() * inside
        weights, means, scale_tril = (self.record[k].double() for k in ("weights", "means", "scale_tril"))
        edges = weights.cumsum(0)
        component = torch.searchsorted(edges / edges[-1], uniform.double().unsqueeze(-1)).squeeze(-1)
        component = component.clamp(max=len(weights) - 1)
        codes = torch.empty_like(noise)
        for k in component.unique().tolist():
            rows = component == k
            codes[rows] = means[k] + noise[rows] @ scale_tril[k].T
        return codes


def save_prior(record: Dict, path: str) -> None:
    """Writes ``record`` to ``path`` in one step (a temporary file beside it, then renamed): a reader
    sees the whole earlier file or the whole new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        torch.save(record, temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError when a write fails
        if os.path.exists(temporary):
            os.remove(temporary)
        raise PriorError(f"could not write the prior to {path} ({e}): nothing was written there") from None


def load_prior(path: str, what: str = "the prior file") -> FittedPrior:
    """The prior of a file fairseq-wae-fit-prior wrote, read weights-only; a missing, truncated or
    foreign file is refused, naming it."""
    if not os.path.isfile(path):
        raise MissingFile(f"{what} {path} does not exist: write it with fairseq-wae-fit-prior")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a pickled object, another format: torch raises many kinds
        raise PriorError(f"{what} {path} is not a readable prior file ({type(e).__name__}: {str(e)[:200]}): "
                         "truncated, or not written by fairseq-wae-fit-prior; fit it again") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or any(k not in record for k in IDENTITY_KEYS):
        raise PriorError(f"{what} {path} is a PyTorch file but not a prior written by fairseq-wae-fit-prior")
    if record["version"] != VERSION or record["density"] not in DENSITIES:
        raise PriorError(f"{what} {path} is a prior of version {record['version']} ({record['density']}), which "
                         f"this fairseq-wae (version {VERSION}: {', '.join(DENSITIES)}) cannot read")
    return FittedPrior(record, path)
