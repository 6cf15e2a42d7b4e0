#!/usr/bin/env python
"""Times fairseq-wae-fit-prior's densities on synthetic codes, and drawing codes from them.

    OMP_NUM_THREADS=2 python scripts/benchmark_prior.py [--codes 1000000 --dim 100 --components 10
        --max-fit-codes 50000 --flow-steps 1000 --draws 10000]

The codes: --codes draws of --dim dimensions from a mixture of --components Gaussians with random means
and covariances (float32, as a model's). Printed: the seconds to fit a ``gmm`` of --components
components (to a subsample of --max-fit-codes codes, the held-out 10% scored in full), a ``flow``
(--flow-steps Adam steps of 512 codes), a ``gaussian``; and the seconds to draw --draws codes keyed by
(seed, index) from N(0, I) and from each fitted density, as fairseq-generate --task prior_sampling does.
The aims (issue 42): a gmm within 2 minutes and a flow within 10 on 2 cores, 10,000 draws within 1 second.
"""
import argparse
import json
import time

import torch


def synthetic_codes(count: int, dim: int, components: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(components, dim, generator=generator)
    factors = torch.randn(components, dim, dim, generator=generator) / dim ** 0.5
    component = torch.randint(components, (count,), generator=generator)
    codes = torch.empty(count, dim)
    for k in range(components):
        rows = component == k
        codes[rows] = means[k] + torch.randn(int(rows.sum()), dim, generator=generator) @ factors[k].T
    return codes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--max-fit-codes", type=int, default=50_000)
    parser.add_argument("--flow-steps", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--densities", default="gaussian,gmm,flow")
    args = parser.parse_args(argv)

    from fairseq_wae.cli.fit_prior import fit_density
    from fairseq_wae.fitted_prior import FittedPrior
    from fairseq_wae.latent_space import prior_codes

    started = time.time()
    codes = synthetic_codes(args.codes, args.dim, args.components)
    report = {"codes": args.codes, "dim": args.dim, "torch_threads": torch.get_num_threads(),
              "make_codes_seconds": round(time.time() - started, 1)}
    started = time.time()
    prior_codes(range(args.draws), args.dim, 1, 1.0)
    report["draw_normal_seconds"] = round(time.time() - started, 3)
    for density in args.densities.split(","):
        started = time.time()
        record = fit_density(codes, density, components=args.components if density == "gmm" else None,
                             flow_steps=args.flow_steps, max_fit_codes=args.max_fit_codes)
        report[f"fit_{density}_seconds"] = round(time.time() - started, 1)
        report[f"{density}_fitted_codes"] = record["fitted_codes"]
        report[f"{density}_held_out_log_likelihood"] = round(record["held_out_log_likelihood"], 2)
        report["held_out_log_likelihood_standard_normal"] = round(record["held_out_log_likelihood_standard_normal"], 2)
        prior = FittedPrior(record)
        started = time.time()
        prior_codes(range(args.draws), args.dim, 1, 1.0, prior=prior)
        report[f"draw_{density}_seconds"] = round(time.time() - started, 3)
        print(json.dumps({k: v for k, v in report.items() if density in k}), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
