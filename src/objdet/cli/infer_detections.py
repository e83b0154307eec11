"""``objdet infer-detections``: add a model's detections to every tf.Example of TFRecords
(the OD API's ``inference/infer_detections.py``), for offline evaluation.

objdet infer-detections --input_tfrecord_paths val-00000-of-00002,val-00001-of-00002 \\
    --output_tfrecord_path detections.record@2 --model exported --discard_image_pixels

Split over processes with ``--shard i --num_shards n`` (or under torchrun, which sets
RANK/WORLD_SIZE): each writes ``OUT-0000i-of-0000n``. A killed run restarted with the same
command continues from its last commit (every ``--commit_every`` records) and writes the same
bytes as an uninterrupted run (see ``objdet.inference.tfrecords``). A Mask R-CNN export's
masks are written as ``image/detection/mask`` PNGs (``eval-offline`` reads them for
coco_mask_metrics), a keypoint CenterNet's as ``image/detection/keypoint/{y,x,score}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# objdet.inference.predictor's, without importing torch
RUNTIMES = ("onnxruntime", "torch", "program")


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "infer-detections", help="write detections into the tf.Examples of TFRecords",
    )
    parser.add_argument(
        "--input_tfrecord_paths", required=True,
        help="comma-separated TFRecord files (globs and base@N allowed)",
    )
    parser.add_argument(
        "--output_tfrecord_path", required=True,
        help="output TFRecord file; OUT@N writes N shards OUT-0000k-of-0000N",
    )
    parser.add_argument(
        "--model", "--inference_graph", dest="model", required=True,
        help="directory written by `objdet export`",
    )
    parser.add_argument(
        "--discard_image_pixels", action="store_true",
        help="drop image/encoded from the output records",
    )
    parser.add_argument(
        "--runtime", choices=RUNTIMES, default=None,
        help="onnxruntime (model.onnx; the default when the export has one), torch (model.pt2 "
             "with objdet's pre/post-processing) or program (detector.pt2, the whole detector "
             "as a torch.export program)",
    )
    parser.add_argument(
        "--batch_size", type=int, default=8,
        help="images of one size per onnxruntime or program call (the torch runtime takes one "
             "at a time)",
    )
    parser.add_argument("--shard", type=int, default=None, help="this process's shard, 0-based")
    parser.add_argument("--num_shards", type=int, default=None, help="number of shard processes")
    parser.add_argument(
        "--commit_every", type=int, default=1000,
        help="records between resume points (a killed run redoes at most this many)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from objdet.export.exporter import ONNX_FILE
    from objdet.inference.predictor import Predictor
    from objdet.inference.sharding import resolve_shard
    from objdet.inference.tfrecords import infer_detections

    shard = resolve_shard(args.shard, args.num_shards)
    has_onnx = (Path(args.model) / ONNX_FILE).is_file()
    runtime = args.runtime or ("onnxruntime" if has_onnx else "torch")
    predictor = Predictor.from_export(args.model, runtime=runtime)
    label = "infer-detections" + (f" {shard.index}/{shard.count}" if shard.count > 1 else "")
    bars: list[tqdm[None]] = []  # opened at the first progress, so early errors print alone

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=label, total=total, initial=done, unit="image", file=sys.stderr,
                             mininterval=0.5 if sys.stderr.isatty() else 30, dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    try:
        report = infer_detections(
            args.input_tfrecord_paths, args.output_tfrecord_path, predictor,
            discard_image_pixels=args.discard_image_pixels, batch_size=args.batch_size,
            shard=shard, resume_key=model_identity(args.model, runtime),
            commit_every=args.commit_every, progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    if report.restart_reason:
        print(f"objdet infer-detections: started over: {report.restart_reason}", file=sys.stderr)
    resumed = f" (resumed after {report.resumed_records})" if report.resumed_records else ""
    print(
        f"{report.records} records, {report.detections} detections, "
        f"{report.images_per_second:.1f} images/s{resumed}; wrote {', '.join(report.output_paths)}"
    )
    return 0


def model_identity(directory: str, runtime: str) -> str:
    """The export directory, runtime and each file's size and mtime: a restart with another
    model (or a re-export into the same directory) starts over instead of resuming."""
    root = Path(directory).absolute()
    files = sorted(
        f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}"
        for path in root.rglob("*") if path.is_file() and (stat := path.stat())
    )
    return f"{root}|{runtime}|{'|'.join(files)}" if files else f"{root}|{runtime}"
