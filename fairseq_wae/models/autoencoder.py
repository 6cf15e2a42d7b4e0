"""What every sentence autoencoder shares, whatever network reads and writes the sentence.

A model is an encoder that reduces a sentence to one vector (``sentence_representation``), the latent
head that turns it into z (:mod:`fairseq_wae.models.latent`), and a decoder that sees the sentence only
through z. The criterions read ``extra["latent"]`` and the model's ``latent_dim``, ``is_gaussian`` and
``schedule_state``: nothing of the network behind them. The LSTM and the Transformer models subclass
:class:`SentenceEncoder` and :class:`SentenceAutoencoderModel` and change only the network.
"""
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel
from torch import Tensor

from fairseq_wae.embeddings import load_embedding_weights
from fairseq_wae.errors import Refusal, explain_failures_of_fairseq
from fairseq_wae.models.dictionary_binding import DictionaryBinding
from fairseq_wae.models.latent import LATENT_HEADS, FixedScaleBatchNorm
from fairseq_wae.schedules import ScheduleStateSlot

logger = logging.getLogger(__name__)


@dataclass
class SentenceAutoencoderConfig(FairseqDataclass):
    """Options of every autoencoder: the word embeddings (shared by encoder and decoder) and z."""

    embed_dim: int = field(default=300, metadata={"help": "word embedding size (shared by encoder and decoder)"})
    embed_path: Optional[str] = field(
        default=None,
        metadata={"help": "pretrained embeddings: word2vec/GloVe text or word2vec binary (.bin) file"},
    )
    freeze_embed: bool = field(default=False, metadata={"help": "do not train the word embeddings"})
    latent_dim: int = field(default=100, metadata={"help": "size of the sentence code z"})
    latent_head: ChoiceEnum(list(LATENT_HEADS)) = field(
        default="deterministic",
        metadata={"help": "deterministic z = f(x) (DAE, WAE) or Gaussian q(z|x) (VAE, stochastic WAE)"},
    )
    bn_posterior_mean: Optional[float] = field(
        default=None,
        metadata={"help": "BN-VAE (Zhu et al. 2020): batch-normalise a Gaussian head's posterior mean with this "
                          "fixed scale gamma, so that the mean KL is at least 0.5 * latent dim * gamma^2"},
    )
    dropout: float = field(default=0.2, metadata={"help": "dropout on embeddings and decoder outputs"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the output projection to the word embeddings"}
    )
    max_target_positions: int = field(default=1024, metadata={"help": "longest sentence the decoder generates"})


def check_positive(cfg, *names: str) -> None:
    """Refuses a size below 1 at start-up, naming the flag."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise Refusal(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")


def check_dropout(cfg, *names: str) -> None:
    for name in names:
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise Refusal(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(cfg, name)}")


def build_embedding(cfg, dictionary) -> nn.Embedding:
    """The word embeddings: N(0, 1/embed_dim), or ``--embed-path`` vectors where it has the word;
    padding zero; frozen with ``--freeze-embed``."""
    embed_tokens = nn.Embedding(len(dictionary), cfg.embed_dim, padding_idx=dictionary.pad())
    nn.init.normal_(embed_tokens.weight, mean=0.0, std=cfg.embed_dim**-0.5)
    if cfg.embed_path:
        weights, coverage = load_embedding_weights(cfg.embed_path, dictionary, embed_tokens.weight.detach())
        embed_tokens.weight.data.copy_(weights)
        logger.info(f"loaded {cfg.embed_path}: {coverage:.1%} of the {len(dictionary)}-word dictionary found")
    with torch.no_grad():
        embed_tokens.weight[dictionary.pad()].zero_()
    embed_tokens.weight.requires_grad = not cfg.freeze_embed
    return embed_tokens


class TiedOutput(nn.Module):
    """Scores words by the dot product with their (shared) input embeddings."""

    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.embed_tokens.weight)


class SentenceEncoder(FairseqEncoder):
    """A sentence -> one vector (``sentence_representation``, the subclass's network) -> the latent head.

    Its output holds the latent head's tensors alone (``z``, and ``mean``/``logvar`` for a Gaussian
    head): nothing else of the sentence can reach the decoder. A subclass builds its network and sets
    ``self.latent_head`` (:func:`~fairseq_wae.models.latent.build_latent_head`); the order it builds
    them in is the order of the random initialisation, so it is left to each model to keep.
    """

    latent_head: nn.Module

    def __init__(self, dictionary, max_positions: int):
        super().__init__(dictionary)
        self.max_source_positions = max_positions

    def sentence_representation(self, src_tokens: Tensor, src_lengths: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor,
        latent: Optional[Tensor] = None,
        sample_posterior: bool = False,
        noise_generator: Optional[torch.Generator] = None,
    ) -> Dict[str, Tensor]:
        """Encodes a batch into ``{"z": ...}`` (plus ``"mean"``/``"logvar"`` for a Gaussian head).

        ``latent`` bypasses the encoder: the decoder is then conditioned on the given codes (prior
        sampling), cast to the model's precision (``fairseq-generate --fp16`` halves the model). A
        Gaussian head samples z in training or with ``sample_posterior``, else uses the
        mean; its noise comes from ``noise_generator`` (the criterion's, keyed by update and micro-batch).
        """
        if latent is not None:
            return {"z": latent.to(next(self.latent_head.parameters()).dtype)}
        return self.latent_head(self.sentence_representation(src_tokens, src_lengths),
                                sample=self.training or sample_posterior, generator=noise_generator)

    def reorder_encoder_out(self, encoder_out: Dict[str, Tensor], new_order: Tensor) -> Dict[str, Tensor]:
        return {key: value.index_select(0, new_order) for key, value in encoder_out.items()}

    def max_positions(self) -> int:
        return self.max_source_positions


def runs_autoencoders(task_class) -> bool:
    """Whether the plugin's autoencoders are built under this task class: sentence_autoencoding and its
    subclasses (prior_sampling)."""
    from fairseq.tasks import TASK_REGISTRY

    ours = TASK_REGISTRY.get("sentence_autoencoding")
    return isinstance(task_class, type) and ours is not None and issubclass(task_class, ours)


def wrong_task_message(task: str) -> str:
    return (f"--task {task} cannot run a fairseq-wae autoencoder: give --task sentence_autoencoding (sentences "
            "reconstructed: fairseq-train, fairseq-generate, fairseq-interactive) or --task prior_sampling "
            "(fairseq-generate: sentences drawn from the prior)")


def _flag_value(argv, flag: str) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    return None


@explain_failures_of_fairseq
def wrong_task(error: BaseException) -> Optional[str]:
    """fairseq's commands set their task up before they build a model: another task fails there on an
    autoencoder's data folder (translation: "Could not infer language pair"). A command line that names
    another task with one of the plugin's archs or checkpoints is refused for that, in one line."""
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    from fairseq_wae.checkpoint_utils import is_autoencoder_checkpoint, load_checkpoint_state

    task = _flag_value(sys.argv, "--task")
    if task is None or runs_autoencoders(TASK_REGISTRY.get(task)):
        return None
    paths = [path for path in (_flag_value(sys.argv, "--path") or "").split(os.pathsep) if os.path.isfile(path)]
    ours = getattr(ARCH_MODEL_REGISTRY.get(_flag_value(sys.argv, "--arch")), "BINDS_DICTIONARY", False) or any(
        is_autoencoder_checkpoint(load_checkpoint_state(path)) for path in paths)
    return wrong_task_message(task) if ours else None


class SentenceAutoencoderModel(FairseqEncoderDecoderModel):
    """Sentence autoencoder; ``forward`` also returns the encoder output for the criterion's penalty."""

    #: its checkpoints carry the fingerprint of the dictionary it was trained with (:class:`DictionaryBinding`)
    BINDS_DICTIONARY = True

    def __init__(self, encoder: SentenceEncoder, decoder, dictionary_path=None):
        super().__init__(encoder, decoder)
        self.schedule_state = ScheduleStateSlot()
        self.dictionary_binding = DictionaryBinding(encoder.dictionary, dictionary_path)

    @classmethod
    def check_config(cls, cfg) -> None:
        """Refuses nonsense options at start-up, naming the flag."""

    @classmethod
    def describe_network(cls, cfg) -> str:
        """The network's sizes in words, for a model card (``cfg``: the checkpoint's model config)."""
        raise NotImplementedError

    @classmethod
    def build_network(cls, cfg, dictionary, embed_tokens: nn.Embedding):
        """(encoder, decoder) sharing ``embed_tokens``: what a model subclass defines."""
        raise NotImplementedError

    @classmethod
    def build_model(cls, cfg, task):
        if not runs_autoencoders(type(task)):  # fairseq's language_modeling failed on the model (AttributeError)
            from fairseq.tasks import TASK_REGISTRY

            name = next((name for name, kind in TASK_REGISTRY.items() if kind is type(task)), type(task).__name__)
            raise Refusal(wrong_task_message(name))
        cls.check_config(cfg)
        dictionary = task.source_dictionary
        encoder, decoder = cls.build_network(cfg, dictionary, build_embedding(cfg, dictionary))
        return cls(encoder, decoder, getattr(task, "dictionary_path", None))

    @classmethod
    def from_pretrained(cls, model_name_or_path: str, checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        **kwargs):
        """A trained autoencoder as an :class:`~fairseq_wae.models.hub_interface.AutoencoderHubInterface`.

        ``model_name_or_path``: a folder made by ``fairseq-wae-export`` (weights, dict.txt, tokeniser),
        or a checkpoint folder with ``checkpoint_file=`` and ``data_name_or_path=`` the data folder.
        Any fairseq-wae model loads, whichever class this is called on.
        """
        from fairseq_wae.models.hub_interface import load_hub_interface

        return load_hub_interface(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_head.latent_dim

    @property
    def is_gaussian(self) -> bool:
        return self.encoder.latent_head.is_gaussian

    def begin_update(self) -> None:
        """Called by the task before the first micro-batch of every update, and of every retry of one (an
        overflow, fairseq's NaN re-run): the update's statistics start afresh."""
        for module in self.modules():
            if isinstance(module, FixedScaleBatchNorm):
                module.begin_update()

    def end_update(self) -> None:
        """Called by the task after each optimizer step, on every worker: statistics gathered over the
        update's batches (BN-VAE's running statistics) move once, from those of every worker."""
        for module in self.modules():
            if isinstance(module, FixedScaleBatchNorm):
                module.end_update()

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **kwargs):
        encoder_out = self.encoder(src_tokens, src_lengths, **kwargs)
        logits, extra = self.decoder(prev_output_tokens, encoder_out)
        extra["latent"] = encoder_out
        return logits, extra
