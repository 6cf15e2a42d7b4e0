"""One LSTM sentence autoencoder for the DAE, the VAE, the WAE and the stochastic WAE.

Encoder and decoder are shared by all flavours; what differs is the latent head (deterministic or
Gaussian, :mod:`fairseq_wae.models.latent`) and the criterion's penalty. The named architectures at
the bottom fix the paper's sizes.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
from fairseq.dataclass import ChoiceEnum
from fairseq.models import FairseqIncrementalDecoder, register_model
from torch import Tensor

from fairseq_wae.models.autoencoder import (
    SentenceAutoencoderConfig,
    SentenceAutoencoderModel,
    SentenceEncoder,
    TiedOutput,
    check_dropout,
    check_positive,
)
from fairseq_wae.models.architectures import architecture_registrar
from fairseq_wae.models.latent import build_latent_head

LATENT_TO_DECODER = ChoiceEnum(["init", "concat", "both"])


@dataclass
class LSTMAutoencoderConfig(SentenceAutoencoderConfig):
    encoder_hidden_size: int = field(default=100, metadata={"help": "encoder LSTM units (per direction)"})
    encoder_layers: int = field(default=1, metadata={"help": "encoder LSTM layers"})
    encoder_bidirectional: bool = field(
        default=False, metadata={"help": "bidirectional encoder; z reads the final forward and backward states"}
    )
    decoder_hidden_size: int = field(default=100, metadata={"help": "decoder LSTM units"})
    decoder_layers: int = field(default=1, metadata={"help": "decoder LSTM layers"})
    latent_to_decoder: LATENT_TO_DECODER = field(
        default="both",
        metadata={"help": "how z conditions the decoder: its initial state, concatenated to every input, or both"},
    )


class LSTMSentenceEncoder(SentenceEncoder):
    """Reads a sentence with an LSTM; the latent head turns its final state into z."""

    def __init__(self, cfg, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary, cfg.max_target_positions)
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
        self.latent_head = build_latent_head(cfg, directions * cfg.encoder_hidden_size)

    def sentence_representation(self, src_tokens: Tensor, src_lengths: Tensor) -> Tensor:
        """The final hidden state of the top layer (both directions if bidirectional)."""
        x = self.dropout(self.embed_tokens(src_tokens))
        packed = nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (final_hidden, _) = self.lstm(packed)
        if self.lstm.bidirectional:
            return torch.cat([final_hidden[-2], final_hidden[-1]], dim=-1)
        return final_hidden[-1]


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


@register_model("lstm_autoencoder", dataclass=LSTMAutoencoderConfig)
class LSTMAutoencoderModel(SentenceAutoencoderModel):
    @classmethod
    def check_config(cls, cfg) -> None:
        check_positive(cfg, "embed_dim", "encoder_hidden_size", "encoder_layers", "decoder_hidden_size",
                       "decoder_layers", "latent_dim")
        check_dropout(cfg, "dropout")

    @classmethod
    def describe_network(cls, cfg) -> str:
        return (f"embeddings {cfg.get('embed_dim')}, LSTM encoder {cfg.get('encoder_hidden_size')} x "
                f"{cfg.get('encoder_layers')}, decoder {cfg.get('decoder_hidden_size')} x {cfg.get('decoder_layers')}")

    @classmethod
    def build_network(cls, cfg, dictionary, embed_tokens: nn.Embedding):
        return LSTMSentenceEncoder(cfg, dictionary, embed_tokens), LSTMSentenceDecoder(cfg, dictionary, embed_tokens)


_architecture = architecture_registrar("lstm_autoencoder", LSTMAutoencoderConfig)

# There are two networks per size: a deterministic latent head and a Gaussian one. The criterion makes
# the flavour (ae_cross_entropy: DAE, vae_kl: VAE, wae_mmd: WAE, wae_mmd --kl-variance-penalty:
# stochastic WAE; aae: text-autoencoders' AAE, LAAE and DAAE); the names exist so that a command line reads
# as the model it trains:
#   lstm_ae_paper  == lstm_wae_paper                     (deterministic z)
#   lstm_vae_paper == lstm_swae_paper == lstm_aae_paper  (Gaussian q(z|x), as text-autoencoders' AAE samples z)

# Section 3.1: 300d embeddings, one 100-unit LSTM layer each side, 100d z.
_PAPER = dict(embed_dim=300, encoder_hidden_size=100, decoder_hidden_size=100, latent_dim=100)
_architecture("lstm_ae_paper", latent_head="deterministic", **_PAPER)  # the DAE's network
_architecture("lstm_wae_paper", latent_head="deterministic", **_PAPER)  # the same network, for the WAE
_architecture("lstm_vae_paper", latent_head="gaussian", **_PAPER)  # the VAE's network
_architecture("lstm_swae_paper", latent_head="gaussian", **_PAPER)  # the same network, for the stochastic WAE
_architecture("lstm_aae_paper", latent_head="gaussian", **_PAPER)  # the same network, for the AAE/LAAE/DAAE

# Small enough to train in seconds on a CPU: for tests and the README's quick start.
_TINY = dict(embed_dim=32, encoder_hidden_size=64, decoder_hidden_size=64, latent_dim=16, dropout=0.0)
_architecture("lstm_ae_tiny", latent_head="deterministic", **_TINY)  # DAE
_architecture("lstm_wae_tiny", latent_head="deterministic", **_TINY)  # the same network, for the WAE
_architecture("lstm_vae_tiny", latent_head="gaussian", **_TINY)  # VAE (and, with wae_mmd, stochastic WAE)
_architecture("lstm_aae_tiny", latent_head="gaussian", **_TINY)  # the same network, for the AAE
