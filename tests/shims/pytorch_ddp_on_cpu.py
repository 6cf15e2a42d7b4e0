"""Test-only shim: ``fairseq-train`` with fairseq's own ``--ddp-backend pytorch_ddp`` (the GPU default) on
CPU processes, so that the tests run that path without a GPU.

fairseq 0.12 hands torch's DistributedDataParallel ``device_ids=[device_id]`` and ``output_device``,
which torch refuses for a module on the CPU ("device_ids ... must be None for CPU modules"). This drops
both for CPU modules, as torch asks, and runs fairseq-train's own ``cli_main`` otherwise unchanged.
The plugin itself never patches fairseq: only the tests start this file (tests/test_distributed.py,
through scripts/train_distributed_cpu.sh's FAIRSEQ_TRAIN).
"""
import torch.nn.parallel
from fairseq.models import distributed_fairseq_model


class CpuDistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, device_ids=None, output_device=None, **kwargs):
        on_cpu = next(module.parameters()).device.type == "cpu"
        super().__init__(module, device_ids=None if on_cpu else device_ids,
                         output_device=None if on_cpu else output_device, **kwargs)


distributed_fairseq_model.DistributedDataParallel = CpuDistributedDataParallel

if __name__ == "__main__":
    from fairseq_cli.train import cli_main

    cli_main()
