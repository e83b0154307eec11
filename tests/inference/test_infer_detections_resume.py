"""A killed ``objdet infer-detections`` restarted with the same command writes exactly the
files of an uninterrupted run (byte for byte), and a stale or foreign sidecar starts over."""

from __future__ import annotations

import json
from pathlib import Path

import infer_inputs
import pytest

from objdet.cli.main import main
from objdet.inference.predictor import Predictor
from objdet.inference.tfrecords import KILL_AFTER_ENV, InferenceReport, Progress, infer_detections

SIGKILL_EXIT = -9


def command(inputs: Path, output: str, model: Path) -> list[str]:
    return ["infer-detections", "--input_tfrecord_paths", f"{inputs}@2",
            "--output_tfrecord_path", output, "--model", str(model),
            "--batch_size", "8", "--commit_every", "5", "--discard_image_pixels"]


def uninterrupted(tmp_path: Path, model: Path) -> list[bytes]:
    """The files of one uninterrupted run (in this process, ONNX Runtime on one thread)."""
    inputs = infer_inputs.write_inputs(tmp_path / "reference_inputs")
    assert main(command(inputs[0].parent / "input", str(tmp_path / "ref.record@2"), model)) == 0
    return [(tmp_path / f"ref.record-0000{k}-of-00002").read_bytes() for k in range(2)]


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_run(
    exported_image_tensor: Path, tmp_path: Path
) -> None:
    """24 records in batches [0-4] [5-7] [8-15] [16-19] [20-23] (size changes end batches),
    2 output files, a commit after each batch ending 5+ records after the last (at 5, 16,
    24): SIGKILL after 13 records (committed 5; 6-13 flushed, not committed) -> the restart
    drops 6-13, continues from record 5 and the files equal an uninterrupted run's."""
    inputs = infer_inputs.write_inputs(tmp_path)
    output = str(tmp_path / "out.record@2")
    args = command(inputs[0].parent / "input", output, exported_image_tensor)
    killed = infer_inputs.run_cli(args, env={KILL_AFTER_ENV: "13"})
    assert killed.returncode == SIGKILL_EXIT, killed.stderr
    partials = sorted(p.name for p in tmp_path.glob(".out.record-*.partial"))
    assert partials == [".out.record-00000-of-00002.partial", ".out.record-00001-of-00002.partial"]
    progress = json.loads((tmp_path / ".out.record@2.progress.json").read_text())
    assert progress["records"] == 5
    committed = sum(entry["bytes"] for entry in progress["outputs"])
    assert sum((tmp_path / name).stat().st_size for name in partials) > committed  # 6-13 written
    assert not list(tmp_path.glob("out.record-*"))

    restarted = infer_inputs.run_cli(args)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith("24 records, ") and "(resumed after 5)" in restarted.stdout
    outputs = [(tmp_path / f"out.record-0000{k}-of-00002").read_bytes() for k in range(2)]
    assert outputs == uninterrupted(tmp_path, exported_image_tensor)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


class Interrupted(Exception):
    pass


def interrupt_after(records: int) -> Progress:
    def progress(done: int, total: int) -> None:
        if done >= records:
            raise Interrupted

    return progress


@pytest.fixture(scope="module")
def onnx_predictor(exported_image_tensor: Path) -> Predictor:
    return Predictor.from_export(exported_image_tensor, runtime="onnxruntime")


@pytest.mark.parametrize("state", [
    "interrupted", "torn_tail", "no_commit_yet", "other_model", "short_partial", "renamed_one"])
def test_restart_from_each_state_a_crash_leaves(
    onnx_predictor: Predictor, tmp_path: Path, state: str
) -> None:
    """A run stopped after 8 records (committed: 5; 6-8 flushed), its files then changed
    as a kill or a changed command would: the restart resumes when the committed part
    verifies, starts over otherwise, and always ends with the uninterrupted run's bytes."""
    inputs = f"{infer_inputs.write_inputs(tmp_path)[0].parent / 'input'}@2"

    def run(output: Path, key: str | None, progress: Progress | None = None) -> InferenceReport:
        return infer_detections(inputs, f"{output}@2", onnx_predictor, batch_size=8, commit_every=5,
                                resume_key=key, progress=progress, discard_image_pixels=True)

    run(tmp_path / "ref.record", None)
    reference = [(tmp_path / f"ref.record-0000{k}-of-00002").read_bytes() for k in range(2)]
    output = tmp_path / "out.record"
    with pytest.raises(Interrupted):
        run(output, "model", interrupt_after(8))  # after batch [5-7]: committed 5, written 8
    partials = [tmp_path / f".out.record-0000{k}-of-00002.partial" for k in range(2)]
    sidecar = tmp_path / ".out.record@2.progress.json"
    assert sidecar.is_file()
    if state == "no_commit_yet":  # a kill before the first commit replaced the sidecar
        sidecar.unlink()
    elif state == "torn_tail":  # a kill inside a write after the commit
        with open(partials[1], "ab") as handle:
            handle.write(b"\x17\x00\x00\x00 half a record")
    elif state == "short_partial":  # bytes the sidecar counts on are gone: not trusted
        committed = json.loads(sidecar.read_text())["outputs"][0]["bytes"]
        partials[0].write_bytes(partials[0].read_bytes()[:committed - 3])
    elif state == "renamed_one":  # a kill between the final renames
        partials[0].rename(tmp_path / "out.record-00000-of-00002")
    report = run(output, "other model" if state == "other_model" else "model")
    resumes = state in ("interrupted", "torn_tail")
    assert report.resumed_records == (5 if resumes else 0)
    assert (report.restart_reason is not None) is (state in ("other_model", "short_partial",
                                                             "renamed_one"))
    assert [(tmp_path / f"out.record-0000{k}-of-00002").read_bytes() for k in range(2)] == reference
    assert report.records == 24 and not sidecar.exists() and not any(p.exists() for p in partials)
