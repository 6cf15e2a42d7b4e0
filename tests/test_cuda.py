"""The penalties and criterions on a CUDA device, against the same computation on the CPU.

Skipped where torch sees no CUDA device (the development machine and CI); scripts/gpu_check.sh runs
them on a GPU machine."""
import pytest
import torch

from fairseq_wae.penalties import AUTHORS_IMQ_C_BASE_PER_DIM, AUTHORS_IMQ_SCALES, gaussian_kl, imq_kernel, mmd_unbiased, rbf_kernel, variance_kl

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_and_its_gradient_on_cuda_equal_the_cpu(kernel):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(64, 100, generator=generator, dtype=torch.float64) * 1.5 + 0.3
    prior = torch.randn(64, 100, generator=generator, dtype=torch.float64)
    k = rbf_kernel if kernel == "rbf" else (lambda d: imq_kernel(d, 100, AUTHORS_IMQ_SCALES, AUTHORS_IMQ_C_BASE_PER_DIM))
    results = []
    for device in ("cpu", "cuda"):
        leaf = z.to(device).requires_grad_(True)
        mmd = mmd_unbiased(leaf, prior.to(device), k)
        mmd.backward()
        results.append((mmd.item(), leaf.grad.cpu()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-9)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-7, atol=1e-12)


def test_kl_terms_on_cuda_equal_the_cpu():
    generator = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(32, 16, generator=generator), torch.randn(32, 16, generator=generator)
    assert torch.allclose(gaussian_kl(mean, logvar), gaussian_kl(mean.cuda(), logvar.cuda()).cpu(), atol=1e-6)
    assert torch.allclose(variance_kl(logvar), variance_kl(logvar.cuda()).cpu(), atol=1e-5)


@pytest.mark.parametrize("arch,criterion,flags", [
    ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.3"]),
    ("lstm_vae_tiny", "vae_kl", ["--kl-weight", "0.5"]),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "3"]),
    ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"]),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_training_step_on_cuda_is_finite_and_reaches_the_encoder(toy_data, arch, criterion, flags, dtype):
    from helpers import build, first_batch

    task, model, crit = build(toy_data, arch, criterion, *flags)
    sample = first_batch(task)
    model = model.cuda().to(dtype).train()
    sample = {"net_input": {k: v.cuda() for k, v in sample["net_input"].items()},
              "target": sample["target"].cuda(), "ntokens": sample["ntokens"]}
    crit.set_training_progress(3, 2)
    loss, _, log = crit(model, sample)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters()
               if p.requires_grad)
