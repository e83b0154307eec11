"""Tarballs in the TF2 zoo's layout, built from the reference checkpoint that TensorFlow
wrote (tests/fixtures/odapi_parity/ssd_mobilenet_v2), and the mirror the tests serve them from."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from range_http_server import ServerState

from objdet.zoo import ZooCache, ZooModel

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_parity" / "ssd_mobilenet_v2"
NAME = "ssd_mobilenet_v2_320x320_coco17_tpu-8"  # served with the reference checkpoint inside


def make_tarball(name: str, config_text: str | None = None, *, mtime: int = 0) -> bytes:
    """A .tar.gz in the TF2 zoo's layout: ``name/checkpoint/*``, ``name/pipeline.config``
    (the reference's unless ``config_text``) and a small ``name/saved_model/`` file."""
    members = {f"{name}/checkpoint/{path.name}": path.read_bytes()
               for path in sorted((REFERENCE / "checkpoint").iterdir())}
    config = config_text or (REFERENCE / "pipeline.config").read_text()
    members[f"{name}/pipeline.config"] = config.encode()
    members[f"{name}/saved_model/saved_model.pb"] = b"not read by objdet"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for folder in (name, f"{name}/checkpoint", f"{name}/saved_model"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Zoo:
    state: ServerState
    url: str  # the mirror's base URL
    cache: ZooCache
    model: ZooModel

    def path_of(self, model: ZooModel) -> str:
        return "/" + model.url(self.url).removeprefix(self.url)
