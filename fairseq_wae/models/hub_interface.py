"""A trained autoencoder in Python, the fairseq way (cf. ``fairseq.hub_utils.GeneratorHubInterface``)::

    from fairseq_wae import LSTMAutoencoderModel
    wae = LSTMAutoencoderModel.from_pretrained("models/snli-wae10")      # a folder made by fairseq-wae-export
    z = wae.encode(["A man is playing a guitar."])                      # raw text -> (1, latent_dim)
    wae.decode(z)                                                        # -> detokenised sentences

Raw text goes through the tokeniser the data was prepared with (fairseq_wae/tokenizer.py: normalised,
lower-cased sacremoses, then the sentencepiece model of ``--spm-vocab-size``); ``tokenize=False`` takes
and returns the dictionary's tokens. Decoding is fairseq's own search: ``beam``, ``sampling``,
``sampling_topk``, ``sampling_topp``, ``temperature`` (the softmax temperature of ``sampling``),
``max_len_b``, ... as in fairseq-generate; the scale of prior codes is ``latent_temperature``.
"""
import copy
import logging
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from omegaconf import open_dict
from torch import Tensor, nn

from fairseq_wae.dictionary import load_dictionary
from fairseq_wae.errors import MissingFile, Refusal
from fairseq_wae.fitted_prior import PRIOR_FILE, load_prior
from fairseq_wae.interpolation import lerp, slerp
from fairseq_wae.latent_space import prior_codes
from fairseq_wae.lines import MAX_LINE_BYTES
from fairseq_wae.seeding import check_seed
from fairseq_wae.tokenizer import special_symbols_in

logger = logging.getLogger(__name__)


#: The most sentences one batch of the interface holds: what a batch costs grows with it, not with n.
MAX_BATCH_SIZE = 10_000
#: The widest beam: fairseq's search holds beam x batch hypotheses.
MAX_BEAM = 1_000


def _check_count(name: str, value, minimum: int = 1, maximum: Optional[int] = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise Refusal(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise Refusal(f"{name} must be at most {maximum:,}, got {value:,}")


def progress(batches: range, what: str):
    """A progress bar (on a terminal) for inputs of more than 8 batches."""
    from tqdm import tqdm

    return tqdm(batches, desc=what, leave=False, disable=True if len(batches) <= 8 else None)


def sentence_tokens(dictionary, text: str, number: int, what: str, shown: str) -> Tensor:
    """Token ids of one tokenised sentence, EOS appended; refused when it holds no word of the dictionary,
    as its code would say nothing about it (the message names argument ``what`` and the sentence as
    the caller gave it, ``shown``)."""
    tokens = dictionary.encode_line(text, add_if_not_exist=False, append_eos=True).long()
    if len(tokens) == 1:
        raise Refusal(f"{what}: sentence {number} is empty")
    special = special_symbols_in(dictionary, tokens[:-1])
    if special:
        raise Refusal(f"{what}: sentence {number} ({shown!r}) holds {' '.join(special)}, a special symbol of the "
                      "dictionary that no prepared sentence holds: leave it out (given as raw text, with "
                      "tokenisation on, it is read as the characters it is made of)")
    if tokens[:-1].eq(dictionary.unk()).all():
        raise Refusal(f"{what}: sentence {number} ({shown!r}) has no word in the model's dictionary")
    return tokens


def pad_batch(encoded: Sequence[Tensor], pad: int) -> Tuple[Tensor, Tensor]:
    """(tokens padded on the right, lengths) of a list of token-id tensors: the encoder's inputs."""
    lengths = torch.tensor([len(t) for t in encoded])
    tokens = torch.full((len(encoded), int(lengths.max())), pad, dtype=torch.long)
    for row, t in enumerate(encoded):
        tokens[row, : len(t)] = t
    return tokens, lengths


class TextCodec:
    """Raw text <-> the tokens of a data folder, as fairseq-interactive reads and writes them with
    ``--tokenizer normalized_moses`` (fairseq_wae/tokenizer.py: what preparation did) and, for a folder
    with a sentencepiece model (``spm.model``, ``--spm-vocab-size``), ``--bpe sentencepiece``: the same
    classes, so the Python interface, fairseq-wae-interpolate and fairseq-interactive agree."""

    def __init__(self, folder: str):
        from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

        from fairseq_wae.tokenizer import NormalizedMosesTokenizer

        self.tokenizer = NormalizedMosesTokenizer()
        spm_model = os.path.join(folder, "spm.model")
        self.bpe = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=spm_model)) \
            if os.path.isfile(spm_model) else None

    def encode(self, sentence: str) -> str:
        """The dictionary's tokens of a raw sentence (``""`` when nothing visible is left)."""
        words = self.tokenizer.encode(sentence)
        return self.bpe.encode(words) if self.bpe is not None and words else words

    def words(self, tokens: str) -> str:
        """The corpus's words (as in its train.txt): sentencepiece pieces joined, as
        ``fairseq-generate --post-process sentencepiece`` does; other tokens are words already."""
        return self.bpe.decode(tokens) if self.bpe is not None else tokens

    def decode(self, tokens: str) -> str:
        """Detokenised text."""
        return self.tokenizer.decode(self.words(tokens))


class AutoencoderHubInterface(nn.Module):
    """Encode sentences to codes, decode codes to sentences, sample, interpolate, and walk the latent
    space of one trained sentence autoencoder. Runs on the device the module is on (``.cuda()``)."""

    def __init__(self, cfg, task, model, codec: Optional[TextCodec] = None, fitted_prior=None):
        super().__init__()
        self.cfg, self.task, self.model = cfg, task, model.eval()
        self.dictionary = task.source_dictionary
        self.codec = codec
        if fitted_prior is not None:
            fitted_prior.check_fits(model, "this model")
        self.fitted_prior = fitted_prior  # a FittedPrior (fairseq_wae/fitted_prior.py): sample(prior="fitted")
        self.register_buffer("_float_tensor", torch.tensor([0], dtype=torch.float))

    @property
    def device(self) -> torch.device:
        return self._float_tensor.device

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    # -- text <-> token ids ---------------------------------------------------------------------------

    def _token_ids(self, sentences: Union[str, Sequence[str]], tokenize: bool, what: str = "sentences"
                   ) -> List[Tensor]:
        if isinstance(sentences, str):
            raise TypeError(f"{what}: give a list of sentences (a string alone is one: wrap it in a list)")
        sentences = list(sentences)
        if len(sentences) == 0:
            raise Refusal(f"{what}: the list is empty")
        ids, unknown = [], 0
        for number, sentence in enumerate(sentences, start=1):
            if not isinstance(sentence, str):
                raise TypeError(f"{what}: sentence {number} is a {type(sentence).__name__}, not a string")
            if not sentence.strip():
                raise Refusal(f"{what}: sentence {number} is empty")
            if len(sentence) > MAX_LINE_BYTES or len(sentence.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
                raise Refusal(f"{what}: sentence {number} is longer than {MAX_LINE_BYTES:,} bytes, as no sentence is")
            text = self.codec.encode(sentence) if tokenize and self.codec is not None else sentence
            tokens = sentence_tokens(self.dictionary, text, number, what, shown=sentence)
            unknown += int(tokens[:-1].eq(self.dictionary.unk()).sum())
            ids.append(tokens)
        if unknown:
            logger.warning(f"{unknown} out-of-vocabulary token(s) encoded as <unk>")
        return ids

    def _to_text(self, tokens: Tensor, tokenize: bool) -> str:
        text = self.dictionary.string(tokens)
        return self.codec.decode(text) if tokenize and self.codec is not None else text

    def batches(self, sentences: Sequence[str], tokenize: bool = True, batch_size: int = 256, what: str = "sentences"):
        """The encoder's inputs (tokens, lengths) on the interface's device, ``batch_size`` sentences at a
        time: for what runs the model itself (scripts/latent_metrics.py). The sentences are checked here,
        the batches made as they are consumed."""
        return self._id_batches(self._token_ids(sentences, tokenize, what), batch_size)

    def _id_batches(self, ids: List[Tensor], batch_size: int):
        _check_count("batch_size", batch_size, maximum=MAX_BATCH_SIZE)
        return (tuple(t.to(self.device) for t in pad_batch(ids[start:start + batch_size], self.dictionary.pad()))
                for start in progress(range(0, len(ids), batch_size), "encode"))

    # -- codes ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], tokenize: bool = True, sample_posterior: bool = False,
               batch_size: int = 256, what: str = "sentences") -> Tensor:
        """Codes z, one row per sentence: a Gaussian encoder's posterior mean unless ``sample_posterior``."""
        if sample_posterior and not self.model.is_gaussian:
            raise Refusal("sample_posterior needs a Gaussian latent head (a VAE or stochastic WAE)")
        return self.encode_token_ids(self._token_ids(sentences, tokenize, what), batch_size, sample_posterior)

    @torch.no_grad()
    def encode_token_ids(self, ids: List[Tensor], batch_size: int = 256, sample_posterior: bool = False) -> Tensor:
        """Codes of sentences given as token ids (EOS last, as a split of the data folder holds them)."""
        return torch.cat([self.model.encoder(tokens, lengths, sample_posterior=sample_posterior)["z"]
                          for tokens, lengths in self._id_batches(ids, batch_size)])

    def _check_codes(self, z) -> Tensor:
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a tensor, got {type(z).__name__}")
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.dim() != 2 or z.size(1) != self.latent_dim or z.size(0) == 0:
            raise Refusal(f"z must be (n, {self.latent_dim}) codes, got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got {z.dtype}")
        if not torch.isfinite(z).all():
            raise Refusal("z holds NaN or infinite values")
        return z.to(self.device, next(self.model.parameters()).dtype)

    def _generator(self, beam: int, options: Dict):
        _check_count("beam", beam, maximum=MAX_BEAM)
        if options.get("temperature", 1.0) != 1.0 and not options.get("sampling") and beam == 1:
            logger.warning("temperature= is fairseq's softmax temperature: it changes nothing in greedy decoding "
                           "(add sampling=True); the scale of prior codes is latent_temperature=")
        generation = copy.deepcopy(self.cfg.generation)
        with open_dict(generation):
            generation.beam = beam
            for key, value in options.items():
                if key not in generation:
                    raise TypeError(f"unknown search option {key!r} (fairseq-generate's options: beam, sampling, "
                                    "sampling_topk, sampling_topp, temperature, max_len_b, lenpen, ...)")
                setattr(generation, key, value)
        if generation.max_len_a <= 0 and generation.max_len_b < 1:
            raise Refusal(f"max_len_b={generation.max_len_b} (with max_len_a={generation.max_len_a}) leaves no room for "
                          "a word: give max_len_b >= 1")
        return self.task.build_generator([self.model], generation)

    @torch.no_grad()
    def decode(self, z: Tensor, beam: int = 1, tokenize: bool = True, batch_size: int = 256, **search) -> List[str]:
        """Sentences decoded from codes with fairseq's search (greedy by default)."""
        z = self._check_codes(z)
        generator = self._generator(beam, search)
        _check_count("batch_size", batch_size, maximum=MAX_BATCH_SIZE)
        sentences = []
        for start in progress(range(0, z.size(0), batch_size), "decode"):
            sentences += self._decode_batch(z[start:start + batch_size], generator, tokenize)
        return sentences

    @torch.no_grad()
    def _decode_batch(self, z: Tensor, generator, tokenize: bool) -> List[str]:
        eos = self.dictionary.eos()
        sample = {"net_input": {"src_tokens": torch.full((z.size(0), 1), eos, dtype=torch.long, device=self.device),
                                "src_lengths": torch.ones(z.size(0), dtype=torch.long, device=self.device),
                                "latent": z}}
        return [self._to_text(h[0]["tokens"], tokenize) for h in generator.generate([self.model], sample)]

    def reconstruct(self, sentences: Sequence[str], beam: int = 1, tokenize: bool = True, batch_size: int = 256,
                    **search) -> List[str]:
        return self.decode(self.encode(sentences, tokenize, batch_size=batch_size), beam, tokenize, batch_size,
                           **search)

    #: The most sentences ``sample`` returns in one list (and codes ``prior_codes`` returns in one tensor):
    #: beyond it, ``iter_sample`` holds one batch at a time.
    SAMPLE_LIST_LIMIT = 1_000_000

    def _check_prior(self, n: int, seed: int, latent_temperature: float, listed_by: Optional[str] = None,
                     prior: str = "normal") -> None:
        """Refuses bad arguments, naming them; ``listed_by``: the method that would return all ``n`` at once."""
        if prior not in ("normal", "fitted"):
            raise Refusal(f"prior must be 'normal' (N(0, I)) or 'fitted', got {prior!r}")
        if prior == "fitted" and self.fitted_prior is None:
            raise Refusal("prior='fitted': this model folder holds no fitted prior (prior.pt): fit one with "
                          "fairseq-wae-fit-prior and export the model with --prior FILE")
        _check_count("n", n)
        check_seed(seed)
        if isinstance(latent_temperature, bool) or not isinstance(latent_temperature, (int, float)) \
                or not 0 < latent_temperature < math.inf:
            raise Refusal(f"latent_temperature must be a finite number > 0, got {latent_temperature!r}")
        if listed_by and n > self.SAMPLE_LIST_LIMIT:
            raise Refusal(f"{listed_by}(n={n:,}) would hold all of them at once (more than "
                          f"{self.SAMPLE_LIST_LIMIT:,}): use iter_sample(n, ...), which draws and decodes batch_size "
                          "codes at a time, e.g. f.writelines(s + '\\n' for s in model.iter_sample(n))")

    def _prior_codes(self, ids: range, seed: int, latent_temperature: float, prior: str) -> Tensor:
        return prior_codes(ids, self.latent_dim, seed, latent_temperature, dtype=next(self.model.parameters()).dtype,
                           what="latent_temperature", prior=self.fitted_prior if prior == "fitted" else None)

    def prior_codes(self, n: int, seed: int = 1, latent_temperature: float = 1.0, prior: str = "normal") -> Tensor:
        """The codes ``fairseq-generate --task prior_sampling --seed SEED --latent-temperature T`` decodes
        (the same for any batch): z ~ N(0, T^2 I), or with ``prior="fitted"`` the model folder's fitted
        prior (``--prior-file``), its noise scaled by T. At most ``SAMPLE_LIST_LIMIT`` of them."""
        self._check_prior(n, seed, latent_temperature, listed_by="prior_codes", prior=prior)
        return self._prior_codes(range(n), seed, latent_temperature, prior)

    def sample(self, n: int, seed: int = 1, latent_temperature: float = 1.0, beam: int = 1, tokenize: bool = True,
               batch_size: int = 256, prior: str = "normal", **search) -> List[str]:
        """``n`` sentences decoded from z ~ N(0, latent_temperature^2 I) (``prior="fitted"``: from the model
        folder's fitted prior), the samples of ``fairseq-generate --task prior_sampling --seed SEED
        --latent-temperature T [--prior-file FILE]``, in a list of at most ``SAMPLE_LIST_LIMIT`` (use
        ``iter_sample`` beyond). ``search`` is fairseq's: its ``temperature=`` is the softmax temperature of
        ``sampling=True``, as fairseq-generate's ``--temperature``."""
        self._check_prior(n, seed, latent_temperature, listed_by="sample", prior=prior)
        return list(self.iter_sample(n, seed, latent_temperature, beam, tokenize, batch_size, prior, **search))

    def iter_sample(self, n: int, seed: int = 1, latent_temperature: float = 1.0, beam: int = 1,
                    tokenize: bool = True, batch_size: int = 256, prior: str = "normal", **search) -> Iterator[str]:
        """The sentences of ``sample``, one at a time, for any ``n``: ``batch_size`` codes are drawn and
        decoded at a time, so memory is bounded by the batch. The arguments are checked at the call."""
        self._check_prior(n, seed, latent_temperature, prior=prior)
        _check_count("batch_size", batch_size, maximum=MAX_BATCH_SIZE)
        return self._sentences_from_prior(n, seed, latent_temperature, self._generator(beam, search), tokenize,
                                          batch_size, prior)

    @torch.no_grad()
    def _sentences_from_prior(self, n: int, seed: int, latent_temperature: float, generator, tokenize: bool,
                              batch_size: int, prior: str) -> Iterator[str]:
        # the search's own sampling draws from torch's generator, seeded with `seed` once, as fairseq-generate
        # does; its state is carried from batch to batch here, so the caller's generator stays untouched even
        # between the sentences it takes
        cuda = self.device.type == "cuda"
        states = None
        for start in progress(range(0, n, batch_size), "sample"):
            z = self._prior_codes(range(start, min(start + batch_size, n)), seed, latent_temperature, prior)
            with torch.random.fork_rng(devices=[self.device] if cuda else []):
                if states is None:
                    torch.manual_seed(seed)
                else:
                    torch.set_rng_state(states[0])
                    if cuda:
                        torch.cuda.set_rng_state(states[1], self.device)
                sentences = self._decode_batch(self._check_codes(z), generator, tokenize)
                states = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)
            yield from sentences

    def interpolate(self, start: str, end: str, steps: int = 8, method: str = "linear", tokenize: bool = True,
                    **search) -> List[str]:
        """Sentences decoded at ``steps`` points from ``start``'s code to ``end``'s, both included."""
        return self.decode(self.interpolation_codes(start, end, steps, method, tokenize), tokenize=tokenize, **search)

    def interpolation_codes(self, start: str, end: str, steps: int = 8, method: str = "linear",
                            tokenize: bool = True) -> Tensor:
        """The ``steps`` codes that ``interpolate`` decodes, one a row."""
        _check_count("steps", steps, minimum=2, maximum=self.SAMPLE_LIST_LIMIT)
        walks = {"linear": lerp, "spherical": slerp}
        if method not in walks:
            raise Refusal(f"method must be 'linear' or 'spherical', got {method!r}")
        a, b = self.encode([start, end], tokenize, what="start and end")
        return torch.stack([walks[method](a, b, i / (steps - 1)) for i in range(steps)])

    def analogy(self, a: str, b: str, c: str, tokenize: bool = True, **search) -> str:
        """The sentence at z_a - z_b + z_c ("a is to b as ? is to c")."""
        z = self.encode([a, b, c], tokenize, what="a, b and c")
        return self.decode(z[0] - z[1] + z[2], tokenize=tokenize, **search)[0]

    def direction(self, positive: Sequence[str], negative: Sequence[str], tokenize: bool = True) -> Tensor:
        """Mean code of ``positive`` minus mean code of ``negative``: add it to move along the attribute."""
        return (self.encode(positive, tokenize, what="positive").mean(0)
                - self.encode(negative, tokenize, what="negative").mean(0))

    def nearest(self, sentence: str, candidates: Sequence[str], k: int = 5, tokenize: bool = True
                ) -> List[Tuple[str, float]]:
        """The ``k`` candidates whose codes are closest (Euclidean) to ``sentence``'s, with the distances."""
        _check_count("k", k)
        query = self.encode([sentence], tokenize, what="sentence").float()  # cdist has no half-precision kernel
        # the direct difference: cdist's matrix-product shortcut (|x|^2 + |y|^2 - 2xy) cancels, and put a
        # sentence 2e-3 away from itself on one CPU
        distances = torch.cdist(query, self.encode(candidates, tokenize, what="candidates").float(),
                                compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
        order = distances.argsort()[:k].tolist()
        return [(candidates[i], distances[i].item()) for i in order]


def load_hub_interface(model_name_or_path: str, checkpoint_file: str, data_name_or_path: str, **kwargs):
    """What ``LSTMAutoencoderModel.from_pretrained`` returns; clear errors name the missing file."""
    from fairseq import hub_utils

    from fairseq_wae.checkpoint_utils import CheckpointError, check_checkpoint, check_checkpoint_file, dictionary_fingerprint

    if os.pathsep in checkpoint_file:
        raise Refusal(f"checkpoint_file {checkpoint_file!r}: the interface holds one model, give one checkpoint")
    if not os.path.isdir(model_name_or_path):
        raise MissingFile(f"{model_name_or_path} is not a folder (an exported model, or a checkpoint folder)")
    for name in checkpoint_file.split(os.pathsep):
        check_checkpoint_file(os.path.join(model_name_or_path, name))
    if os.path.isdir(data_name_or_path) and data_name_or_path != ".":
        data_name_or_path = os.path.abspath(data_name_or_path)  # fairseq reads a leading "." as inside the model folder
    data = data_name_or_path if not data_name_or_path.startswith(".") \
        else os.path.join(model_name_or_path, data_name_or_path)
    if not os.path.isfile(os.path.join(data, "dict.txt")):
        raise MissingFile(f"no dict.txt in {os.path.abspath(data)}: give data_name_or_path, the data folder the "
                          "model was trained on (an exported model folder holds its own)")
    dictionary = os.path.join(data, "dict.txt")
    # before fairseq loads the file: weights only, and trained with this dictionary
    check_checkpoint(os.path.join(model_name_or_path, checkpoint_file),
                     dictionary_fingerprint(load_dictionary(dictionary), dictionary))
    path = os.path.join(model_name_or_path, checkpoint_file)
    try:
        loaded = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model = loaded["models"][0]
    if not hasattr(model, "latent_dim"):
        raise Refusal(f"{path} holds a {type(model).__name__}: not a fairseq-wae autoencoder checkpoint")
    prior_path = os.path.join(model_name_or_path, PRIOR_FILE)
    fitted = load_prior(prior_path) if os.path.isfile(prior_path) else None
    return AutoencoderHubInterface(loaded["args"], loaded["task"], model, TextCodec(data), fitted)


def from_checkpoint(path: str, data_name_or_path: str) -> AutoencoderHubInterface:
    """The interface of one checkpoint file and the data folder it was trained on, the ``--path`` and
    ``--data`` of the scripts: ``from_pretrained`` on the file's folder, with ``checkpoint_file`` its name."""
    return load_hub_interface(os.path.dirname(os.path.abspath(path)), os.path.basename(path), data_name_or_path)

