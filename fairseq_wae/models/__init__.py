from fairseq_wae.models import lstm_autoencoder, transformer_autoencoder  # noqa: F401
