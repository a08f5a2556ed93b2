"""Running the interpretations of ``visualize`` on several processes: gloo on CPU cores (forked, the
model and data shared), NCCL on GPUs (spawned). Each step shards its units or data by itself
(``interp.steps.common.my_share``); rank zero gathers and writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.errors import InterpError


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (for the process group's rendezvous)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: ``work(model, data, callbacks, run_dir, rank)``: what each process runs (rank zero writes)
Work = Callable[[torch.nn.Module, Any, list[Any], Path, int], None]


@dataclass
class Job:
    """What every process of :func:`run_on_processes` gets: the work, its inputs and the rendezvous.

    Attributes:
        work: the function each rank runs.
        model, data, callbacks, run_dir: its arguments.
        device: ``cpu`` or ``cuda``; the backend follows (gloo or NCCL).
        world: the number of processes.
        port: the rendezvous port on 127.0.0.1.
        threads: torch threads per process.
    """

    work: Work
    model: torch.nn.Module
    data: Any
    callbacks: list[Any]
    run_dir: Path
    device: str
    world: int
    port: int
    threads: int


def _worker(rank: int, job: Job) -> None:
    import torch.distributed as dist

    torch.set_num_threads(job.threads)
    backend = "nccl" if job.device.startswith("cuda") else "gloo"
    model = job.model
    if job.device.startswith("cuda"):
        torch.cuda.set_device(rank)
        model = model.to(f"cuda:{rank}")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{job.port}", rank=rank, world_size=job.world)
    try:
        job.work(model, job.data, job.callbacks, job.run_dir, rank)
    finally:
        dist.destroy_process_group()


def run_on_processes(
    work: Work, devices: int, device: str, model: torch.nn.Module, data: Any, callbacks: list[Any], run_dir: Path
) -> None:
    """Run ``work`` on ``devices`` processes (gloo on CPU, NCCL on GPUs): units and data are
    sharded across the processes by the steps themselves, rank zero gathers and writes. On the CPU
    the processes are forked (the model and data are shared, not pickled) and split the cores.

    Raises:
        InterpError: more CUDA processes than CUDA devices.
    """
    import os

    import torch.multiprocessing as mp

    if device.startswith("cuda") and devices > torch.cuda.device_count():
        raise InterpError(f"devices={devices}: this machine has {torch.cuda.device_count()} CUDA devices")
    threads = max(1, (os.cpu_count() or 1) // devices) if not device.startswith("cuda") else 1
    method = "spawn" if device.startswith("cuda") else "fork"
    job = Job(
        work=work,
        model=model.cpu() if method == "spawn" else model,
        data=data,
        callbacks=callbacks,
        run_dir=run_dir,
        device=device,
        world=devices,
        port=free_port(),
        threads=threads,
    )
    mp.start_processes(_worker, args=(job,), nprocs=devices, start_method=method, join=True)
