"""Process-group plumbing: torchrun / DeepSpeed launcher environment, gloo on CPU, rank-0 broadcasts.

A single process with DeepSpeed still needs a process group; it gets a one-member group on a free
loopback port. Only rank 0 reports and writes files; every rank joins collective saves.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands among the training processes."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as error:
        raise ValueError(f"environment variable {name} must be an integer, not {value!r}") from error


def launcher_info() -> DistributedInfo:
    """Rank, local rank and world size from the launcher's environment (1 process when absent)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid launcher environment: RANK={rank} WORLD_SIZE={world_size}")
    return DistributedInfo(rank=rank, local_rank=_env_int("LOCAL_RANK", rank), world_size=world_size)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pick_device(info: DistributedInfo) -> torch.device:
    """This process's GPU (by local rank) when CUDA is there, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def backend_name() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def ensure_single_process_env() -> None:
    """Fill in a one-process rendezvous on loopback when no launcher set one."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


RENDEZVOUS_LISTEN_PORT_ENV = "KUBEPILOT_RENDEZVOUS_LISTEN_PORT"
"""Set when rank 0's store must listen on another port than the one the other ranks dial
(``MASTER_PORT``, a Service's port that forwards to this one): hosts whose pods share one network
namespace, such as the devcluster, cannot bind both on the same port."""


def use_rank0_listen_port(info: DistributedInfo) -> None:
    """On rank 0, listen on the rendezvous port it was given and reach its own store locally."""
    listen = os.environ.get(RENDEZVOUS_LISTEN_PORT_ENV, "")
    if info.rank == 0 and info.is_distributed and listen:
        os.environ["MASTER_PORT"] = listen
        os.environ["MASTER_ADDR"] = "127.0.0.1"


def init_process_group(info: DistributedInfo, use_deepspeed: bool) -> bool:
    """Join the process group when there is one to join; returns whether one was started here."""
    if not (info.is_distributed or use_deepspeed) or dist.is_initialized():
        return False
    use_rank0_listen_port(info)
    ensure_single_process_env()
    if use_deepspeed:
        if not torch.cuda.is_available():
            # Read when deepspeed is first imported: without it, it probes for GPUs.
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed
        import deepspeed.ops

        if not info.is_distributed and not torch.cuda.is_available():
            # A one-process group never reduces through shared memory: skip DeepSpeed's JIT build
            # of its shared-memory comm op, which takes minutes on a small CPU machine.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

        deepspeed.init_distributed(dist_backend=backend_name(), auto_mpi_discovery=False, verbose=False)
    else:
        dist.init_process_group(backend=backend_name())
    return True


def shutdown_process_group(started: bool) -> None:
    if started and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from_main(value: Any, info: DistributedInfo) -> Any:
    """Rank 0's ``value`` on every rank (a no-op for one process)."""
    if not info.is_distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(info: DistributedInfo) -> None:
    if info.is_distributed:
        dist.barrier()
