"""No criterion adds a host synchronisation to a training step: the operations that read a device's values
back to the host (``.item()``, ``nonzero``, boolean-mask indexing, ``median``, ...) are counted under a
TorchDispatchMode during a criterion's forward and backward and the model's end of the update, against the
same model's forward alone (which has its own: packing the lengths, fairseq's positions). On a GPU each
would stall the step."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import build, first_batch, start_workers
from test_distributed import free_port

SYNCS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive",
         "median", "nanmedian", "item"}

CASES = {
    "dae": ("lstm_ae_tiny", "ae_cross_entropy", ["--word-dropout", "0.2", "--dropout", "0.2"]),
    "input noise": ("lstm_ae_tiny", "ae_cross_entropy", ["--noise-drop", "0.1", "--noise-blank", "0.1",
                                                         "--noise-substitute", "0.1", "--noise-shuffle-distance", "3"]),
    "wae imq": ("lstm_wae_tiny", "wae_mmd", []),
    "wae rbf": ("lstm_wae_tiny", "wae_mmd", ["--mmd-kernel", "rbf"]),
    "wae global": ("lstm_wae_tiny", "wae_mmd", ["--mmd-global", "--mmd-kernel", "rbf"]),
    "swae": ("lstm_vae_tiny", "wae_mmd", ["--kl-variance-penalty", "1"]),
    "vae": ("lstm_vae_tiny", "vae_kl", ["--kl-anneal", "sigmoid", "--kl-free-bits", "0.5"]),
    "bn-vae": ("lstm_vae_tiny", "vae_kl", ["--bn-posterior-mean", "0.6"]),
    "aae": ("lstm_aae_tiny", "aae", ["--logvar-l1", "0.01"]),
    "transformer wae": ("transformer_wae_tiny", "wae_mmd", ["--dropout", "0.2"]),
}


class CountSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        indices = args[1] if name == "index" and len(args) > 1 else ()
        if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices if i is not None):
            name = "index[bool]"
        if name in SYNCS or name == "index[bool]":
            self.seen[name] = self.seen.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def syncs_added(data, case):
    """(syncs of the criterion's forward + backward, syncs of the model's forward alone)."""
    arch, criterion, flags = CASES[case]
    task, model, crit = build(data, arch, criterion, *flags, "--batch-size", "64")
    sample = first_batch(task, 32)
    model.train()
    crit.set_training_progress(3, 1)
    with CountSyncs() as alone:
        model(**sample["net_input"])
    with CountSyncs() as step:
        loss, _, _ = crit(model, sample)
        loss.backward()
        model.end_update()  # what the task calls after the optimizer step (BN-VAE's running statistics)
    return {key: n - alone.seen.get(key, 0) for key, n in step.seen.items() if n > alone.seen.get(key, 0)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_criterion_adds_a_host_sync_to_a_training_step(toy_data, case):
    assert syncs_added(toy_data, case) == {}


def test_the_counter_sees_a_sync():
    """The control: what the test counts is there to be seen."""
    with CountSyncs() as counter:
        x = torch.randn(5)
        x[x > 0].sum().item()
        torch.median(x)
    assert set(counter.seen) == {"index[bool]", "_local_scalar_dense", "median"}


def _worker(rank, port, data, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    results[rank] = syncs_added(data, "wae global")
    dist.destroy_process_group()


def test_mmd_global_adds_no_host_sync_on_two_gloo_workers(toy_data):
    results = start_workers(_worker, (free_port(), toy_data))
    assert dict(results) == {0: {}, 1: {}}
