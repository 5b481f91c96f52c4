"""Where torch work runs: the device a setting names, its mixed precision, and how batches reach it.

On the CPU nothing changes from plain PyTorch: full precision, batches collated in the training loop. On CUDA:
bf16 autocast where the GPU has it (fp16 with gradient scaling otherwise; off by a setting), fused AdamW,
batches collated by DataLoader workers into pinned memory and copied without blocking, timings synchronised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch

from avatar.errors import AvatarError
from avatar.settings import DeviceConfig, check_settings


@dataclass(frozen=True)
class Accelerator:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None: full precision
    loader_workers: int  # 0: batches collated in the calling thread
    eval_batch_size: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16 gradients need scaling (bf16's range does not)."""
        return torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    def synchronize(self) -> None:
        """Wait for queued kernels, so that a clock read after this times the work (a no-op on the CPU)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def adamw(self, groups: list[dict], lr: float) -> torch.optim.AdamW:
        return torch.optim.AdamW(groups, lr=lr, **({"fused": True} if self.cuda else {}))

    def to_device(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if self.device.type == "cpu":
            return tuple(tensors)
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)

    def batches(self, items: Sequence, collate: Callable) -> Iterator[tuple[object, object]]:
        """(item, collate(item)) for each item in order: on the CPU collated here, on an accelerator by
        ``loader_workers`` processes into pinned memory. ``collate`` must return tensors (or lists of them)."""
        if self.device.type == "cpu" or self.loader_workers == 0:
            for item in items:
                yield item, collate(item)
            return
        loader = torch.utils.data.DataLoader(_Items(items, collate), batch_size=None, shuffle=False,
                                             num_workers=self.loader_workers, pin_memory=self.cuda)
        yield from zip(items, loader)


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: Sequence, collate: Callable):
        self.items, self.collate = items, collate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.collate(self.items[i])


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` stands for; one clear line when this machine has no such device."""
    check_settings(DeviceConfig(device=name))
    kind, _, index = name.partition(":")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise AvatarError(f"device {name}: torch {torch.__version__} ({build}) sees no CUDA device; use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise AvatarError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
        return torch.device(name)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise AvatarError(f"device {name}: this machine has no Apple GPU that torch can use; use --device cpu or auto")
    return torch.device(kind)


def accelerator(config: DeviceConfig | None = None) -> Accelerator:
    config = config or DeviceConfig()
    device = resolve_device(config.device)
    dtype = None
    if device.type == "cuda" and config.mixed_precision:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Accelerator(device, dtype, config.loader_workers, config.eval_batch_size)


CPU = Accelerator(torch.device("cpu"), None, 0, DeviceConfig.eval_batch_size)  # the deployment target, and the default


def placement(config: DeviceConfig, backend: str) -> tuple[int | None, int, dict]:
    """How candidate jobs spread over this machine (or a Ray cluster): (local workers, None for one per core;
    GPUs, one job at a time on each; the device settings each job runs with, as a dict)."""
    device = resolve_device(config.device)
    job = asdict(config)
    if device.type == "cpu":
        return None, 0, {**job, "device": "cpu"}
    if device.type == "cuda" and (backend == "ray" or device.index is None):  # each job sees its own GPU as cuda
        return None, 1 if backend == "ray" else torch.cuda.device_count(), {**job, "device": "cuda"}
    return 1, 0, {**job, "device": str(device)}  # the one device named (mps, cuda:N): one job at a time, here


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of a state dict in CPU memory (a best checkpoint kept aside costs no accelerator memory)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
