"""What the page's routes run: each request, once checked (``limits``, its cost included), goes through the
Python interface of the one model being explored, on the model's own thread (``worker``), so the page
shows what ``from_pretrained(...)`` gives for the same input and seed:

- reconstruct: ``model.reconstruct(sentences, beam, **search)``; with sampling, after
  ``torch.manual_seed(seed)`` (the interface samples from torch's generator, as fairseq does)
- interpolate: ``model.interpolate(start, end, steps, method, **search)``, likewise; given a map drawn
  before, its codes (``model.interpolation_codes``) placed on that map
- sample: ``model.sample(n, seed, latent_temperature, beam, prior=..., **search)``, ``prior_kind`` "normal"
  (N(0, I)) or, for a model folder that carries one (``prior.pt``), "fitted"
- neighbours: ``model.nearest(sentence, corpus, k)``, with the corpus encoded once (``model.encode``)
  rather than at every request: the same codes, the same distances
- map: the corpus's codes and ``model.prior_codes(n, seed, T, prior=...)`` (whose sentences are ``model.sample``'s)
  projected to 2-D by PCA (or t-SNE / UMAP when installed)

Decoding takes the page's ``max_len`` as fairseq-generate's ``max_len_b`` (with ``max_len_a=0``; 30 unless
asked): what bounds a request's cost. Each route returns a future of its answer (a dict, ready for JSON):
the model runs one request at a time on one thread, as torch's generator, which sampling seeds, is global.
"""
import contextlib
import importlib.util
import logging
import os
import threading
from concurrent.futures import Future
from typing import Dict, List, Optional

import torch

from fairseq_wae.explore import limits
from fairseq_wae.explore.limits import InputError
from fairseq_wae.explore.worker import ModelWorker

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
    """One model's interface and corpus, and what the page asks of them."""

    def __init__(self, model, corpus: Optional[List[str]] = None, card: Optional[Dict] = None):
        """``model``: what ``from_pretrained`` returned; ``corpus``: at most ``MAP_LIMIT`` sentences, for the
        map and the neighbours, encoded here (refused, naming the sentence, when one cannot be)."""
        self.model = model
        self.corpus = list(corpus or [])
        self.card = card or {}
        self.worker = ModelWorker()
        self._maps: Dict[str, Dict] = {}  # the last few maps drawn: their answers and how to place codes on them
        self._maps_lock = threading.Lock()
        generation = model.cfg.generation
        #: the most tokens the page may ask a decoded sentence to have: the model's own (fairseq-generate's
        #: max_len_a * 1 + max_len_b, as a code is decoded from a one-token source)
        self.length = max(1, int(generation.max_len_a + generation.max_len_b))
        if len(self.corpus) > limits.MAP_LIMIT:
            raise ValueError(f"the corpus has {len(self.corpus):,} sentences: at most {limits.MAP_LIMIT:,}")
        self.corpus_codes = model.encode(self.corpus, what="--corpus").cpu() if self.corpus else None
        self._pca = pca_axes(self.corpus_codes.double()) if self.corpus else None
        fitted = model.fitted_prior
        #: the priors the page may sample from, and what the page says of each
        self.priors = {"normal": "N(0, I)",
                       **({"fitted": f"the fitted prior ({fitted.describe(with_path=False)})"} if fitted else {})}

    def _prior_kind(self, body: Dict) -> str:
        """The prior a request samples from: "normal" unless asked; "fitted" only for a model that carries one."""
        kind = limits.choice(body, "prior_kind", ("normal", "fitted"), "normal")
        if kind not in self.priors:
            raise InputError("prior_kind 'fitted': this model carries no fitted prior (its folder holds no prior.pt): "
                             "fit one with fairseq-wae-fit-prior and export the model with --prior FILE")
        return kind

    @contextlib.contextmanager
    def _seeded(self, seed: Optional[int]):
        """With ``seed``, torch's generator seeded as by ``torch.manual_seed(seed)`` and restored afterwards."""
        if seed is None:
            yield
            return
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # -- the routes: each checks its fields here, then returns the future of the model's work ---------

    def reconstruct(self, body: Dict) -> Future:
        sentences = limits.sentences(body, "sentences")
        beam, search, seed, length = limits.search(body, self.length)
        limits.decoding_cost("reconstruct", len(sentences), beam, length)

        def job():
            with self._seeded(seed):
                reconstructions = self.model.reconstruct(sentences, beam=beam, **search)
            return {"sentences": sentences, "reconstructions": reconstructions,
                    "unknown": [unknown_words(self.model, s) for s in sentences]}

        return self.worker.submit(job)

    def interpolate(self, body: Dict) -> Future:
        start, end = limits.sentence(body, "start"), limits.sentence(body, "end")
        steps = limits.integer(body, "steps", 8, 2, limits.MAX_STEPS)
        method = limits.choice(body, "method", limits.INTERPOLATIONS, "linear")
        beam, search, seed, length = limits.search(body, self.length)
        limits.decoding_cost("interpolate", steps, beam, length)
        drawn = self._map_drawn(body.get("map"))

        def job():
            codes = self.model.interpolation_codes(start, end, steps=steps, method=method)
            with self._seeded(seed):
                path = self.model.decode(codes, beam=beam, **search)
            answer = {"start": start, "end": end, "method": method, "path": path,
                      "unknown": [unknown_words(self.model, start), unknown_words(self.model, end)]}
            if drawn is not None:  # the path's points where the map drawn has them
                xy = drawn["place"](codes.cpu().double()).round(decimals=4).tolist()
                answer["map"] = {"id": drawn["answer"]["id"], "x": [p[0] for p in xy], "y": [p[1] for p in xy]}
            return answer

        return self.worker.submit(job)

    def sample(self, body: Dict) -> Future:
        n = limits.integer(body, "n", 10, 1, limits.MAX_SAMPLES)
        seed = limits.integer(body, "seed", 1, 0, limits.LARGEST_SEED)
        latent_temperature = limits.positive_number(body, "latent_temperature", 1.0, maximum=100.0)
        beam, search, _, length = limits.search(body, self.length)  # sample() seeds its search's draws with `seed`
        prior_kind = self._prior_kind(body)
        limits.decoding_cost("sample", n, beam, length)

        def job():
            samples = self.model.sample(n, seed=seed, latent_temperature=latent_temperature, beam=beam,
                                        prior=prior_kind, **search)
            return {"n": n, "seed": seed, "latent_temperature": latent_temperature, "samples": samples,
                    "prior_kind": prior_kind, "prior_name": self.priors[prior_kind]}

        return self.worker.submit(job)

    def neighbours(self, body: Dict) -> Future:
        if not self.corpus:
            raise InputError("no corpus to search: start fairseq-wae-explore with --corpus FILE (one sentence a line)")
        sentence = limits.sentence(body, "sentence")
        k = limits.integer(body, "k", 5, 1, limits.MAX_NEIGHBOURS)

        def job():
            query = self.model.encode([sentence], what="sentence").cpu()
            # what model.nearest(sentence, corpus, k) computes, on the codes encoded at start-up
            distances = torch.cdist(query, self.corpus_codes, compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
            order = distances.argsort()[:k].tolist()
            return {"sentence": sentence, "neighbours": [[self.corpus[i], distances[i].item()] for i in order],
                    "unknown": [unknown_words(self.model, sentence)]}

        return self.worker.submit(job)

    def map(self, body: Dict) -> Future:
        size = limits.integer(body, "size", min(len(self.corpus), limits.MAP_LIMIT), 0, limits.MAP_LIMIT)
        size = min(size, len(self.corpus))
        prior = limits.integer(body, "prior", 0 if self.corpus else 50, 0, limits.MAX_MAP_PRIOR)
        seed = limits.integer(body, "seed", 1, 0, limits.LARGEST_SEED)
        latent_temperature = limits.positive_number(body, "latent_temperature", 1.0, maximum=100.0)
        method = limits.choice(body, "method", projection_methods(), "pca")
        prior_kind = self._prior_kind(body)
        if size + prior == 0:
            raise InputError("the map is empty: ask for corpus codes (size) or prior samples (prior), or start "
                             "fairseq-wae-explore with --corpus FILE")
        length = limits.length(body, self.length)
        limits.map_cost(method, size + prior, prior, length)
        key = f"{method}-{size}-{prior}-{prior_kind}-{seed}-{latent_temperature:g}-{length}"
        with self._maps_lock:
            drawn = self._maps.get(key)
        if drawn is not None:
            done: Future = Future()
            done.set_result(drawn["answer"])
            return done

        def job():
            drawn = self._draw_map(size, prior, prior_kind, seed, latent_temperature, method, length)
            drawn["answer"]["id"] = key
            with self._maps_lock:
                if len(self._maps) >= 8:  # the last few maps asked for: a page redrawn, a second browser
                    self._maps.pop(next(iter(self._maps)))
                self._maps[key] = drawn
            return drawn["answer"]

        return self.worker.submit(job, key=("map", key))  # the same map asked twice at once: drawn once

    def _map_drawn(self, key) -> Optional[Dict]:
        if not isinstance(key, str):
            return None
        with self._maps_lock:  # None for a map this server did not draw (before a restart) or forgot
            return self._maps.get(key)

    def _draw_map(self, size: int, prior: int, prior_kind: str, seed: int, latent_temperature: float, method: str,
                  length: int) -> Dict:
        codes = self.corpus_codes[:size].double() if size else torch.zeros(0, self.model.latent_dim, dtype=torch.float64)
        prior_sentences: List[str] = []
        if prior:
            prior_codes = self.model.prior_codes(prior, seed=seed, latent_temperature=latent_temperature,
                                                 prior=prior_kind)
            prior_sentences = self.model.sample(prior, seed=seed, latent_temperature=latent_temperature, max_len_a=0,
                                                max_len_b=length, prior=prior_kind)
            codes = torch.cat([codes, prior_codes.cpu().double()])
        if method == "pca":
            mean, axes, share = self._pca if self._pca is not None else pca_axes(codes)
            xy = (codes - mean) @ axes.T
            axis_titles = [f"PC{i + 1} ({100 * s:.0f}% of the variance)" for i, s in enumerate(share)]

            def place(new):
                return (new - mean) @ axes.T
        else:
            xy = embed_2d(codes, method)
            axis_titles = [f"{method} 1", f"{method} 2"]

            def place(new):  # t-SNE has no projection of new codes: each at its nearest codes' places
                return near_places(new, codes, xy)
        rows = xy.round(decimals=4).tolist()

        def points(part, sentences):
            return {"x": [p[0] for p in part], "y": [p[1] for p in part], "text": sentences}

        return {"place": place,
                "answer": {"method": method, "axes": axis_titles, "corpus": points(rows[:size], self.corpus[:size]),
                           "prior": points(rows[size:], prior_sentences), "seed": seed,
                           "latent_temperature": latent_temperature, "prior_kind": prior_kind,
                           "prior_name": self.priors[prior_kind]}}

    def describe(self) -> Dict:
        """The model card, what the page's settings may be, and the limits it checks."""
        return {**self.card, "corpus_sentences": len(self.corpus), "projection_methods": projection_methods(),
                "unknown_symbol": self.model.dictionary.unk_word, "priors": self.priors,
                "limits": {"sentence_chars": limits.MAX_SENTENCE_CHARS, "sentences": limits.MAX_SENTENCES,
                           "steps": limits.MAX_STEPS, "samples": limits.MAX_SAMPLES, "k": limits.MAX_NEIGHBOURS,
                           "map": limits.MAP_LIMIT, "map_prior": limits.MAX_MAP_PRIOR, "beam": limits.MAX_BEAM,
                           "decoding": limits.MAX_DECODING, "step_cost": limits.STEP_COST, "max_len": self.length,
                           "default_max_len": min(limits.DEFAULT_LENGTH, self.length),
                           "projection": limits.PROJECTION_LIMITS}}


def near_places(new: torch.Tensor, codes: torch.Tensor, xy: torch.Tensor, k: int = 5) -> torch.Tensor:
    """2-D places of ``new`` codes on a map of ``codes`` drawn at ``xy``: each the mean of the places of its
    ``k`` nearest codes, weighted by the inverse distance (a code on the map lands on its own place)."""
    distances, nearest = torch.cdist(new, codes).topk(min(k, codes.size(0)), largest=False)
    weights = 1 / distances.clamp_min(1e-9)
    weights = weights / weights.sum(1, keepdim=True)
    return (weights.unsqueeze(2) * xy[nearest]).sum(1)


def unknown_words(model, sentence: str) -> List[str]:
    """The words of ``sentence`` (as the tokeniser splits it) that the dictionary does not hold, each encoded
    (wholly or in part) as ``<unk>``."""
    codec, unk = model.codec, model.dictionary.unk()
    words = (codec.tokenizer.encode(sentence) if codec is not None else sentence).split()
    pieces = (lambda word: codec.bpe.encode(word).split()) if codec is not None and codec.bpe is not None else \
        (lambda word: [word])
    return [word for word in words if any(model.dictionary.index(p) == unk for p in pieces(word))]


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
