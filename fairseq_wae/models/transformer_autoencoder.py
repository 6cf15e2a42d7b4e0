"""A Transformer sentence autoencoder, trained by the same criterions as the LSTM one.

The encoder is fairseq's own ``TransformerEncoderBase``; its states are pooled into one vector
(``--latent-pooling``) for the shared latent heads. The decoder is built from fairseq's
``TransformerDecoderLayerBase`` and sees the sentence only through z (``--latent-injection``): as
``--latent-memory-slots`` vectors its layers cross-attend to, in place of the encoder states a
translation model attends to, and/or added to every input embedding. Nothing else of the encoder
reaches it, so prior sampling (z ~ N(0, I) and no sentence) is the same computation as reconstruction.
"""
import math
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
from fairseq import utils
from fairseq.dataclass import ChoiceEnum
from fairseq.models import FairseqIncrementalDecoder, register_model
from fairseq.models.transformer import TransformerConfig, TransformerEncoderBase
from fairseq.modules import FairseqDropout, LayerNorm, PositionalEmbedding
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase
from torch import Tensor

from fairseq_wae.errors import Refusal
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

LATENT_POOLING = ChoiceEnum(["mean", "first"])
LATENT_INJECTION = ChoiceEnum(["memory", "embedding", "both"])


@dataclass
class TransformerAutoencoderConfig(SentenceAutoencoderConfig):
    embed_dim: int = field(
        default=256, metadata={"help": "model size: word embeddings and every layer (encoder and decoder)"}
    )
    ffn_embed_dim: int = field(default=1024, metadata={"help": "inner size of every layer's feed-forward network"})
    encoder_layers: int = field(default=2, metadata={"help": "encoder Transformer layers"})
    decoder_layers: int = field(default=2, metadata={"help": "decoder Transformer layers"})
    attention_heads: int = field(default=4, metadata={"help": "attention heads per layer (must divide --embed-dim)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and layer outputs"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout inside the feed-forward networks"})
    activation_fn: ChoiceEnum(utils.get_available_activation_fns()) = field(
        default="relu", metadata={"help": "activation of the feed-forward networks"}
    )
    normalize_before: bool = field(default=False, metadata={"help": "layer norm before each block (pre-norm)"})
    latent_pooling: LATENT_POOLING = field(
        default="mean",
        metadata={"help": "sentence vector for z: mean of the encoder states over the words, or the state of "
                          "a learned leading vector (first)"},
    )
    latent_injection: LATENT_INJECTION = field(
        default="both",
        metadata={"help": "how z reaches the decoder: as memory its layers cross-attend to, added to every "
                          "input embedding, or both"},
    )
    latent_memory_slots: int = field(
        default=1, metadata={"help": "memory vectors z is projected to (--latent-injection memory or both)"}
    )


def fairseq_layer_config(cfg) -> TransformerConfig:
    """fairseq's TransformerConfig for the layers: one size, one depth per side, as the flags say."""
    sizes = dict(embed_dim=cfg.embed_dim, ffn_embed_dim=cfg.ffn_embed_dim, attention_heads=cfg.attention_heads,
                 normalize_before=cfg.normalize_before)
    return TransformerConfig.from_namespace(Namespace(
        **{f"{side}_{key}": value for side in ("encoder", "decoder") for key, value in sizes.items()},
        encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers, dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
        activation_fn=cfg.activation_fn, max_source_positions=cfg.max_target_positions + 1,
        max_target_positions=cfg.max_target_positions,
    ))


class TransformerSentenceEncoder(SentenceEncoder):
    """fairseq's Transformer encoder, its states pooled into the vector the latent head reads."""

    def __init__(self, cfg, layer_cfg: TransformerConfig, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary, cfg.max_target_positions)
        self.latent_head = build_latent_head(cfg, cfg.embed_dim)
        self.transformer = TransformerEncoderBase(layer_cfg, dictionary, embed_tokens)
        self.pooling = cfg.latent_pooling
        if self.pooling == "first":
            # like BERT's [CLS]: a vector of its own, learned even when the word embeddings are frozen
            self.leading_embedding = nn.Parameter(torch.randn(cfg.embed_dim) * cfg.embed_dim**-0.5)

    def sentence_representation(self, src_tokens: Tensor, src_lengths: Tensor) -> Tensor:
        """Mean of the top layer's states over the sentence's tokens (EOS included), or the state at
        the learned leading vector."""
        embeddings = None
        if self.pooling == "first":
            batch = src_tokens.size(0)
            embeddings = torch.cat([self.leading_embedding.expand(batch, 1, -1),
                                    self.transformer.embed_tokens(src_tokens)], dim=1)
            # the leading position's token only has to be some non-padding symbol (for the positions and
            # the padding mask): its embedding is replaced by the leading vector
            src_tokens = torch.cat([src_tokens.new_full((batch, 1), self.dictionary.bos()), src_tokens], dim=1)
        encoded = self.transformer(src_tokens, token_embeddings=embeddings)
        states = encoded["encoder_out"][0]  # time x batch x channels
        if self.pooling == "first":
            return states[0]
        words = (~encoded["encoder_padding_mask"][0]).t().unsqueeze(-1).type_as(states)
        return (states * words).sum(dim=0) / words.sum(dim=0)


class TransformerSentenceDecoder(FairseqIncrementalDecoder):
    """A Transformer language model conditioned on z alone (fairseq's decoder layers)."""

    def __init__(self, cfg, layer_cfg: TransformerConfig, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(cfg.embed_dim)
        self.embed_positions = PositionalEmbedding(cfg.max_target_positions, cfg.embed_dim, dictionary.pad(),
                                                   learned=False)
        self.dropout_module = FairseqDropout(cfg.dropout, module_name=type(self).__name__)
        attends_to_memory = cfg.latent_injection in ("memory", "both")
        self.memory_slots = cfg.latent_memory_slots if attends_to_memory else 0
        self.latent_to_memory = (nn.Linear(cfg.latent_dim, self.memory_slots * cfg.embed_dim)
                                 if attends_to_memory else None)
        self.latent_to_embedding = (nn.Linear(cfg.latent_dim, cfg.embed_dim)
                                    if cfg.latent_injection in ("embedding", "both") else None)
        self.layers = nn.ModuleList(
            TransformerDecoderLayerBase(layer_cfg, no_encoder_attn=not attends_to_memory)
            for _ in range(cfg.decoder_layers)
        )
        self.layer_norm = LayerNorm(cfg.embed_dim) if cfg.normalize_before else None
        if cfg.share_decoder_input_output_embed:
            self.output_projection = TiedOutput(embed_tokens)
        else:  # as fairseq's Transformer decoder
            self.output_projection = nn.Linear(cfg.embed_dim, len(dictionary), bias=False)
            nn.init.normal_(self.output_projection.weight, mean=0, std=cfg.embed_dim**-0.5)
        self.max_target_positions = cfg.max_target_positions
        self._causal_mask = torch.empty(0)

    def latent_memory(self, z: Tensor) -> Optional[Tensor]:
        """z as ``memory_slots`` vectors (slots x batch x channels) for the layers' cross-attention."""
        if self.latent_to_memory is None:
            return None
        return self.latent_to_memory(z).view(z.size(0), self.memory_slots, -1).transpose(0, 1)

    def causal_mask(self, length: int, like: Tensor) -> Tensor:
        """-inf above the diagonal: position t attends to positions <= t."""
        if self._causal_mask.size(0) < length or self._causal_mask.device != like.device:
            self._causal_mask = torch.triu(utils.fill_with_neg_inf(torch.zeros(length, length)), 1).to(like.device)
        return self._causal_mask[:length, :length].to(like.dtype)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Dict[str, Tensor],
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        **unused,
    ):
        z = encoder_out["z"]
        positions = self.embed_positions(prev_output_tokens, incremental_state=incremental_state)
        if incremental_state is not None:  # the layers keep the earlier steps' keys and values
            prev_output_tokens, positions = prev_output_tokens[:, -1:], positions[:, -1:]
        x = self.embed_scale * self.embed_tokens(prev_output_tokens) + positions
        if self.latent_to_embedding is not None:
            x = x + self.latent_to_embedding(z).unsqueeze(1)
        x = self.dropout_module(x).transpose(0, 1)  # time x batch x channels

        memory = self.latent_memory(z)
        padding = prev_output_tokens.eq(self.padding_idx)
        padding = padding if padding.any() else None
        mask = self.causal_mask(x.size(0), x) if incremental_state is None else None
        for layer in self.layers:
            x, _, _ = layer(x, memory, None, incremental_state, self_attn_mask=mask, self_attn_padding_mask=padding)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.output_projection(x.transpose(0, 1)), {"attn": None}

    @property
    def padding_idx(self) -> int:
        return self.dictionary.pad()

    def max_positions(self) -> int:
        return self.max_target_positions


@register_model("transformer_autoencoder", dataclass=TransformerAutoencoderConfig)
class TransformerAutoencoderModel(SentenceAutoencoderModel):
    @classmethod
    def check_config(cls, cfg) -> None:
        check_positive(cfg, "embed_dim", "ffn_embed_dim", "encoder_layers", "decoder_layers", "attention_heads",
                       "latent_dim", "latent_memory_slots")
        check_dropout(cfg, "dropout", "attention_dropout", "activation_dropout")
        if cfg.embed_dim % cfg.attention_heads:
            raise Refusal(f"--attention-heads {cfg.attention_heads} does not divide --embed-dim {cfg.embed_dim}: "
                          "each head takes an equal share of the model size")
        if cfg.latent_injection == "embedding" and cfg.latent_memory_slots != 1:
            raise Refusal(f"--latent-memory-slots {cfg.latent_memory_slots} has no effect with --latent-injection "
                          "embedding: use --latent-injection memory or both")

    @classmethod
    def describe_network(cls, cfg) -> str:
        return (f"Transformer, model size {cfg.get('embed_dim')}, {cfg.get('encoder_layers')} + "
                f"{cfg.get('decoder_layers')} layers, {cfg.get('attention_heads')} heads, feed-forward "
                f"{cfg.get('ffn_embed_dim')}, pooling {cfg.get('latent_pooling')}, z into the decoder by "
                f"{cfg.get('latent_injection')}")

    @classmethod
    def build_network(cls, cfg, dictionary, embed_tokens: nn.Embedding):
        layer_cfg = fairseq_layer_config(cfg)
        return (TransformerSentenceEncoder(cfg, layer_cfg, dictionary, embed_tokens),
                TransformerSentenceDecoder(cfg, layer_cfg, dictionary, embed_tokens))


_architecture = architecture_registrar("transformer_autoencoder", TransformerAutoencoderConfig)

# As for the LSTM, two networks per size (deterministic or Gaussian z) under the flavours' names:
#   transformer_ae_*  == transformer_wae_*   (deterministic z)
#   transformer_vae_* == transformer_swae_* == transformer_aae_*  (Gaussian q(z|x))

# Trains on SNLI-30k on a 2-core CPU in well under an hour per model.
_SMALL = dict(embed_dim=256, ffn_embed_dim=1024, encoder_layers=2, decoder_layers=2, attention_heads=4,
              latent_dim=100, dropout=0.1)
_architecture("transformer_ae_small", latent_head="deterministic", **_SMALL)
_architecture("transformer_wae_small", latent_head="deterministic", **_SMALL)
_architecture("transformer_vae_small", latent_head="gaussian", **_SMALL)
_architecture("transformer_swae_small", latent_head="gaussian", **_SMALL)
_architecture("transformer_aae_small", latent_head="gaussian", **_SMALL)

# Trains in seconds: for tests.
_TINY = dict(embed_dim=32, ffn_embed_dim=64, encoder_layers=1, decoder_layers=1, attention_heads=4, latent_dim=16,
             dropout=0.0)
_architecture("transformer_ae_tiny", latent_head="deterministic", **_TINY)
_architecture("transformer_wae_tiny", latent_head="deterministic", **_TINY)
_architecture("transformer_vae_tiny", latent_head="gaussian", **_TINY)
_architecture("transformer_swae_tiny", latent_head="gaussian", **_TINY)
_architecture("transformer_aae_tiny", latent_head="gaussian", **_TINY)
