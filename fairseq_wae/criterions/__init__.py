from fairseq_wae.criterions import adversarial, ae_cross_entropy, vae_kl, wae_mmd  # noqa: F401
