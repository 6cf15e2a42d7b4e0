"""What the page's routes run: each request, once checked (``limits``), goes through the Python
interface of the one model being explored, so the page shows what ``from_pretrained(...)`` gives for the
same input and seed:

- reconstruct: ``model.reconstruct(sentences, beam, **search)``; with sampling, after
  ``torch.manual_seed(seed)`` (the interface samples from torch's generator, as fairseq does)
- interpolate: ``model.interpolate(start, end, steps, method, **search)``, likewise
- sample: ``model.sample(n, seed, latent_temperature, beam, **search)``
- neighbours: ``model.nearest(sentence, corpus, k)``, with the corpus encoded once (``model.encode``)
  rather than at every request: the same codes, the same distances
- map: the corpus's codes and ``model.prior_codes(n, seed, T)`` (whose sentences are ``model.sample``'s)
  projected to 2-D by PCA (or t-SNE / UMAP when installed)

The model runs one request at a time (a lock): torch's generator, which sampling seeds, is global, and
the requests of a page are short.
"""
import contextlib
import importlib.util
import logging
import os
import threading
from typing import Dict, List, Optional

import torch

from fairseq_wae.explore import limits
from fairseq_wae.explore.limits import InputError

logger = logging.getLogger(__name__)


def pca_axes(codes: torch.Tensor):
    """(mean, the 2 principal axes as rows, the share of the variance along each) of ``codes``: each
    axis's sign is fixed (its largest component positive), so the same codes always give the same map."""
    mean = codes.mean(0)
    centred = (codes - mean).double()
    _, singular, axes = torch.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    if axes.size(0) < 2:  # a single code, or a 1-d latent space: the second axis is flat
        axes = torch.cat([axes, torch.zeros(2 - axes.size(0), codes.size(1), dtype=axes.dtype)])
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    variance = singular.pow(2)
    share = (variance[:2] / variance.sum().clamp_min(1e-12)).tolist()
    return mean.double(), axes, share + [0.0] * (2 - len(share))


def projection_methods() -> List[str]:
    """PCA always; t-SNE with scikit-learn, UMAP with umap-learn, when installed."""
    methods = ["pca"]
    if importlib.util.find_spec("sklearn") is not None:
        methods.append("tsne")
    if importlib.util.find_spec("umap") is not None:
        methods.append("umap")
    return methods


def embed_2d(codes: torch.Tensor, method: str) -> torch.Tensor:
    """t-SNE or UMAP coordinates of ``codes`` (fitted on them all, with a fixed random state)."""
    array = codes.double().numpy()
    if method == "tsne":
        from sklearn.manifold import TSNE

        coordinates = TSNE(n_components=2, init="pca", random_state=0,
                           perplexity=min(30.0, max(1.0, (len(array) - 1) / 3))).fit_transform(array)
    else:
        import umap

        coordinates = umap.UMAP(n_components=2, random_state=0).fit_transform(array)
    return torch.as_tensor(coordinates, dtype=torch.float64)


class ExploreService:
    """One model's interface and corpus, and what the page asks of them (dicts, ready for JSON)."""

    def __init__(self, model, corpus: Optional[List[str]] = None, card: Optional[Dict] = None):
        """``model``: what ``from_pretrained`` returned; ``corpus``: at most ``MAP_LIMIT`` sentences, for the
        map and the neighbours, encoded here (refused, naming the sentence, when one cannot be)."""
        self.model = model
        self.corpus = list(corpus or [])
        self.card = card or {}
        self._lock = threading.Lock()
        self._maps: Dict[tuple, Dict] = {}
        self._maps_lock = threading.Lock()
        if len(self.corpus) > limits.MAP_LIMIT:
            raise ValueError(f"the corpus has {len(self.corpus):,} sentences: at most {limits.MAP_LIMIT:,}")
        self.corpus_codes = model.encode(self.corpus, what="--corpus").cpu() if self.corpus else None
        self._pca = pca_axes(self.corpus_codes.double()) if self.corpus else None

    @contextlib.contextmanager
    def _model_turn(self, seed: Optional[int] = None):
        """The model, for this request alone; with ``seed``, torch's generator seeded as by
        ``torch.manual_seed(seed)`` and restored afterwards."""
        with self._lock:
            if seed is None:
                yield self.model
                return
            devices = [self.model.device] if self.model.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                yield self.model

    # -- the routes --------------------------------------------------------------------------------

    def reconstruct(self, body: Dict) -> Dict:
        sentences = limits.sentences(body, "sentences")
        beam, search, seed = limits.search(body)
        with self._model_turn(seed) as model:
            reconstructions = model.reconstruct(sentences, beam=beam, **search)
        return {"sentences": sentences, "reconstructions": reconstructions}

    def interpolate(self, body: Dict) -> Dict:
        start, end = limits.sentence(body, "start"), limits.sentence(body, "end")
        steps = limits.integer(body, "steps", 8, 2, limits.MAX_STEPS)
        method = limits.choice(body, "method", limits.INTERPOLATIONS, "linear")
        beam, search, seed = limits.search(body)
        with self._model_turn(seed) as model:
            path = model.interpolate(start, end, steps=steps, method=method, beam=beam, **search)
        return {"start": start, "end": end, "method": method, "path": path}

    def sample(self, body: Dict) -> Dict:
        n = limits.integer(body, "n", 10, 1, limits.MAX_SAMPLES)
        seed = limits.integer(body, "seed", 1, 0, limits.LARGEST_SEED)
        latent_temperature = limits.positive_number(body, "latent_temperature", 1.0, maximum=100.0)
        beam, search, _ = limits.search(body)  # sample() seeds the search's draws with `seed` itself
        with self._model_turn() as model:
            samples = model.sample(n, seed=seed, latent_temperature=latent_temperature, beam=beam, **search)
        return {"n": n, "seed": seed, "latent_temperature": latent_temperature, "samples": samples}

    def neighbours(self, body: Dict) -> Dict:
        if not self.corpus:
            raise InputError("no corpus to search: start fairseq-wae-explore with --corpus FILE (one sentence a line)")
        sentence = limits.sentence(body, "sentence")
        k = limits.integer(body, "k", 5, 1, limits.MAX_NEIGHBOURS)
        with self._model_turn() as model:
            query = model.encode([sentence], what="sentence").cpu()
        # what model.nearest(sentence, corpus, k) computes, on the codes encoded at start-up
        distances = torch.cdist(query, self.corpus_codes).squeeze(0)
        order = distances.argsort()[:k].tolist()
        return {"sentence": sentence, "neighbours": [[self.corpus[i], distances[i].item()] for i in order]}

    def map(self, body: Dict) -> Dict:
        size = limits.integer(body, "size", min(len(self.corpus), limits.MAP_LIMIT), 0, limits.MAP_LIMIT)
        size = min(size, len(self.corpus))
        prior = limits.integer(body, "prior", 0 if self.corpus else 200, 0, limits.MAX_MAP_PRIOR)
        seed = limits.integer(body, "seed", 1, 0, limits.LARGEST_SEED)
        latent_temperature = limits.positive_number(body, "latent_temperature", 1.0, maximum=100.0)
        method = limits.choice(body, "method", projection_methods(), "pca")
        if size + prior == 0:
            raise InputError("the map is empty: ask for corpus codes (size) or prior samples (prior), or start "
                             "fairseq-wae-explore with --corpus FILE")
        key = (size, prior, seed, latent_temperature, method)
        with self._maps_lock:
            cached = self._maps.get(key)
        if cached is None:  # drawn outside the lock: a t-SNE of thousands of codes takes minutes
            cached = self._draw_map(size, prior, seed, latent_temperature, method)
            with self._maps_lock:
                if len(self._maps) >= 8:  # the last few maps asked for: a page redrawn, a second browser
                    self._maps.pop(next(iter(self._maps)))
                self._maps[key] = cached
        return cached

    def _draw_map(self, size: int, prior: int, seed: int, latent_temperature: float, method: str) -> Dict:
        codes = self.corpus_codes[:size].double() if size else torch.zeros(0, self.model.latent_dim, dtype=torch.float64)
        prior_sentences: List[str] = []
        if prior:
            with self._model_turn() as model:
                prior_codes = model.prior_codes(prior, seed=seed, latent_temperature=latent_temperature)
                prior_sentences = model.sample(prior, seed=seed, latent_temperature=latent_temperature)
            codes = torch.cat([codes, prior_codes.cpu().double()])
        if method == "pca":
            mean, axes, share = self._pca if self._pca is not None else pca_axes(codes)
            xy = (codes - mean) @ axes.T
            axis_titles = [f"PC{i + 1} ({100 * s:.0f}% of the variance)" for i, s in enumerate(share)]
        else:
            xy = embed_2d(codes, method)
            axis_titles = [f"{method} 1", f"{method} 2"]
        xy = xy.round(decimals=4).tolist()

        def points(rows, sentences):
            return {"x": [p[0] for p in rows], "y": [p[1] for p in rows], "text": sentences}

        return {"method": method, "axes": axis_titles, "corpus": points(xy[:size], self.corpus[:size]),
                "prior": points(xy[size:], prior_sentences), "seed": seed, "latent_temperature": latent_temperature}

    def describe(self) -> Dict:
        """The model card, what the page's settings may be, and the limits it checks."""
        return {**self.card, "corpus_sentences": len(self.corpus), "projection_methods": projection_methods(),
                "limits": {"sentence_chars": limits.MAX_SENTENCE_CHARS, "sentences": limits.MAX_SENTENCES,
                           "steps": limits.MAX_STEPS, "samples": limits.MAX_SAMPLES, "k": limits.MAX_NEIGHBOURS,
                           "map": limits.MAP_LIMIT, "map_prior": limits.MAX_MAP_PRIOR, "beam": limits.MAX_BEAM}}


def model_card(model, export_folder: Optional[str] = None) -> Dict:
    """What the page shows of the model: its architecture, criterion and sizes (from the config it was
    trained with) and, for a folder made by fairseq-wae-export, the model card written there (with the
    Table 1 row of its evaluation when the export was given one)."""
    cfg = model.cfg
    model_cfg, criterion = cfg.get("model") or {}, cfg.get("criterion") or {}
    settings = ", ".join(f"{k}={v}" for k, v in criterion.items() if k not in ("_name", "seed", "update_freq"))
    summary = [["architecture", str(model_cfg.get("_name"))],
               ["criterion", f"{criterion.get('_name')}" + (f" ({settings})" if settings else "")],
               ["latent code", f"{model.latent_dim} dimensions, "
                               f"{'Gaussian' if model.model.is_gaussian else 'deterministic'} encoder"],
               ["parameters", f"{sum(p.numel() for p in model.model.parameters()):,}"],
               ["vocabulary", f"{len(model.dictionary):,} tokens"]]
    text = ""
    if export_folder and os.path.isfile(os.path.join(export_folder, "export.json")):
        try:
            with open(os.path.join(export_folder, "README.md"), encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            logger.warning(f"no model card: {e}")
    return {"title": f"{model_cfg.get('_name')} trained with {criterion.get('_name')}", "summary": summary,
            "card": text}
