"""``objdet detect``: run an exported model on image files, print JSON, draw the boxes.

objdet detect --model exported --image a.jpg --image b.jpg --output_dir drawn --min_score 0.5
objdet detect --server http://127.0.0.1:8501 --model_name detector --image a.jpg

Prints one JSON document: a list with, per image, its size and each detection's normalized
(ymin, xmin, ymax, xmax) box, pixel (x1, y1, x2, y2) box, score, class id and class name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from objdet.cli._image_flags import add_max_image_pixels_flag


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser("detect", help="detect objects in image files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="directory written by `objdet export`")
    source.add_argument("--server", metavar="URL",
                        help="ask a running `objdet serve` / TF Serving instead: http://host:8501 "
                        "(REST), grpc://host:8500 or grpcs://host:8500 (TLS); with --model_name")
    parser.add_argument("--model_name", default=None, help="the served model's name (--server)")
    parser.add_argument("--server_ca_file", default=None, metavar="PEM",
                        help="grpcs://: the certificate authority that signed the server's "
                        "certificate (default: the system's)")
    parser.add_argument("--client_cert_file", default=None, metavar="PEM",
                        help="grpcs://: this client's certificate, for a server with client_verify")
    parser.add_argument("--client_key_file", default=None, metavar="PEM",
                        help="grpcs://: the private key of --client_cert_file")
    parser.add_argument(
        "--image", action="append", required=True, metavar="PATH",
        help="image file (JPEG/PNG); repeatable",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output", default=None, help="drawn PNG for a single --image")
    output.add_argument("--output_dir", default=None, help="directory for <image stem>.png drawings")
    parser.add_argument(
        "--min_score", type=float, default=0.5, help="report and draw detections >= this score",
    )
    parser.add_argument(
        "--runtime", choices=("torch", "onnxruntime", "program"), default="torch",
        help="torch: model.pt2 with objdet's pre/post-processing; onnxruntime: model.onnx "
        "(the whole detector in one graph); program: detector.pt2 (the whole detector as one "
        "torch.export program); default torch",
    )
    add_max_image_pixels_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.data.image_decode import set_max_image_pixels
    from objdet.errors import ObjdetError
    from objdet.inference.inputs import read_image_file
    from objdet.inference.predictor import Predictor

    set_max_image_pixels(args.max_image_pixels)
    if args.output is not None and len(args.image) != 1:
        raise ObjdetError(f"--output names one drawing but {len(args.image)} images were given; "
                          "use --output_dir")
    drawings = _drawing_paths(args)
    if args.server is not None:
        return _run_on_server(args, drawings)
    predictor = Predictor.from_export(args.model, runtime=args.runtime)
    results = []
    for index, image_path in enumerate(args.image):
        pixels = read_image_file(image_path)
        detections = predictor.predict_pixels(pixels).above(args.min_score)
        result: dict[str, Any] = {"image": image_path, **detections.to_json(predictor.label_map)}
        if drawings:
            _save_drawing(pixels, detections, predictor, drawings[index])
            result["drawing"] = str(drawings[index])
        results.append(result)
    print(json.dumps(results, indent=2))
    return 0


def _run_on_server(args: argparse.Namespace, drawings: list[Path]) -> int:
    """``--server``: each image file's bytes go to the served model (objdet.serving.Client)."""
    from types import SimpleNamespace

    from objdet.errors import ObjdetError
    from objdet.inference.inputs import read_image_file
    from objdet.serving import Client

    if not args.model_name:
        raise ObjdetError("--server needs --model_name (the name the server serves the model as)")
    pem = {flag: _read_pem(flag, getattr(args, flag)) for flag in
           ("server_ca_file", "client_cert_file", "client_key_file")}
    client = Client(args.server, root_certificates=pem["server_ca_file"],
                    private_key=pem["client_key_file"], certificate_chain=pem["client_cert_file"])
    results = []
    for index, image_path in enumerate(args.image):
        try:
            data = Path(image_path).read_bytes()
        except OSError as error:
            raise ObjdetError(f"{image_path}: cannot read image file: {error.strerror}") from None
        detections = client.detect(args.model_name, data).above(args.min_score)
        result: dict[str, Any] = {"image": image_path, **detections.to_json()}
        if drawings:
            _save_drawing(read_image_file(image_path), detections, SimpleNamespace(label_map=None),
                          drawings[index])
            result["drawing"] = str(drawings[index])
        results.append(result)
    print(json.dumps(results, indent=2))
    return 0


def _drawing_paths(args: argparse.Namespace) -> list[Path]:
    """Where each image's drawing goes ([] when no drawing was asked for)."""
    from objdet.errors import ObjdetError

    if args.output is not None:
        return [Path(args.output)]
    if args.output_dir is None:
        return []
    paths = [Path(args.output_dir) / f"{Path(image).stem}.png" for image in args.image]
    duplicates = sorted({str(p) for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ObjdetError(f"--output_dir: several images would be drawn to {', '.join(duplicates)}")
    return paths


def _save_drawing(pixels: Any, detections: Any, predictor: Any, path: Path) -> None:
    from objdet.viz.draw import save_drawing

    # min_score 0: the detections are already filtered by --min_score
    save_drawing(pixels, detections.boxes, detections.labels, detections.scores, path, predictor.label_map,
                 masks=detections.masks, keypoints=detections.keypoints,
                 keypoint_scores=detections.keypoint_scores)


def _read_pem(flag: str, path: str | None) -> bytes | None:
    """The PEM file a TLS flag names (None without the flag); one-line error naming it."""
    from objdet.errors import ObjdetError

    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ObjdetError(f"--{flag} {path}: {error.strerror or error}") from None
    if b"-----BEGIN " not in data:
        raise ObjdetError(f"--{flag} {path}: not PEM (expected -----BEGIN ...-----)")
    return data
