from fairseq_wae.tasks import prior_sampling, sentence_autoencoding  # noqa: F401
