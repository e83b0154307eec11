"""``--device``: a device string checked against the machine before anything is built."""

from __future__ import annotations

import torch

from objdet.errors import ObjdetError

SUPPORTED = "cpu, cuda or cuda:N"


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1") -> a ``torch.device`` that exists on this machine.

    ``None`` picks ``cuda:<local_rank>`` when a GPU is visible, else the CPU. A malformed
    name, a CUDA device without a GPU, or an index past the last GPU is an ``ObjdetError``
    naming ``--device`` and what is available.
    """
    if name is None:
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ObjdetError(f"--device {name!r}: not a device; expected {SUPPORTED}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ObjdetError(f"--device {name!r}: {device.type} is not supported; expected {SUPPORTED}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ObjdetError(f"--device {name!r}: no CUDA GPU is visible on this machine; use --device cpu")
    if device.index is not None and device.index >= count:
        raise ObjdetError(
            f"--device {name!r}: there are {count} CUDA devices (cuda:0 to cuda:{count - 1})"
        )
    return device
