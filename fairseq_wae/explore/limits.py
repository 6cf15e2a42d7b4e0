"""What the page may ask, checked before the model runs: each refusal is one message the page shows,
naming the field, and the server goes on serving.

The limits keep one request to about a second of a CPU and a page the browser can draw; where the
Python interface has a limit of its own (``SAMPLE_LIST_LIMIT``, the seed range of fairseq-generate)
these are below it."""
import math
from typing import Dict, List, Optional, Tuple

from fairseq_wae.errors import Refusal

#: characters in one typed sentence (a sentence of the corpora here is under 400)
MAX_SENTENCE_CHARS = 1000
#: sentences reconstructed in one request (one a line)
MAX_SENTENCES = 100
#: points of one interpolation, both ends included
MAX_STEPS = 100
#: prior samples in one request (the interface lists up to 1,000,000: a page shows far fewer)
MAX_SAMPLES = 1000
#: neighbours of one sentence
MAX_NEIGHBOURS = 100
#: corpus codes on the map (and sentences of --corpus that are read)
MAP_LIMIT = 10_000
#: prior samples on the map (each is decoded, for its sentence on hover)
MAX_MAP_PRIOR = 1000
#: beam size
MAX_BEAM = 20
#: the decoding one request may ask: (sentences x beam + STEP_COST) x the longest sentence decoded
#: (``max_len``, in tokens). Set so that a request takes about 2 s of the paper-size model
#: (lstm_wae_paper, 20,000 tokens) on one CPU thread at worst (an untrained model, which decodes every
#: sentence to max_len): README "Exploring the latent space" gives the measures
MAX_DECODING = 2_000
#: what a step of fairseq's search costs besides its hypotheses, in hypotheses: one sentence took 7 ms
#: a token of the paper-size model, and each more hypothesis about 0.8 ms
STEP_COST = 8
#: the longest sentence decoded unless the page asks for another (fairseq-generate's max_len_b; the
#: model's own, 200 by default, is the most it may ask): SNLI's sentences are shorter
DEFAULT_LENGTH = 30
#: codes one t-SNE / UMAP map is fitted on, by the same measure (PCA's projection costs nothing next to them)
PROJECTION_LIMITS = {"tsne": 150, "umap": 150}
#: fairseq-generate --seed's range (numpy takes no seed beyond it)
LARGEST_SEED = 2**32 - 1

DECODINGS = ("greedy", "beam", "sampling")
INTERPOLATIONS = ("linear", "spherical")


class InputError(Refusal):
    """A request the page can correct; its message is shown there as it is (one of the plugin's refusals)."""


def _given(body: Dict, name: str):
    value = body.get(name)
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _number(body: Dict, name: str, kind: str):
    """(what ``body[name]`` holds, it as a float), or (None, None) when it is not given; refused, naming
    the field and the ``kind`` of number it takes, when it is not a number (a bool is not one)."""
    value = _given(body, name)
    if value is None:
        return None, None
    try:
        return value, float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise InputError(f"{name} must be {kind}, got {value!r}") from None


def integer(body: Dict, name: str, default: Optional[int], minimum: int, maximum: int) -> Optional[int]:
    """``body[name]`` as an integer in ``minimum .. maximum`` (a number or the text of one), else ``default``."""
    value, number = _number(body, name, "a whole number")
    if value is None:
        return default
    if not math.isfinite(number) or number != int(number):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if not minimum <= number <= maximum:
        raise InputError(f"{name} must be between {minimum:,} and {maximum:,}, got {int(number):,}")
    return int(number)


def positive_number(body: Dict, name: str, default: Optional[float], maximum: float = math.inf) -> Optional[float]:
    """``body[name]`` as a finite number > 0 (and <= ``maximum``), else ``default``."""
    value, number = _number(body, name, "a number")
    if value is None:
        return default
    if not (math.isfinite(number) and 0 < number <= maximum):
        bound = f" and at most {maximum:g}" if maximum < math.inf else ""
        raise InputError(f"{name} must be a finite number greater than 0{bound}, got {value!r}")
    return number


def decoding_cost(what: str, sentences: int, beam: int, length: int) -> int:
    """The cost of decoding ``sentences`` x ``beam`` hypotheses of up to ``length`` tokens (0 for none),
    refused when it is over ``MAX_DECODING``."""
    cost = (sentences * beam + STEP_COST) * length if sentences else 0
    if cost > MAX_DECODING:
        raise InputError(f"{what}: ({sentences:,} sentence(s) x beam {beam} + {STEP_COST}) x up to {length} tokens "
                         f"(max_len) is {cost:,} decoding steps, over the limit of {MAX_DECODING:,} per request: ask "
                         "for fewer, a narrower beam or a shorter max_len")
    return cost


def map_cost(method: str, points: int, prior: int, length: int) -> None:
    """Refused when the map's prior samples (decoded) and its projection together are over one request's
    budget: a t-SNE or UMAP of ``PROJECTION_LIMITS`` codes takes the whole of it, as ``MAX_DECODING`` does."""
    decoding = decoding_cost("map (its prior samples)", prior, 1, length)
    limit = PROJECTION_LIMITS.get(method)
    if limit is not None and decoding / MAX_DECODING + points / limit > 1:
        raise InputError(f"map: a {method} of {points:,} codes (at most {limit:,}) with {prior:,} prior sample(s) "
                         f"decoded ({decoding:,} of the {MAX_DECODING:,} decoding steps) is over the limit of one "
                         "request: ask for fewer corpus codes or prior samples, or use pca")


def choice(body: Dict, name: str, choices, default: str) -> str:
    value = _given(body, name)
    if value is None:
        return default
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def sentence(body: Dict, name: str) -> str:
    """One typed sentence: not empty, at most ``MAX_SENTENCE_CHARS`` characters."""
    value = body.get(name)
    if value is None or not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} is empty: type a sentence")
    value = value.strip()
    if len(value) > MAX_SENTENCE_CHARS:
        raise InputError(f"{name} has {len(value):,} characters: at most {MAX_SENTENCE_CHARS:,} are taken")
    if "\n" in value:
        raise InputError(f"{name} holds several lines: type one sentence")
    return value


def sentences(body: Dict, name: str) -> List[str]:
    """Typed sentences, one a line (blank lines left out): at least one, at most ``MAX_SENTENCES``."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{name} must be text, one sentence a line")
    lines = [line.strip() for line in (value or "").splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{name} is empty: type a sentence (one a line)")
    if len(lines) > MAX_SENTENCES:
        raise InputError(f"{name} has {len(lines):,} lines: at most {MAX_SENTENCES} sentences at a time")
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_SENTENCE_CHARS:
            raise InputError(f"{name}: line {number} has {len(line):,} characters: at most "
                             f"{MAX_SENTENCE_CHARS:,} are taken")
    return lines


def length(body: Dict, longest: int) -> int:
    """The longest sentence decoded, in tokens (fairseq-generate's max_len_b): ``max_len``, at most ``longest``."""
    return integer(body, "max_len", min(DEFAULT_LENGTH, longest), 1, longest)


def search(body: Dict, longest: int) -> Tuple[int, Dict, Optional[int], int]:
    """(beam, fairseq's search options, seed of the sampling or None, the longest sentence decoded) of the
    decoding fields: greedy, beam search of ``beam`` hypotheses, or sampling (``topk``, ``topp``, softmax
    ``temperature``, drawn from torch's generator seeded with ``sampling_seed``; prior samples have a seed
    of their own); sentences of at most ``max_len`` tokens (``length``)."""
    tokens = length(body, longest)
    options = {"max_len_a": 0, "max_len_b": tokens}
    decoding = choice(body, "decoding", DECODINGS, "greedy")
    if decoding == "greedy":
        return 1, options, None, tokens
    if decoding == "beam":
        return integer(body, "beam", 5, 1, MAX_BEAM), options, None, tokens
    options.update(sampling=True, temperature=positive_number(body, "temperature", 1.0, maximum=100.0))
    topk = integer(body, "topk", None, 1, 100_000)
    topp = positive_number(body, "topp", None, maximum=1.0)
    if topk is not None:
        options["sampling_topk"] = topk
    if topp is not None:
        options["sampling_topp"] = topp
    return 1, options, integer(body, "sampling_seed", 1, 0, LARGEST_SEED), tokens
