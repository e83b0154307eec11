"""``objdet export``: a trained checkpoint -> an exported model directory (OD API's
``exporter_main_v2.py`` flags). See ``objdet.export.exporter`` for the directory layout.

objdet export --input_type image_tensor --pipeline_config_path pipeline.config \\
    --trained_checkpoint_dir model_dir --output_directory exported
"""

from __future__ import annotations

import argparse
from typing import Any

from objdet.cli._pipeline_flags import add_config_flags


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser("export", help="export a trained checkpoint for inference")
    parser.add_argument(
        "--input_type", default="image_tensor",
        help="image_tensor (uint8 [1, H, W, 3]), float_image_tensor (float32 [1, H, W, 3], "
        "0..255), encoded_image_string_tensor (JPEG/PNG bytes) "
        "or tf_example (serialized tf.Example); default image_tensor",
    )
    add_config_flags(parser)
    parser.add_argument(
        "--trained_checkpoint_dir", required=True,
        help="model directory (its latest checkpoint is exported) or a ckpt-<step>.pt file",
    )
    parser.add_argument(
        "--output_directory", required=True,
        help="the model's base path: the export goes into OUTPUT_DIRECTORY/<version>/ "
        "(TF Serving's layout; `objdet detect --model` and `objdet serve` take the base path)",
    )
    parser.add_argument(
        "--version", default="next",
        help="version number of this export (never overwritten); default: one more than the "
        "highest version there (1 for the first); 'none' writes OUTPUT_DIRECTORY itself",
    )
    parser.add_argument(
        "--formats", default=None,
        help="comma-separated: pt2 (the network as a torch.export program; always written), "
        "onnx (model.onnx: pre-processing, network and NMS in one graph, any batch size) and "
        "program (detector.pt2: the same whole detector as a torch.export program); for onnx "
        "and program an error names what the model uses that they cannot express yet; "
        "default: every format the model supports",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.export.exporter import export_inference_graph

    result = export_inference_graph(
        pipeline_config_path=args.pipeline_config_path,
        trained_checkpoint_dir=args.trained_checkpoint_dir,
        output_directory=args.output_directory,
        input_type=args.input_type,
        overrides=args.override,
        config_override_text=args.config_override,
        formats=None if args.formats is None else
        ("pt2", *(name.strip() for name in args.formats.split(",") if name.strip())),
        version=None if args.version == "none" else args.version,
    )
    height, width = result.canvas_size
    print(
        f"exported {result.checkpoint_path} (step {result.step}, {result.weights} weights, "
        f"input_type {result.input_type}, canvas {height}x{width}) to {result.directory}"
    )
    return 0
