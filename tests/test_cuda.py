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
    k = rbf_kernel if kernel == "rbf" else (lambda d, pairs=None: imq_kernel(d, 100, AUTHORS_IMQ_SCALES, AUTHORS_IMQ_C_BASE_PER_DIM))
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


#: The unit roundoff of each format (tests/test_precision.py explains the 16u allowed below).
UNIT_ROUNDOFF = {torch.float32: 2.0**-23, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


@pytest.mark.parametrize("arch,criterion,flags", [
    ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.3"]),
    ("lstm_vae_tiny", "vae_kl", ["--kl-weight", "0.5"]),
    ("lstm_wae_tiny", "wae_mmd", ["--mmd-lambda", "3"]),
    ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"]),
    ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01"]),
])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_training_step_on_cuda_in_half_precision_logs_the_cuda_float32_values_and_reaches_the_encoder(
        toy_data, arch, criterion, flags, dtype):
    """The same model, batch and draws on CUDA in float32 (TF32 off) and in ``dtype``: every logged value
    within 16 unit roundoffs of the format. Draws are compared on one device: a CUDA generator and a CPU
    generator with the same seed draw different numbers. The model's dropout is 0: CUDA's dropout kernel
    vectorises by element size (8 elements for 16-bit types, 4 for 32-bit), so one seed draws other masks
    per dtype (dropout's equivalence is data-parallel's, in one dtype); the criterions' own draws (word
    dropout, prior, posterior) stay. The control: the same step with another update's draws differs by
    more than that."""
    import copy

    from helpers import build, first_batch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    task, model, crit = build(toy_data, arch, criterion, *flags, "--dropout", "0")
    sample = first_batch(task)
    on_cuda = {"net_input": {k: v.cuda() for k, v in sample["net_input"].items()},
               "target": sample["target"].cuda(), "ntokens": sample["ntokens"], "id": sample["id"].cuda()}
    crit.cuda()

    def step(network, update):
        crit.set_training_progress(update + 1, 2)
        crit.set_training_progress(update, 2)  # a new update: its draws
        loss, _, log = crit(network.train(), on_cuda)
        loss.backward()
        # the encoder's gradient norm too: the loss at initialisation hardly depends on the draws
        log = {**log, "encoder_grad_norm": torch.cat([p.grad.double().flatten() for p in network.encoder.parameters()
                                                      if p.grad is not None]).norm()}
        return loss, {key: torch.as_tensor(value).double().cpu() for key, value in log.items()}

    _, reference = step(copy.deepcopy(model).cuda(), 3)
    _, other_draws = step(copy.deepcopy(model).cuda(), 4)
    network = copy.deepcopy(model).cuda().to(dtype)
    loss, log = step(network, 3)
    assert torch.isfinite(loss) and list(log) == list(reference)
    tolerance = 16 * UNIT_ROUNDOFF[dtype]

    def worst(values):
        return max(float(((values[key] - expected).abs() / expected.abs().max().clamp_min(1e-6)).max())
                   for key, expected in reference.items())

    assert worst(log) <= tolerance, log
    assert worst(other_draws) > tolerance  # the control
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.encoder.parameters()
               if p.requires_grad)
