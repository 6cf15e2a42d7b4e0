"""fairseq-wae: LSTM and Transformer sentence autoencoders (DAE, VAE, WAE, stochastic WAE) as fairseq
components.

Use with ``fairseq-train --user-dir fairseq_wae`` (or the installed package's folder).
"""
__version__ = "0.1.0"

from fairseq_wae.errors import show_refusals_as_one_line
from fairseq_wae.save_dir_lock import release_locks_when_fairseq_train_ends

show_refusals_as_one_line()
release_locks_when_fairseq_train_ends()

from fairseq_wae import criterions, models, tasks, tokenizer  # noqa: F401  (registers the components)
from fairseq_wae.models.lstm_autoencoder import LSTMAutoencoderModel  # noqa: F401  (from_pretrained)
from fairseq_wae.models.transformer_autoencoder import TransformerAutoencoderModel  # noqa: F401
