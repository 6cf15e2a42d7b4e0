"""A trained autoencoder in Python, the fairseq way (cf. ``fairseq.hub_utils.GeneratorHubInterface``)::

    from fairseq_wae import LSTMAutoencoderModel
    wae = LSTMAutoencoderModel.from_pretrained("models/snli-wae10")      # a folder made by fairseq-wae-export
    z = wae.encode(["A man is playing a guitar."])                      # raw text -> (1, latent_dim)
    wae.decode(z)                                                        # -> detokenised sentences

Raw text goes through the tokeniser the data was prepared with (lower-cased sacremoses, or the
sentencepiece model of ``--spm-vocab-size``); ``tokenize=False`` takes and returns tokenised text.
Decoding is fairseq's own search: ``beam``, ``sampling``, ``sampling_topk``, ``sampling_topp``,
``temperature``, ``max_len_b``, ... as in fairseq-generate.
"""
import copy
import logging
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from omegaconf import open_dict
from torch import Tensor, nn

from fairseq_wae.interpolation import lerp, slerp

logger = logging.getLogger(__name__)


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


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
        raise ValueError(f"{what}: sentence {number} is empty")
    if tokens[:-1].eq(dictionary.unk()).all():
        raise ValueError(f"{what}: sentence {number} ({shown!r}) has no word in the model's dictionary")
    return tokens


def pad_batch(encoded: Sequence[Tensor], pad: int) -> Tuple[Tensor, Tensor]:
    """(tokens padded on the right, lengths) of a list of token-id tensors: the encoder's inputs."""
    lengths = torch.tensor([len(t) for t in encoded])
    tokens = torch.full((len(encoded), int(lengths.max())), pad, dtype=torch.long)
    for row, t in enumerate(encoded):
        tokens[row, : len(t)] = t
    return tokens, lengths


class TextCodec:
    """Raw text <-> the tokens of a data folder: lower-cased Moses tokenisation (what scripts/prepare_*.py
    do), then the folder's sentencepiece model when it has one (``spm.model``, ``--spm-vocab-size``)."""

    def __init__(self, folder: str):
        from sacremoses import MosesDetokenizer

        from fairseq_wae.corpus import Tokenizer

        self.moses, self.detokenizer = Tokenizer(), MosesDetokenizer(lang="en")
        spm_model = os.path.join(folder, "spm.model")
        self.sentencepiece = None
        if os.path.isfile(spm_model):
            import sentencepiece as spm

            self.sentencepiece = spm.SentencePieceProcessor(model_file=spm_model)

    def encode(self, sentence: str) -> str:
        words = self.moses(sentence)
        return " ".join(self.sentencepiece.encode(words, out_type=str)) if self.sentencepiece is not None else words

    def decode(self, tokens: str) -> str:
        words = self.sentencepiece.decode(tokens.split()) if self.sentencepiece is not None else tokens
        return self.detokenizer.detokenize(words.split())


class AutoencoderHubInterface(nn.Module):
    """Encode sentences to codes, decode codes to sentences, sample, interpolate, and walk the latent
    space of one trained sentence autoencoder. Runs on the device the module is on (``.cuda()``)."""

    def __init__(self, cfg, task, model, codec: Optional[TextCodec] = None):
        super().__init__()
        self.cfg, self.task, self.model = cfg, task, model.eval()
        self.dictionary = task.source_dictionary
        self.codec = codec
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
            raise ValueError(f"{what}: the list is empty")
        ids, unknown = [], 0
        for number, sentence in enumerate(sentences, start=1):
            if not isinstance(sentence, str):
                raise TypeError(f"{what}: sentence {number} is a {type(sentence).__name__}, not a string")
            if not sentence.strip():
                raise ValueError(f"{what}: sentence {number} is empty")
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
        ids = self._token_ids(sentences, tokenize, what)
        _check_count("batch_size", batch_size)
        return (tuple(t.to(self.device) for t in pad_batch(ids[start:start + batch_size], self.dictionary.pad()))
                for start in progress(range(0, len(ids), batch_size), "encode"))

    # -- codes ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], tokenize: bool = True, sample_posterior: bool = False,
               batch_size: int = 256, what: str = "sentences") -> Tensor:
        """Codes z, one row per sentence: a Gaussian encoder's posterior mean unless ``sample_posterior``."""
        if sample_posterior and not self.model.is_gaussian:
            raise ValueError("sample_posterior needs a Gaussian latent head (a VAE or stochastic WAE)")
        codes = [self.model.encoder(tokens, lengths, sample_posterior=sample_posterior)["z"]
                 for tokens, lengths in self.batches(sentences, tokenize, batch_size, what)]
        return torch.cat(codes)

    def _check_codes(self, z) -> Tensor:
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a tensor, got {type(z).__name__}")
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.dim() != 2 or z.size(1) != self.latent_dim or z.size(0) == 0:
            raise ValueError(f"z must be (n, {self.latent_dim}) codes, got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got {z.dtype}")
        if not torch.isfinite(z).all():
            raise ValueError("z holds NaN or infinite values")
        return z.to(self.device, next(self.model.parameters()).dtype)

    def _generator(self, beam: int, options: Dict):
        _check_count("beam", beam)
        generation = copy.deepcopy(self.cfg.generation)
        with open_dict(generation):
            generation.beam = beam
            for key, value in options.items():
                if key not in generation:
                    raise TypeError(f"unknown search option {key!r} (fairseq-generate's options: beam, sampling, "
                                    "sampling_topk, sampling_topp, temperature, max_len_b, lenpen, ...)")
                setattr(generation, key, value)
        return self.task.build_generator([self.model], generation)

    @torch.no_grad()
    def decode(self, z: Tensor, beam: int = 1, tokenize: bool = True, batch_size: int = 256, **search) -> List[str]:
        """Sentences decoded from codes with fairseq's search (greedy by default)."""
        z = self._check_codes(z)
        generator = self._generator(beam, search)
        eos = self.dictionary.eos()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        sentences = []
        for start in progress(range(0, z.size(0), batch_size), "decode"):
            chunk = z[start:start + batch_size]
            sample = {"net_input": {"src_tokens": torch.full((chunk.size(0), 1), eos, dtype=torch.long, device=self.device),
                                    "src_lengths": torch.ones(chunk.size(0), dtype=torch.long, device=self.device),
                                    "latent": chunk}}
            hypotheses = generator.generate([self.model], sample)
            sentences += [self._to_text(h[0]["tokens"], tokenize) for h in hypotheses]
        return sentences

    def reconstruct(self, sentences: Sequence[str], beam: int = 1, tokenize: bool = True, batch_size: int = 256,
                    **search) -> List[str]:
        return self.decode(self.encode(sentences, tokenize, batch_size=batch_size), beam, tokenize, batch_size,
                           **search)

    def prior_codes(self, n: int, seed: int = 1, temperature: float = 1.0) -> Tensor:
        """The codes ``fairseq-generate --task prior_sampling --seed SEED`` decodes (the same for any batch)."""
        from fairseq_wae.tasks.prior_sampling import prior_codes

        _check_count("n", n)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        if not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        return prior_codes(torch.arange(n), self.latent_dim, seed, temperature)

    def sample(self, n: int, seed: int = 1, temperature: float = 1.0, beam: int = 1, tokenize: bool = True,
               batch_size: int = 256, **search) -> List[str]:
        """``n`` sentences decoded from z ~ N(0, temperature^2 I); ``temperature=`` in ``search`` is the
        softmax temperature of fairseq's sampling, as in fairseq-generate."""
        z = self.prior_codes(n, seed, temperature)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)  # the search's own sampling, reproducible, the caller's generator untouched
            return self.decode(z, beam, tokenize, batch_size, **search)

    def interpolate(self, start: str, end: str, steps: int = 8, method: str = "linear", tokenize: bool = True,
                    **search) -> List[str]:
        """Sentences decoded at ``steps`` points from ``start``'s code to ``end``'s, both included."""
        _check_count("steps", steps, minimum=2)
        walks = {"linear": lerp, "spherical": slerp}
        if method not in walks:
            raise ValueError(f"method must be 'linear' or 'spherical', got {method!r}")
        a, b = self.encode([start, end], tokenize, what="start and end")
        points = torch.stack([walks[method](a, b, i / (steps - 1)) for i in range(steps)])
        return self.decode(points, tokenize=tokenize, **search)

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
        query = self.encode([sentence], tokenize, what="sentence")
        distances = torch.cdist(query, self.encode(candidates, tokenize, what="candidates")).squeeze(0)
        order = distances.argsort()[:k].tolist()
        return [(candidates[i], distances[i].item()) for i in order]


def load_hub_interface(model_name_or_path: str, checkpoint_file: str, data_name_or_path: str, **kwargs):
    """What ``LSTMAutoencoderModel.from_pretrained`` returns; clear errors name the missing file."""
    from fairseq import hub_utils
    from fairseq.data import Dictionary

    from fairseq_wae.checkpoints import CheckpointError, check_checkpoint, check_checkpoint_file, dictionary_fingerprint

    if os.pathsep in checkpoint_file:
        raise ValueError(f"checkpoint_file {checkpoint_file!r}: the interface holds one model, give one checkpoint")
    if not os.path.isdir(model_name_or_path):
        raise FileNotFoundError(f"{model_name_or_path} is not a folder (an exported model, or a checkpoint folder)")
    for name in checkpoint_file.split(os.pathsep):
        check_checkpoint_file(os.path.join(model_name_or_path, name))
    if os.path.isdir(data_name_or_path) and data_name_or_path != ".":
        data_name_or_path = os.path.abspath(data_name_or_path)  # fairseq reads a leading "." as inside the model folder
    data = data_name_or_path if not data_name_or_path.startswith(".") \
        else os.path.join(model_name_or_path, data_name_or_path)
    if not os.path.isfile(os.path.join(data, "dict.txt")):
        raise FileNotFoundError(f"no dict.txt in {os.path.abspath(data)}: give data_name_or_path, the data folder the "
                                "model was trained on (an exported model folder holds its own)")
    dictionary = os.path.join(data, "dict.txt")
    # before fairseq loads the file: weights only, and trained with this dictionary
    check_checkpoint(os.path.join(model_name_or_path, checkpoint_file),
                     dictionary_fingerprint(Dictionary.load(dictionary), dictionary))
    path = os.path.join(model_name_or_path, checkpoint_file)
    try:
        loaded = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model = loaded["models"][0]
    if not hasattr(model, "latent_dim"):
        raise ValueError(f"{path} holds a {type(model).__name__}: not a fairseq-wae autoencoder checkpoint")
    return AutoencoderHubInterface(loaded["args"], loaded["task"], model, TextCodec(data))


def from_checkpoint(path: str, data_name_or_path: str) -> AutoencoderHubInterface:
    """The interface of one checkpoint file and the data folder it was trained on, the ``--path`` and
    ``--data`` of the scripts: ``from_pretrained`` on the file's folder, with ``checkpoint_file`` its name."""
    return load_hub_interface(os.path.dirname(os.path.abspath(path)), os.path.basename(path), data_name_or_path)

