"""Regenerate ``*_pb2.py`` / ``*_pb2.pyi`` from the .proto files (needs grpcio-tools).

Usage: ``python -m objdet.protos.generate [OUTPUT_ROOT]``. Without OUTPUT_ROOT the files are
written beside the .proto files (the committed copies); with it, under
``OUTPUT_ROOT/objdet/protos/`` (the test compares those with the committed ones).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PROTOS_DIR.parent.parent  # the directory holding the `objdet` package


def proto_files() -> list[Path]:
    """Every .proto file of the schema, sorted."""
    return sorted(PROTOS_DIR.glob("*.proto"))


def generate(output_root: Path = SOURCE_ROOT) -> list[Path]:
    """Run protoc over every .proto file; return the paths of the generated modules."""
    import importlib.resources

    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    relative = [str(path.relative_to(SOURCE_ROOT)) for path in proto_files()]
    output_root.mkdir(parents=True, exist_ok=True)
    command = [
        "protoc",
        f"-I{SOURCE_ROOT}",
        f"-I{well_known}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        *relative,
    ]
    if protoc.main(command) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(command)}")
    out_dir = output_root / "objdet" / "protos"
    return sorted(out_dir.glob("*_pb2.py*"))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE_ROOT
    for path in generate(root):
        print(path)
