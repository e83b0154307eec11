"""Fault injection for the data side of the CLI: corrupt inputs, as real subprocesses.

Truncated and zero-filled images (detect, convert, the training loader), a pixel-bomb PNG,
corrupt and empty TFRecords, broken label maps, a CSV with a byte order mark, duplicate COCO
ids, a read-only output folder and a conversion killed mid-write. Each fault must end in one
line on stderr, ``objdet <cmd>: error: ...`` naming the file, record or field at fault, with
exit code 2 (``records verify`` and ``config validate`` report findings with exit code 1),
never a traceback or a crash. ``test_fault_injection_train.py`` covers train/eval/export.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.protos import example_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
RACCOON = REPO_ROOT / "datasets" / "raccoon"
RACCOON_LABEL_MAP = RACCOON / "object-detection.pbtxt"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def objdet(*args: str, cwd: Path, read_only_root: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m objdet ARGS`` in ``cwd``; ``read_only_root``: as root, without the powers
    that let root write into read-only folders."""
    preexec = drop_root_file_powers if read_only_root and os.geteuid() == 0 else None
    return subprocess.run(
        [sys.executable, "-m", "objdet", *args], cwd=cwd, env=ENV, capture_output=True,
        text=True, timeout=300, preexec_fn=preexec, check=False,
    )  # fmt: skip


def drop_root_file_powers() -> None:
    """In the child before exec: drop CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # linux/capability.h
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], command: str, *fragments: str
) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if not line.startswith("WARNING ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"objdet {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- inputs made in the tests -------------------------------------------------------------
def raccoon_jpeg(number: int) -> bytes:
    return (RACCOON / "images" / f"raccoon-{number}.jpg").read_bytes()


def as_png(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, "PNG")
    return buffer.getvalue()


def cut(data: bytes, fraction: float, zero_filled: bool = False) -> bytes:
    """``data`` cut short at ``fraction`` of its length; ``zero_filled``: the rest zeros (a
    preallocated download that stopped), the case that crashed torchvision's PNG decoder."""
    kept = data[: int(len(data) * fraction)]
    return kept + bytes(len(data) - len(kept)) if zero_filled else kept


def pixel_bomb_png() -> bytes:
    """133 bytes whose IHDR declares 20000x20000 RGB pixels (1.2 GB decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def write_records(path: Path, replace: dict[int, tuple[bytes, bytes]] | None = None) -> Path:
    """The first 4 raccoon records; ``replace[i] = (image bytes, format)`` for record i."""
    with TFRecordWriter(path) as writer:
        for index, record in enumerate(
            list(read_records(RACCOON / "tfrecord" / "test.record"))[:4]
        ):
            if replace and index in replace:
                example = example_pb2.Example.FromString(record)
                features = example.features.feature
                features["image/encoded"].bytes_list.value[0] = replace[index][0]
                features["image/format"].bytes_list.value[0] = replace[index][1]
                record = example.SerializeToString()
            writer.write(record)
    return path


def original_image(record_index: int) -> bytes:
    record = list(read_records(RACCOON / "tfrecord" / "test.record"))[record_index]
    return (
        example_pb2.Example.FromString(record).features.feature["image/encoded"].bytes_list.value[0]
    )


def write_config(path: Path, record: Path, label_map: Path = RACCOON_LABEL_MAP) -> Path:
    """tests/fixtures/tiny_ssd.config reading ``record`` with ``label_map``, no random crop."""
    text = (REPO_ROOT / "tests" / "fixtures" / "tiny_ssd.config").read_text()
    text = text.replace("RECORD_PATH", str(record)).replace("LABEL_MAP_PATH", str(label_map))
    path.write_text(text.replace("data_augmentation_options { ssd_random_crop {} }", ""))
    return path


def train(config: Path, tmp_path: Path, workers: int = 0) -> subprocess.CompletedProcess[str]:
    return objdet(
        "train", "--pipeline_config_path", str(config), "--model_dir", str(tmp_path / "model"),
        "--num_train_steps", "2", "--num_workers", str(workers), "--no_progress", cwd=tmp_path,
    )  # fmt: skip


def convert_csv(
    csv_path: Path, images: Path, output: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return objdet(
        "convert", "csv", "--csv_path", str(csv_path), "--images_dir", str(images),
        "--label_map_path", str(RACCOON_LABEL_MAP), "--output_path", str(output), *extra,
        cwd=csv_path.parent,
    )  # fmt: skip


def write_csv(path: Path, rows: list[tuple[str, int, int]], bom: bool = False) -> Path:
    """A raccoon-layout CSV with one box per (file name, width, height)."""
    lines = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    lines += [f"{name},{width},{height},raccoon,1,1,20,20" for name, width, height in rows]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\n".join(lines).encode() + b"\n")
    return path


# -- images -------------------------------------------------------------------------------
def test_detect_refuses_truncated_images(
    exported_image_tensor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The zero-filled PNG (the case that crashed torchvision's decoder) in a real subprocess;
    the cut JPEG through the CLI's entry point in this process (an interpreter start with an
    export costs ~10 s of the suite)."""
    from objdet.cli.main import main

    jpeg = tmp_path / "cut.jpg"
    jpeg.write_bytes(cut(raccoon_jpeg(1), 0.3))
    png = tmp_path / "zero filled.png"
    png.write_bytes(cut(as_png(raccoon_jpeg(1)), 0.5, zero_filled=True))
    good = str(RACCOON / "images" / "raccoon-2.jpg")
    result = objdet("detect", "--model", str(exported_image_tensor), "--image", good,
                    "--image", str(png), cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "detect", f"error: {png}: corrupt PNG: CRC mismatch in the IDAT chunk")
    argv = ["detect", "--model", str(exported_image_tensor), "--image", good, "--image", str(jpeg),
            "--output_dir", str(tmp_path / "drawn")]  # fmt: skip
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(
        subprocess.CompletedProcess(argv, code, captured.out, captured.err), "detect",
        f"error: {jpeg}: JPEG data does not decode (truncated or corrupt 650x417 image)",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("image", "workers", "message"),
    [
        ("jpeg cut at 2/3", 1, "image/encoded: JPEG data does not decode (truncated or corrupt"),
        ("png cut at 3/4", 0, "image/encoded: PNG data cut short: the IDAT chunk at byte"),
    ],
)
def test_the_training_loader_refuses_truncated_images(
    tmp_path: Path, image: str, workers: int, message: str
) -> None:
    data = original_image(2)
    data = cut(data, 2 / 3) if image.startswith("jpeg") else cut(as_png(data), 3 / 4)
    record = write_records(tmp_path / "bad.record", {2: (data, image[:4].encode())})
    result = train(write_config(tmp_path / "pipeline.config", record), tmp_path, workers)
    assert_one_line_error(result, "train", f"error: {record}#2 (offset ", message)


def test_pixel_bomb_and_the_pixel_limit_flag(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(raccoon_jpeg(1))
    (images / "bomb.png").write_bytes(pixel_bomb_png())
    csv_path = write_csv(tmp_path / "labels.csv", [("a.jpg", 650, 417), ("bomb.png", 20000, 20000)])
    bomb = convert_csv(csv_path, images, tmp_path / "out.record")
    assert_one_line_error(
        bomb, "convert", f"labels.csv:3: image {images / 'bomb.png'}: the PNG header declares "
        "20000x20000 = 400,000,000 pixels, above the limit of 89,478,485",
    )  # fmt: skip
    limited = convert_csv(csv_path, images, tmp_path / "out.record", "--max_image_pixels", "271049")
    assert_one_line_error(limited, "convert", "labels.csv:2: image ", "a.jpg: the JPEG header "
                          "declares 650x417 = 271,050 pixels, above the limit of 271,049")  # fmt: skip
    assert not (tmp_path / "out.record").exists()


# -- TFRecords ----------------------------------------------------------------------------
def test_corrupt_tfrecords_through_records_convert_and_train(tmp_path: Path) -> None:
    good = write_records(tmp_path / "good.record")
    flipped = tmp_path / "flipped.record"
    data = bytearray(good.read_bytes())
    data[1000] ^= 0xFF  # inside record 0's image bytes: its data CRC no longer matches
    flipped.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.record"
    truncated.write_bytes(good.read_bytes()[:-500])

    verify = objdet("records", "verify", f"{flipped},{truncated}", cwd=tmp_path)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    last = len(original_record(3))  # the truncated file's last record, 500 bytes short
    assert verify.stderr.splitlines() == [
        (
            f"objdet records verify: error: {flipped}: record 0 at byte offset 0: data CRC "
            f"mismatch ({len(original_record(0))} data bytes)"
        ),
        (
            f"objdet records verify: error: {truncated}: record 3 at byte offset "
            f"{good.stat().st_size - last - 16}: truncated file or garbage length: the record "
            f"needs {last + 4} bytes after its header, {last + 4 - 500} remain; skipped the "
            f"last {last + 16 - 500} bytes of the file"
        ),
    ]
    assert verify.stdout.splitlines()[-1] == "6 good records in 2 files, 2 problems"

    count = objdet("records", "count", str(truncated), cwd=tmp_path)
    assert_one_line_error(
        count, "records", f"{truncated}: record 3 at byte offset ", "truncated file"
    )
    counted = objdet("records", "count", str(flipped), cwd=tmp_path)  # headers only, and says so
    assert counted.returncode == 0 and counted.stdout.splitlines()[-1] == "4\ttotal"
    assert "data CRCs were not checked" in counted.stderr

    to_coco = objdet("convert", "tfrecord-to-coco", "--input_path", str(flipped), "--label_map_path",
                     str(RACCOON_LABEL_MAP), "--output_path", str(tmp_path / "coco"), cwd=tmp_path)  # fmt: skip
    assert_one_line_error(
        to_coco, "convert", f"{flipped}: record 0 at byte offset 0: data CRC mismatch"
    )
    assert not (tmp_path / "coco").exists()

    trained = train(write_config(tmp_path / "pipeline.config", flipped), tmp_path, workers=1)
    assert_one_line_error(
        trained, "train", f"{flipped}: record 0 at byte offset 0: data CRC mismatch"
    )


def original_record(index: int) -> bytes:
    return list(read_records(RACCOON / "tfrecord" / "test.record"))[index]


def test_an_empty_tfrecord_as_training_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")
    result = train(write_config(tmp_path / "pipeline.config", empty), tmp_path)
    assert_one_line_error(
        result, "train", "train_input_reader.tf_record_input_reader.input_path: the input files "
        f"hold 0 records: {empty} (0 records)",
    )  # fmt: skip


# -- label maps ---------------------------------------------------------------------------
def test_broken_label_maps_through_validate_and_train(tmp_path: Path) -> None:
    record = RACCOON / "tfrecord" / "test.record"
    label_maps = {
        "syntax": ("item {\n  id: 1\n  name 'raccoon'\n}\n", ":3:8: label map syntax error"),
        "nameless": (
            "item { id: 1 display_name: 'Raccoon' }",
            ": item 1 (id 1, display_name 'Raccoon') has no name",
        ),
        "two classes": (
            "item { id: 1 name: 'raccoon' } item { id: 2 name: 'fox' }",
            "model.ssd.num_classes is 1 but the largest id in ",
        ),
    }
    configs = {}
    for name, (text, _) in label_maps.items():
        label_map = tmp_path / f"{name}.pbtxt"
        label_map.write_text(text)
        configs[name] = write_config(tmp_path / f"{name}.config", record, label_map)
    validate = objdet("config", "validate", *map(str, configs.values()), cwd=tmp_path)
    assert validate.returncode == 1 and validate.stderr == ""
    for line, (name, (_, message)) in zip(
        validate.stdout.splitlines(), label_maps.items(), strict=True
    ):
        assert line.startswith(f"FAIL {configs[name]}: invalid config: ")
        assert f"{tmp_path / name}.pbtxt" in line and message in line
    # The same check (one function) at the start of training, before any step: the mismatch
    # used to train to the end and then fail in evaluation without naming a file.
    result = train(configs["two classes"], tmp_path)
    assert_one_line_error(
        result, "train", f"objdet train: error: {configs['two classes']}: invalid config: ",
        f"{tmp_path / 'two classes'}.pbtxt", label_maps["two classes"][1],
    )  # fmt: skip
    assert not (tmp_path / "model").exists()


def test_num_classes_above_the_largest_label_map_id_trains_and_warns(tmp_path: Path) -> None:
    """num_classes 2 with a one-item label map: the OD API accepts it, and so does objdet,
    with a warning at the start naming the config and label map, and one from each
    evaluator at the end naming the dropped class-2 detections (the model predicts them)."""
    config = write_config(tmp_path / "above.config", RACCOON / "tfrecord" / "test.record")
    config.write_text(config.read_text().replace("num_classes: 1", "num_classes: 2"))
    result = train(config, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING ")]
    assert (
        f"WARNING objdet.engine.training: {config}: model.ssd.num_classes is 2 but the largest "
        f"id in {RACCOON_LABEL_MAP} (train_input_reader.label_map_path, "
        "eval_input_reader[0].label_map_path) is 1: the model also predicts ids 2, which the "
        "label map does not name; their detections are not evaluated (as in the OD API)"
    ) in warnings
    for prefix in ("PascalBoxes", "DetectionBoxes"):
        assert any(
            f"{prefix}: dropped " in line and " detections of class ids [2], which are not "
            "among the 1 categories" in line for line in warnings
        ), result.stderr[-3000:]
    assert "eval at step 2: " in result.stdout


# -- source datasets ----------------------------------------------------------------------
def test_csv_with_a_byte_order_mark_converts(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "labels.csv", [("raccoon-1.jpg", 650, 417)], bom=True)
    result = convert_csv(csv_path, RACCOON / "images", tmp_path / "out.record")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote 1 images, 1 boxes to {tmp_path / 'out.record'}")


def test_duplicate_coco_image_ids(tmp_path: Path) -> None:
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "raccoon-1.jpg"}, {"id": 1, "file_name": "raccoon-2.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}],
        "categories": [{"id": 1, "name": "raccoon"}],
    }))  # fmt: skip
    result = objdet("convert", "coco", "--image_dir", str(RACCOON / "images"), "--annotations_file",
                    str(annotations), "--output_path", str(tmp_path / "out.record"), cwd=tmp_path)  # fmt: skip
    assert_one_line_error(result, "convert", f"{annotations}: duplicate image id 1: images[0] "
                          "(raccoon-1.jpg) and images[1] (raccoon-2.jpg)")  # fmt: skip


def test_read_only_output_folder_for_convert(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    csv_path = write_csv(tmp_path / "labels.csv", [("raccoon-1.jpg", 650, 417)])
    try:
        result = objdet(
            "convert", "csv", "--csv_path", str(csv_path), "--images_dir", str(RACCOON / "images"),
            "--label_map_path", str(RACCOON_LABEL_MAP), "--output_path", str(folder / "out.record"),
            cwd=tmp_path, read_only_root=True,
        )  # fmt: skip
        assert_one_line_error(result, "convert", f"cannot write {folder / 'out.record'}: {folder} "
                              "is not writable (permission denied)")  # fmt: skip
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_killed_conversion_leaves_a_temporary_that_the_rerun_removes(tmp_path: Path) -> None:
    """The conversion blocks reading an image that is a FIFO, with its output's temporary
    open; SIGKILL leaves the temporary behind; the rerun of the same command removes it."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(raccoon_jpeg(1))
    os.mkfifo(images / "b.jpg")  # opening it blocks until someone writes: mid-conversion
    csv_path = write_csv(tmp_path / "labels.csv", [("a.jpg", 650, 417), ("b.jpg", 650, 417)])
    output = tmp_path / "out" / "train.record"
    command = [sys.executable, "-m", "objdet", "convert", "csv", "--csv_path", str(csv_path),
               "--images_dir", str(images), "--label_map_path", str(RACCOON_LABEL_MAP),
               "--output_path", str(output)]  # fmt: skip
    converter = subprocess.Popen(command, cwd=tmp_path, env=ENV, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(output.parent.glob(".train.record.*.tmp")) and time.monotonic() < deadline:
        assert converter.poll() is None, converter.stderr.read() if converter.stderr else ""
        time.sleep(0.05)
    converter.send_signal(signal.SIGKILL)
    converter.wait()
    (left,) = output.parent.glob(".train.record.*.tmp")
    assert f"-{converter.pid}-" in left.name and not output.exists()

    (images / "b.jpg").unlink()
    (images / "b.jpg").write_bytes(raccoon_jpeg(1))
    rerun = objdet(*command[3:], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(path.name for path in output.parent.iterdir()) == ["train.record"]
