"""The committed ``*_pb2.py``/``*_pb2.pyi`` files are exactly what protoc makes of the .proto files."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet.protos import generate

PROTOS_DIR = Path(generate.__file__).resolve().parent


def test_every_proto_has_generated_modules() -> None:
    missing = [
        f"{proto.stem}_pb2{suffix}"
        for proto in generate.proto_files()
        for suffix in (".py", ".pyi")
        if not (PROTOS_DIR / f"{proto.stem}_pb2{suffix}").is_file()
    ]
    assert missing == [], f"run `python -m objdet.protos.generate`; missing: {missing}"


def test_no_generated_module_without_its_proto() -> None:
    stems = {proto.stem for proto in generate.proto_files()}
    orphans = [
        path.name
        for path in PROTOS_DIR.glob("*_pb2.py*")
        if path.name.split("_pb2")[0] not in stems
    ]
    assert orphans == []


def test_committed_modules_equal_fresh_protoc_output(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    fresh = generate.generate(tmp_path)
    assert fresh, "protoc produced nothing"
    different = [
        path.name for path in fresh if path.read_bytes() != (PROTOS_DIR / path.name).read_bytes()
    ]
    assert different == [], f"stale generated files (regenerate them): {different}"
    assert len(fresh) == 2 * len(generate.proto_files())
