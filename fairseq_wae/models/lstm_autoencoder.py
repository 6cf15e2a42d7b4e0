"""One LSTM sentence autoencoder for the DAE, the VAE, the WAE and the stochastic WAE.

Encoder and decoder are shared by all flavours; what differs is the latent head (deterministic or
Gaussian, :mod:`fairseq_wae.models.latent`) and the criterion's penalty. The named architectures at
the bottom fix the paper's sizes.
"""
import logging
from dataclasses import dataclass, field, fields
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    register_model,
    register_model_architecture,
)
from torch import Tensor

from fairseq_wae.checkpoints import DictionaryBinding
from fairseq_wae.embeddings import load_embedding_weights
from fairseq_wae.models.latent import LATENT_HEADS, build_latent_head
from fairseq_wae.schedules import ScheduleStateSlot

logger = logging.getLogger(__name__)

LATENT_TO_DECODER = ChoiceEnum(["init", "concat", "both"])


@dataclass
class LSTMAutoencoderConfig(FairseqDataclass):
    embed_dim: int = field(default=300, metadata={"help": "word embedding size (shared by encoder and decoder)"})
    embed_path: Optional[str] = field(
        default=None,
        metadata={"help": "pretrained embeddings: word2vec/GloVe text or word2vec binary (.bin) file"},
    )
    freeze_embed: bool = field(default=False, metadata={"help": "do not train the word embeddings"})
    encoder_hidden_size: int = field(default=100, metadata={"help": "encoder LSTM units (per direction)"})
    encoder_layers: int = field(default=1, metadata={"help": "encoder LSTM layers"})
    encoder_bidirectional: bool = field(
        default=False, metadata={"help": "bidirectional encoder; z reads the final forward and backward states"}
    )
    decoder_hidden_size: int = field(default=100, metadata={"help": "decoder LSTM units"})
    decoder_layers: int = field(default=1, metadata={"help": "decoder LSTM layers"})
    latent_dim: int = field(default=100, metadata={"help": "size of the sentence code z"})
    latent_head: ChoiceEnum(list(LATENT_HEADS)) = field(
        default="deterministic",
        metadata={"help": "deterministic z = f(x) (DAE, WAE) or Gaussian q(z|x) (VAE, stochastic WAE)"},
    )
    latent_to_decoder: LATENT_TO_DECODER = field(
        default="both",
        metadata={"help": "how z conditions the decoder: its initial state, concatenated to every input, or both"},
    )
    dropout: float = field(default=0.2, metadata={"help": "dropout on embeddings and decoder outputs"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the output projection to the word embeddings"}
    )
    max_target_positions: int = field(default=1024, metadata={"help": "longest sentence the decoder generates"})


def _check_config(cfg) -> None:
    """Refuse nonsense sizes at start-up, naming the flag."""
    for name in ("embed_dim", "encoder_hidden_size", "encoder_layers", "decoder_hidden_size", "decoder_layers",
                 "latent_dim"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {cfg.dropout}")


class LSTMSentenceEncoder(FairseqEncoder):
    """Reads a sentence with an LSTM; the latent head turns its final state into z."""

    def __init__(self, cfg, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.encoder_hidden_size,
            num_layers=cfg.encoder_layers,
            bidirectional=cfg.encoder_bidirectional,
            batch_first=True,
        )
        directions = 2 if cfg.encoder_bidirectional else 1
        self.latent_head = build_latent_head(cfg.latent_head, directions * cfg.encoder_hidden_size, cfg.latent_dim)
        self.max_source_positions = cfg.max_target_positions

    def sentence_representation(self, src_tokens: Tensor, src_lengths: Tensor) -> Tensor:
        """The final hidden state of the top layer (both directions if bidirectional)."""
        x = self.dropout(self.embed_tokens(src_tokens))
        packed = nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (final_hidden, _) = self.lstm(packed)
        if self.lstm.bidirectional:
            return torch.cat([final_hidden[-2], final_hidden[-1]], dim=-1)
        return final_hidden[-1]

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
        sampling). A Gaussian head samples z in training or with ``sample_posterior``, else uses the
        mean; its noise comes from ``noise_generator`` (the criterion's, keyed by update and micro-batch).
        """
        if latent is not None:
            return {"z": latent}
        return self.latent_head(self.sentence_representation(src_tokens, src_lengths),
                                sample=self.training or sample_posterior, generator=noise_generator)

    def reorder_encoder_out(self, encoder_out: Dict[str, Tensor], new_order: Tensor) -> Dict[str, Tensor]:
        return {key: value.index_select(0, new_order) for key, value in encoder_out.items()}

    def max_positions(self) -> int:
        return self.max_source_positions


class LSTMSentenceDecoder(FairseqIncrementalDecoder):
    """An LSTM language model conditioned on z (initial state and/or every input step)."""

    def __init__(self, cfg, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(cfg.dropout)
        self.concat_latent = cfg.latent_to_decoder in ("concat", "both")
        self.num_layers, self.hidden_size = cfg.decoder_layers, cfg.decoder_hidden_size
        self.latent_to_state = (
            nn.Linear(cfg.latent_dim, 2 * self.num_layers * self.hidden_size)
            if cfg.latent_to_decoder in ("init", "both")
            else None
        )
        input_size = cfg.embed_dim + (cfg.latent_dim if self.concat_latent else 0)
        self.lstm = nn.LSTM(input_size, self.hidden_size, num_layers=self.num_layers, batch_first=True)
        if cfg.share_decoder_input_output_embed:
            self.output_projection = nn.Sequential(
                nn.Linear(self.hidden_size, cfg.embed_dim, bias=False), TiedOutput(embed_tokens)
            )
        else:
            self.output_projection = nn.Linear(self.hidden_size, len(dictionary))
        self.max_target_positions = cfg.max_target_positions

    def initial_state(self, z: Tensor):
        batch = z.size(0)
        if self.latent_to_state is None:
            zeros = z.new_zeros(self.num_layers, batch, self.hidden_size)
            return zeros, zeros
        hidden, cell = self.latent_to_state(z).view(batch, 2, self.num_layers, self.hidden_size).unbind(1)
        return torch.tanh(hidden).transpose(0, 1).contiguous(), cell.transpose(0, 1).contiguous()

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Dict[str, Tensor],
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        **unused,
    ):
        z = encoder_out["z"]
        cached = self.get_incremental_state(incremental_state, "lstm_state") if incremental_state is not None else None
        if incremental_state is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]
        state = (cached["hidden"], cached["cell"]) if cached is not None else self.initial_state(z)

        x = self.dropout(self.embed_tokens(prev_output_tokens))
        if self.concat_latent:
            x = torch.cat([x, z.unsqueeze(1).expand(-1, x.size(1), -1)], dim=-1)
        outputs, (hidden, cell) = self.lstm(x, state)
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "lstm_state", {"hidden": hidden, "cell": cell})
        return self.output_projection(self.dropout(outputs)), {"attn": None}

    def reorder_incremental_state(self, incremental_state, new_order: Tensor) -> None:
        cached = self.get_incremental_state(incremental_state, "lstm_state")
        if cached is None:
            return
        reordered = {key: value.index_select(1, new_order) for key, value in cached.items()}
        self.set_incremental_state(incremental_state, "lstm_state", reordered)

    def max_positions(self) -> int:
        return self.max_target_positions


class TiedOutput(nn.Module):
    """Scores words by the dot product with their (shared) input embeddings."""

    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.embed_tokens.weight)


@register_model("lstm_autoencoder", dataclass=LSTMAutoencoderConfig)
class LSTMAutoencoderModel(FairseqEncoderDecoderModel):
    """Sentence autoencoder; ``forward`` also returns the encoder output for the criterion's penalty."""

    def __init__(self, encoder, decoder, dictionary_path=None):
        super().__init__(encoder, decoder)
        self.schedule_state = ScheduleStateSlot()
        self.dictionary_binding = DictionaryBinding(encoder.dictionary, dictionary_path)

    @classmethod
    def build_model(cls, cfg, task):
        _check_config(cfg)
        dictionary = task.source_dictionary
        embed_tokens = nn.Embedding(len(dictionary), cfg.embed_dim, padding_idx=dictionary.pad())
        nn.init.normal_(embed_tokens.weight, mean=0.0, std=cfg.embed_dim**-0.5)
        if cfg.embed_path:
            weights, coverage = load_embedding_weights(cfg.embed_path, dictionary, embed_tokens.weight.detach())
            embed_tokens.weight.data.copy_(weights)
            logger.info(f"loaded {cfg.embed_path}: {coverage:.1%} of the {len(dictionary)}-word dictionary found")
        with torch.no_grad():
            embed_tokens.weight[dictionary.pad()].zero_()
        embed_tokens.weight.requires_grad = not cfg.freeze_embed
        encoder = LSTMSentenceEncoder(cfg, dictionary, embed_tokens)
        decoder = LSTMSentenceDecoder(cfg, dictionary, embed_tokens)
        return cls(encoder, decoder, getattr(task, "dictionary_path", None))

    @classmethod
    def from_pretrained(cls, model_name_or_path: str, checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        **kwargs):
        """A trained autoencoder as an :class:`~fairseq_wae.hub_interface.AutoencoderHubInterface`.

        ``model_name_or_path``: a folder made by ``fairseq-wae-export`` (weights, dict.txt, tokeniser),
        or a checkpoint folder with ``checkpoint_file=`` and ``data_name_or_path=`` the data folder.
        """
        from fairseq_wae.hub_interface import load_hub_interface

        return load_hub_interface(model_name_or_path, checkpoint_file, data_name_or_path, **kwargs)

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_head.latent_dim

    @property
    def is_gaussian(self) -> bool:
        return self.encoder.latent_head.is_gaussian

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **kwargs):
        encoder_out = self.encoder(src_tokens, src_lengths, **kwargs)
        logits, extra = self.decoder(prev_output_tokens, encoder_out)
        extra["latent"] = encoder_out
        return logits, extra


def _fill_defaults(args) -> None:
    for f in fields(LSTMAutoencoderConfig):
        if not hasattr(args, f.name):
            setattr(args, f.name, f.default)


def _architecture(name: str, **settings):
    """Registers a named architecture: ``settings`` are its defaults, command-line flags still win."""

    def arch(args):
        for key, value in settings.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
        _fill_defaults(args)

    arch.__name__ = name
    register_model_architecture("lstm_autoencoder", name)(arch)



# There are two networks per size: a deterministic latent head and a Gaussian one. The criterion makes
# the flavour (ae_cross_entropy: DAE, vae_kl: VAE, wae_mmd: WAE, wae_mmd --kl-variance-penalty:
# stochastic WAE); the four names exist so that a command line reads as the paper's model it trains:
#   lstm_ae_paper  == lstm_wae_paper   (deterministic z)
#   lstm_vae_paper == lstm_swae_paper  (Gaussian q(z|x))

# Section 3.1: 300d embeddings, one 100-unit LSTM layer each side, 100d z.
_PAPER = dict(embed_dim=300, encoder_hidden_size=100, decoder_hidden_size=100, latent_dim=100)
_architecture("lstm_ae_paper", latent_head="deterministic", **_PAPER)  # the DAE's network
_architecture("lstm_wae_paper", latent_head="deterministic", **_PAPER)  # the same network, for the WAE
_architecture("lstm_vae_paper", latent_head="gaussian", **_PAPER)  # the VAE's network
_architecture("lstm_swae_paper", latent_head="gaussian", **_PAPER)  # the same network, for the stochastic WAE

# Small enough to train in seconds on a CPU: for tests and the README's quick start.
_TINY = dict(embed_dim=32, encoder_hidden_size=64, decoder_hidden_size=64, latent_dim=16, dropout=0.0)
_architecture("lstm_ae_tiny", latent_head="deterministic", **_TINY)  # DAE
_architecture("lstm_wae_tiny", latent_head="deterministic", **_TINY)  # the same network, for the WAE
_architecture("lstm_vae_tiny", latent_head="gaussian", **_TINY)  # VAE (and, with wae_mmd, stochastic WAE)
