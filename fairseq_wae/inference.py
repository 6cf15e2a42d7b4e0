"""Model-level helpers under the Python interface (fairseq_wae.hub_interface): a checkpoint's model and
task, token batches, codes, decoding, and the interpolation paths (used by scripts/latent_metrics.py,
scripts/latent_coverage.py and examples/snli/report.py)."""
import os
from typing import List, Sequence

import torch
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

import fairseq_wae  # noqa: F401  (registers the task and model the checkpoint names)


def load_autoencoder(path: str, data: str):
    """(model, task) from a checkpoint, with the dictionary of ``data``; the model is in eval mode."""
    from fairseq_wae.hub_interface import load_hub_interface

    hub = load_hub_interface(os.path.dirname(os.path.abspath(path)), os.path.basename(path), data)
    if not hasattr(hub.model, "latent_dim"):
        raise ValueError(f"{path} is not a fairseq-wae autoencoder checkpoint")
    return hub.model, hub.task


def to_batch(task, sentences: Sequence[str]):
    """Tokenised sentences (words separated by spaces) to encoder inputs, EOS appended.

    An empty sentence, or one with no word in the dictionary, is refused: its code would say nothing
    about it."""
    dictionary = task.source_dictionary
    encoded = [encode_sentence(dictionary, s, number) for number, s in enumerate(sentences, start=1)]
    return pad_batch(encoded, dictionary.pad())


def encode_sentence(dictionary, sentence: str, number: int, what: str = "", shown: str = None) -> Tensor:
    """Token ids of one tokenised sentence, EOS appended; refused when empty or all unknown words
    (the message names argument ``what`` and the sentence as ``shown``, by default as given)."""
    prefix = f"{what}: " if what else ""
    shown = sentence if shown is None else shown
    tokens = dictionary.encode_line(sentence, add_if_not_exist=False, append_eos=True).long()
    if len(tokens) == 1:
        raise ValueError(f"{prefix}sentence {number} is empty")
    if tokens[:-1].eq(dictionary.unk()).all():
        raise ValueError(f"{prefix}sentence {number} ({shown!r}) has no word in the model's dictionary")
    return tokens


def pad_batch(encoded: Sequence[Tensor], pad: int):
    """(tokens padded on the right, lengths) of a list of token-id tensors."""
    lengths = torch.tensor([len(t) for t in encoded])
    tokens = torch.full((len(encoded), int(lengths.max())), pad, dtype=torch.long)
    for row, t in enumerate(encoded):
        tokens[row, : len(t)] = t
    return tokens, lengths


@torch.no_grad()
def encode(model, task, sentences: Sequence[str], sample_posterior: bool = False) -> Tensor:
    """z for each sentence: the posterior mean for Gaussian heads unless ``sample_posterior``."""
    tokens, lengths = to_batch(task, sentences)
    return model.encoder(tokens, lengths, sample_posterior=sample_posterior)["z"]


@torch.no_grad()
def decode(model, task, z: Tensor, beam: int = 1, max_len: int = 50) -> List[str]:
    """Sentences decoded from codes z with fairseq's beam search (``beam=1``: greedy)."""
    dictionary = task.target_dictionary
    generator = SequenceGenerator([model], dictionary, beam_size=beam, max_len_b=max_len)
    sample = {"net_input": {"src_tokens": torch.full((z.size(0), 1), dictionary.eos(), dtype=torch.long),
                            "src_lengths": torch.ones(z.size(0), dtype=torch.long), "latent": z}}
    hypotheses = generator.generate([model], sample)
    return [dictionary.string(h[0]["tokens"]) for h in hypotheses]


def lerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Linear interpolation (1 - t) a + t b."""
    return (1 - t) * a + t * b


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation along the great circle from a to b (White 2016); linear when parallel."""
    cos = torch.clamp((a @ b) / (a.norm() * b.norm()), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        return lerp(a, b, t)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
