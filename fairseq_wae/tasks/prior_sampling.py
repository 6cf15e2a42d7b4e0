"""Task ``prior_sampling``: fairseq-generate decodes sentences from codes z ~ N(0, I), or from the density
of ``--prior-file`` (fitted to the model's codes by fairseq-wae-fit-prior: fairseq_wae/fitted_prior.py).

It reuses ``sentence_autoencoding`` (dictionary, model, checkpoint state); only the "data" differs:
``--num-samples`` empty sources, each paired with a prior code that depends on ``--seed`` and the
sample's index alone, so the samples do not depend on batching. fairseq's own search then decodes
(greedy, ``--beam``, ``--sampling`` with ``--sampling-topk``/``--sampling-topp``/``--temperature``).
"""
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.data import FairseqDataset
from fairseq.tasks import register_task

from fairseq_wae.errors import Refusal
from fairseq_wae.fitted_prior import load_prior
from fairseq_wae.latent_space import prior_codes
from fairseq_wae.tasks.sentence_autoencoding import SentenceAutoencodingConfig, SentenceAutoencodingTask


@dataclass
class PriorSamplingConfig(SentenceAutoencodingConfig):
    num_samples: int = field(default=0, metadata={"help": "how many sentences to sample from the prior"})
    latent_temperature: float = field(
        default=1.0, metadata={"help": "sample z ~ N(0, t^2 I): the scale of the codes, not fairseq's --temperature "
                                       "(the softmax temperature of --sampling); with --prior-file, the scale of "
                                       "the noise around the fitted density (a mixture's means stay)"}
    )
    prior_file: Optional[str] = field(
        default=None, metadata={"help": "sample from this prior file of fairseq-wae-fit-prior instead of N(0, I)"}
    )


class PriorSampleDataset(FairseqDataset):
    """``num_samples`` one-token (EOS) sources: placeholders that carry only an index."""

    def __init__(self, num_samples: int, eos: int, pad: int):
        self.num_samples, self.eos, self.pad = num_samples, eos, pad
        self.sizes = [1] * num_samples

    def __getitem__(self, index):
        return {"id": index}

    def __len__(self):
        return self.num_samples

    def num_tokens(self, index):
        return 1

    def size(self, index):
        return 1

    def collater(self, samples):
        if not samples:
            return {}
        ids = torch.tensor([s["id"] for s in samples], dtype=torch.long)
        return {
            "id": ids,
            "nsentences": len(samples),
            "ntokens": len(samples),
            "net_input": {
                "src_tokens": torch.full((len(samples), 1), self.eos, dtype=torch.long),
                "src_lengths": torch.ones(len(samples), dtype=torch.long),
            },
            "target": None,
        }


@register_task("prior_sampling", dataclass=PriorSamplingConfig)
class PriorSamplingTask(SentenceAutoencodingTask):
    fitted_prior = None  # the FittedPrior of --prior-file, loaded by setup_task

    @classmethod
    def setup_task(cls, cfg: PriorSamplingConfig, **kwargs):
        if cfg.num_samples < 1:
            raise Refusal(f"--task prior_sampling needs --num-samples N (N >= 1), got {cfg.num_samples}")
        if not 0 < cfg.latent_temperature < math.inf:
            raise Refusal(f"--latent-temperature must be a finite number > 0, got {cfg.latent_temperature}")
        if cfg.sample_posterior:
            raise Refusal("--sample-posterior concerns reconstruction: use --task sentence_autoencoding")
        task = super().setup_task(cfg, **kwargs)
        task.fitted_prior = load_prior(cfg.prior_file, "--prior-file") if cfg.prior_file else None
        return task

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        self.datasets[split] = PriorSampleDataset(self.cfg.num_samples, self.dictionary.eos(), self.dictionary.pad())

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        latent_dims = {model.latent_dim for model in models}
        if len(latent_dims) != 1:
            raise Refusal(f"an ensemble must share one latent size, got {sorted(latent_dims)}")
        if self.fitted_prior is not None:
            for model in models:
                self.fitted_prior.check_fits(model, "the model of --path")
        z = prior_codes(sample["id"].tolist(), latent_dims.pop(), self.cfg.seed, self.cfg.latent_temperature,
                        dtype=next(models[0].parameters()).dtype, prior=self.fitted_prior)
        sample["net_input"]["latent"] = z.to(sample["net_input"]["src_tokens"].device)
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)
