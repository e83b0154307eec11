"""Regenerate the TF Serving messages (``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``).

Usage: ``python -m objdet.serving.protos.generate [OUTPUT_ROOT]`` (needs grpcio-tools).
Without OUTPUT_ROOT the files are written beside the .proto files (the committed copies);
with it, under ``OUTPUT_ROOT/objdet/serving/protos/`` (the test compares the two).

The .proto files keep TF Serving's package names (``tensorflow``, ``tensorflow.serving``) and
field numbers, so a client built from tensorflow-serving-api talks to ``objdet serve``
unchanged; only their file paths are objdet's.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PROTOS_DIR.parents[2]  # the directory holding the `objdet` package
SERVICES = ("prediction_service.proto",)  # the files that also get a *_pb2_grpc.py


def proto_files() -> list[Path]:
    """Every .proto file of the TF Serving API copy, sorted."""
    return sorted(PROTOS_DIR.glob("*.proto"))


def generate(output_root: Path = SOURCE_ROOT) -> list[Path]:
    """Run protoc over every .proto file; return the paths of the generated modules."""
    import importlib.resources

    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    output_root.mkdir(parents=True, exist_ok=True)
    base = ["protoc", f"-I{SOURCE_ROOT}", f"-I{well_known}"]
    messages = [str(path.relative_to(SOURCE_ROOT)) for path in proto_files()]
    services = [str((PROTOS_DIR / name).relative_to(SOURCE_ROOT)) for name in SERVICES]
    for command in (
        [*base, f"--python_out={output_root}", f"--pyi_out={output_root}", *messages],
        [*base, f"--grpc_python_out={output_root}", *services],
    ):
        if protoc.main(command) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(command)}")
    out_dir = output_root / "objdet" / "serving" / "protos"
    return sorted(out_dir.glob("*_pb2*.py*"))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE_ROOT
    for path in generate(root):
        print(path)
