from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from objdet import atomic as atomic_module
from objdet.atomic import atomic_directory, atomic_write


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_directory(tmp_path: Path) -> None:
    target = tmp_path / "export"
    with atomic_directory(target) as staging:
        (staging / "a").write_text("1")
        assert not target.exists()
    assert (target / "a").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "b").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "f", "w") as handle:
        handle.write("x")
    with atomic_directory(tmp_path / "d"):
        pass
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


# -- temporaries of killed writers --------------------------------------------------------
HOLD_WRITES_OPEN = """
import sys, time
from objdet.atomic import atomic_directory, atomic_write
with atomic_write(sys.argv[1]) as handle, atomic_directory(sys.argv[2]) as staging:
    handle.write(b"half a shard")
    (staging / "part").write_text("half an export")
    print("writing", flush=True)
    time.sleep(120)
"""


def start_writer(tmp_path: Path) -> subprocess.Popen[str]:
    """A process in the middle of writing tmp_path/out.record and tmp_path/export."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_WRITES_OPEN,
            str(tmp_path / "out.record"),
            str(tmp_path / "export"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    return writer


def temporaries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    writer = start_writer(tmp_path)
    left = temporaries(tmp_path)
    assert [name.split(".")[1] for name in left] == ["export", "out"]
    assert all(f"-{writer.pid}-" in name for name in left)  # .{name}.{host}-{pid}-{random}.tmp

    # While the writer lives, another write of the same targets leaves its temporaries alone.
    with atomic_write(tmp_path / "out.record") as handle:
        handle.write(b"whole")
    with atomic_directory(tmp_path / "export"):
        pass
    assert temporaries(tmp_path) == left

    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # Not ours to remove: another target's, another host's (its pid means nothing here).
    other_target = f".other.record.{left[1].split('.', 3)[3]}"
    (tmp_path / other_target).write_bytes(b"x")
    other_host = left[1].replace(atomic_module._host(), "elsewhere")
    (tmp_path / other_host).write_bytes(b"x")

    with atomic_write(tmp_path / "out.record") as handle:
        handle.write(b"again")
    with atomic_directory(tmp_path / "export"):
        pass
    assert temporaries(tmp_path) == sorted([other_target, other_host])
    assert (tmp_path / "out.record").read_bytes() == b"again"


def test_a_read_only_folder_names_the_target_and_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    script = (
        "import sys\n"
        "from objdet.atomic import atomic_write\n"
        "from objdet.errors import ObjdetError\n"
        "try:\n"
        "    with atomic_write(sys.argv[1]) as handle: handle.write(b'x')\n"
        "except ObjdetError as error: print(error)\n"
    )
    # As root, drop the capabilities that let root write anywhere (else the test proves nothing).
    preexec = drop_root_file_powers if os.geteuid() == 0 else None
    for target in (folder / "out.record", folder / "new" / "out.record"):
        result = subprocess.run(
            [sys.executable, "-c", script, str(target)],
            capture_output=True, text=True, preexec_fn=preexec, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (
            result.stdout
            == f"cannot write {target}: {folder} is not writable (permission denied)\n"
        )
    folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def drop_root_file_powers() -> None:
    """In a child before exec: without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER
    (linux/capability.h: 1, 2, 3) root obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
