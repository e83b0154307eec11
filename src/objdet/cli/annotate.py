"""``objdet annotate``: label with the model in the loop (see ``objdet.annotate``).

objdet annotate --images images/ --label_map_path label_map.pbtxt \\
    --pipeline_config_path pipeline.config --model_dir model [--port 8080] [--eval_input test.record]
objdet annotate export --model_dir model --format tfrecord|coco|voc|yolo|jsonl --output OUT
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "annotate", help="web app to label images with the model's suggestions; trains as you label",
        description="objdet annotate [--flags] serves the labelling page; "
        "objdet annotate export --format F --output OUT writes the accepted annotations.")
    parser.add_argument("action", nargs="?", choices=["serve", "export"], default="serve",
                        help="serve (default) or export")
    parser.add_argument("--images", default=None,
                        help="folder of image files or TFRecords of tf.Examples to label")
    parser.add_argument("--label_map_path", default=None, help="label_map.pbtxt (the label names)")
    parser.add_argument("--pipeline_config_path", default=None,
                        help="pipeline.config of the model (its fine_tune_checkpoint, augmentations)")
    parser.add_argument("--model_dir", required=True,
                        help="checkpoints, exported versions (MODEL_DIR/export/N) and the store "
                        "(MODEL_DIR/annotate/answers.sqlite)")
    parser.add_argument("--database", default=None, help="the SQLite store; default under --model_dir")
    serve = parser.add_argument_group("serve")
    serve.add_argument("--port", type=int, default=8080, help="default 8080")
    serve.add_argument("--host", default="127.0.0.1",
                       help="default 127.0.0.1; any other address requires --token")
    serve.add_argument("--token", default=os.environ.get("OBJDET_ANNOTATE_TOKEN"),
                       help="required on every request (default $OBJDET_ANNOTATE_TOKEN)")
    serve.add_argument("--eval_input", default=None,
                       help="TFRecords with ground truth: AP@0.5 after each training round")
    serve.add_argument("--order", default="uncertainty", choices=["uncertainty", "random", "file"],
                       help="which image comes next; default uncertainty")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--retrain_every_n", type=int, default=10,
                       help="train a round after this many new accepted answers; default 10")
    serve.add_argument("--retrain_every_seconds", type=float, default=300.0,
                       help="or after this long when any answer is new; default 300")
    serve.add_argument("--steps_per_round", type=int, default=100, help="default 100")
    serve.add_argument("--train_on", default="all", choices=["all", "last_batch"],
                       help="all accepted answers (default) or only those since the last round")
    serve.add_argument("--no_train", action="store_true", help="no background trainer")
    serve.add_argument("--trainer_threads", type=int, default=None,
                       help="torch threads of the trainer; default: all cores but one")
    serve.add_argument("--min_score", type=float, default=0.05,
                       help="suggestions below this score are not sent; default 0.05")
    serve.add_argument("--initial_model", default=None,
                       help="suggestions until the first trained version: an exported model "
                       "directory, a model directory (pipeline.config + checkpoint) or zoo:NAME "
                       "(already downloaded)")
    serve.add_argument("--initial_labels", default=None,
                       help="its classes -> this label map's: MODEL_CLASS=LABEL,... (* any class); "
                       "default: by name")
    serve.add_argument("--lease_seconds", type=float, default=300.0,
                       help="an image shown and not answered is held for its session this long "
                       "(renewed while the page is open); default 300")
    export = parser.add_argument_group("export")
    export.add_argument("--format", default=None, help="tfrecord, coco, voc, yolo or jsonl")
    export.add_argument("--output", default=None,
                        help="a file (tfrecord, jsonl) or a folder (coco, voc, yolo)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.errors import ConfigError

    if args.action == "export":
        return _export(args)
    missing = [flag for flag in ("images", "label_map_path", "pipeline_config_path")
               if getattr(args, flag) is None]
    if missing:
        raise ConfigError(f"annotate: missing --{', --'.join(missing)}")
    from objdet.annotate.server import AnnotateSettings, run_annotate

    code = run_annotate(AnnotateSettings(
        images=args.images, label_map_path=args.label_map_path,
        pipeline_config_path=args.pipeline_config_path, model_dir=args.model_dir,
        eval_input=args.eval_input, host=args.host, port=args.port, token=args.token,
        database=args.database, ordering=args.order, seed=args.seed, train=not args.no_train,
        every_n_answers=args.retrain_every_n, every_seconds=args.retrain_every_seconds,
        steps_per_round=args.steps_per_round, train_on=args.train_on,
        trainer_threads=args.trainer_threads, min_score=args.min_score,
        initial_model=args.initial_model, initial_labels=args.initial_labels,
        lease_seconds=args.lease_seconds,
    ))
    # Everything is committed and closed by now. The interpreter's final garbage collection
    # of torch and the web stack can take tens of seconds on a loaded machine; a process
    # supervisor (or a test) waiting for the exit should not wait for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from objdet.annotate.exports import EXPORT_FORMATS, export_project
    from objdet.annotate.sources import ImageSource
    from objdet.annotate.store import AnswerStore
    from objdet.errors import ConfigError
    from objdet.structures.label_map import load_label_map

    if args.format not in EXPORT_FORMATS or not args.output:
        raise ConfigError(f"annotate export: needs --format ({', '.join(EXPORT_FORMATS)}) and --output")
    database = Path(args.database or Path(args.model_dir) / "annotate" / "answers.sqlite")
    if not database.is_file():
        raise ConfigError(f"{database}: no annotation store here (run objdet annotate first)")
    store = AnswerStore(database)
    images = args.images or store.get_meta("images")
    label_map_path = args.label_map_path or store.get_meta("label_map_path")
    if not images or not label_map_path:
        raise ConfigError(f"{database}: pass --images and --label_map_path")
    written = export_project(store, ImageSource(images), load_label_map(label_map_path),
                             args.format, args.output)
    print(f"objdet annotate export: {written} {'answers' if args.format == 'jsonl' else 'images'} "
          f"-> {args.output}")
    return 0
