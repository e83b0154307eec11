"""``objdet ocr synth | train | read | eval``: OCR as character detection (``objdet.ocr``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from objdet.errors import DataError


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "ocr", help="read any script from a few glyph samples: synthesize pages, train, read, evaluate")
    actions = parser.add_subparsers(dest="ocr_command", metavar="ACTION")
    _register_synth(actions)
    _register_train(actions)
    _register_read(actions)
    _register_eval(actions)
    parser.set_defaults(run=lambda args: (parser.print_help(), 2)[1])


def _register_synth(actions: Any) -> None:
    parser = actions.add_parser("synth", help="draw synthetic pages (TFRecords) from glyph samples")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", help="CSV with columns image,text (one glyph per image), or a "
                        "LabelImg/VOC .xml page whose boxes are named by their text")
    source.add_argument("--font", help="a .ttf/.otf font to draw the --charset with")
    parser.add_argument("--charset", help="with --font: the characters to learn")
    parser.add_argument("--ligatures", default="", help="with --font: comma-separated ligatures, e.g. st,ct")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_pages", type=int, default=1000, help="training pages (160x160)")
    parser.add_argument("--num_eval_pages", type=int, default=20, help="held-out pages (the CER of ocr train)")
    parser.add_argument("--text", help="a UTF-8 corpus to draw lines from (default: random words)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from objdet.ocr import samples as glyph_samples
    from objdet.ocr.synth import SynthOptions, synthesize

    if args.font:
        if not args.charset:
            raise DataError("--font needs --charset (the characters to draw)")
        texts = glyph_samples.charset_glyph_texts(args.charset, args.ligatures.split(","))
        samples = glyph_samples.render_font_samples(args.font, texts)
    elif args.samples.lower().endswith(".xml"):
        samples = glyph_samples.load_voc_samples(args.samples)
    else:
        samples = glyph_samples.load_csv_samples(args.samples)
    corpus = _read_text(args.text) if args.text else None
    summary = synthesize(samples, args.output_dir, SynthOptions(
        num_pages=args.num_pages, num_eval_pages=args.num_eval_pages, seed=args.seed), corpus)
    print(f"wrote {summary.num_train_pages} training and {summary.num_eval_pages} eval pages, "
          f"{summary.num_glyph_boxes} glyph boxes of {len(summary.glyph_texts)} glyphs to {summary.output_dir}")
    return 0


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"--text {path}: file does not exist") from None
    except UnicodeDecodeError as error:
        raise DataError(f"--text {path}: not UTF-8 text: {error}") from None


def _register_train(actions: Any) -> None:
    parser = actions.add_parser("train", help="train the character detector on synthetic pages")
    parser.add_argument("--data", required=True, help="the output_dir of `objdet ocr synth`")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--minutes", type=float, default=None, help="time budget of the training")
    parser.add_argument("--num_train_steps", type=int, default=None, help="default: the config's num_steps")
    parser.add_argument("--pipeline_config_path", default=None,
                        help="default: the shipped character detection config (objdet/ocr/configs)")
    parser.add_argument("--eval_every_n", type=int, default=0, help="CER on held-out pages every N steps")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_export", action="store_true", help="skip writing MODEL_DIR/export")
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    import logging

    from objdet.ocr.training import train_ocr

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train_ocr(args.data, args.model_dir, minutes=args.minutes, num_steps=args.num_train_steps,
                       config_path=args.pipeline_config_path, seed=args.seed,
                       eval_every_n=args.eval_every_n, num_workers=args.num_workers,
                       device=args.device, export=not args.no_export)
    print(f"trained {result.step} steps in {result.seconds:.0f} s; model_dir {result.model_dir}")
    if result.cer is not None:
        print(f"held-out synthetic pages: CER {result.cer:.4f}, WER {result.wer:.4f}")
    if result.export_dir:
        print(f"exported to {result.export_dir}")
    return 0


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_dir", help="an `objdet ocr train` model_dir (latest checkpoint)")
    model.add_argument("--model", help="an export directory with ocr.json (MODEL_DIR/export)")
    parser.add_argument("--min_score", type=float, default=0.3, help="glyph detection threshold")
    parser.add_argument("--scale", type=float, default=None,
                        help="read at this scale (default: from the height of the text lines)")


def _reader(args: argparse.Namespace) -> Any:
    from objdet.ocr.reading import PageReader

    if args.model_dir:
        return PageReader.from_model_dir(args.model_dir, args.min_score)
    return PageReader.from_export(args.model, args.min_score)


def _register_read(actions: Any) -> None:
    parser = actions.add_parser("read", help="read page images into text, JSON or hOCR")
    _add_model_flags(parser)
    parser.add_argument("--image", nargs="+", required=True, help="page images")
    parser.add_argument("--format", choices=("text", "json", "hocr"), default="text")
    parser.add_argument("--output", default=None, help="write here instead of stdout")
    parser.set_defaults(run=run_read)


def run_read(args: argparse.Namespace) -> int:
    from objdet.atomic import atomic_write
    from objdet.ocr.hocr import hocr_document, page_json
    from objdet.ocr.samples import read_gray

    reader = _reader(args)
    pages = [(image, reader.read(read_gray(image), args.scale)) for image in args.image]
    if args.format == "text":
        output = "\n\n".join(page.text for _, page in pages) + "\n"
    elif args.format == "json":
        payload: Any = [page_json(page, image) for image, page in pages]
        output = json.dumps(payload[0] if len(payload) == 1 else payload, ensure_ascii=False, indent=1) + "\n"
    else:
        output = hocr_document(pages)
    if args.output:
        with atomic_write(args.output, "w") as handle:
            handle.write(output)
    else:
        sys.stdout.write(output)
    return 0


def _register_eval(actions: Any) -> None:
    parser = actions.add_parser("eval", help="character and word error rate over pages with known text")
    _add_model_flags(parser)
    parser.add_argument("--images", required=True, help="folder of PAGE.png")
    parser.add_argument("--gt", required=True, help="folder of PAGE.txt (lines separated by newlines)")
    parser.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from objdet.ocr.evaluation import evaluate_reader

    reader = _reader(args)
    report = evaluate_reader(reader, Path(args.images), Path(args.gt))
    print(json.dumps(report.as_json(), indent=1))
    return 0

