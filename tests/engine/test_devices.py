"""``--device`` is checked against the machine before anything is built."""

from __future__ import annotations

import pytest
import torch

from objdet.engine.devices import resolve_device
from objdet.errors import ObjdetError


def test_cpu_and_the_default() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected


@pytest.mark.parametrize(("name", "message"), [
    ("bogus", r"--device 'bogus': not a device; expected cpu, cuda or cuda:N"),
    ("cuda:x", r"--device 'cuda:x': not a device"),
    ("", r"--device '': not a device"),
    ("meta", r"--device 'meta': meta is not supported; expected cpu, cuda or cuda:N"),
])
def test_a_nonsense_device_names_the_flag(name: str, message: str) -> None:
    with pytest.raises(ObjdetError, match=f"^{message}"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu() -> None:
    with pytest.raises(ObjdetError, match=r"^--device 'cuda': no CUDA GPU is visible on this machine"):
        resolve_device("cuda")


def test_a_gpu_index_past_the_last_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # A two-GPU machine, as torch reports it (no such machine runs the tests).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(None, local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ObjdetError, match=r"^--device 'cuda:3': there are 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:3")
