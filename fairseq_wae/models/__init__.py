from fairseq_wae.models import lstm_autoencoder  # noqa: F401
