"""``train_ocr``: train the character detector on the pages of ``objdet ocr synth``.

The model is an ordinary pipeline.config (``configs/char_center_net.config`` by default:
CenterNet on MobileNet v2 FPN at stride 4, from scratch; any detector config may replace
it). ``train_ocr`` fills in what depends on the data (num_classes, label map, input path)
and trains with ``objdet.engine.training.train``, on the CPU by default, adding:

- a time budget (``minutes``): training stops after the step that exceeds it;
- the eval metric of OCR: CER and WER of reading the held-out synthetic pages
  (``DATA/eval/images`` + ``gt``) with the moving-average weights, every ``eval_every_n``
  steps and at the end; the history goes to ``model_dir/ocr_eval.json``.

``model_dir/ocr.json`` records the glyph texts and the training pages' line height, which
``objdet ocr read`` needs; an export (``model_dir/export``) gets a copy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from objdet.atomic import atomic_write
from objdet.errors import ConfigError, DataError
from objdet.ocr.reading import OCR_FILE, PageReader
from objdet.ocr.synth import SYNTH_FILE

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "char_center_net.config"
EVAL_FILE = "ocr_eval.json"


def default_config_path() -> Path:
    return Path(str(resources.files("objdet.ocr") / "configs" / DEFAULT_CONFIG))


@dataclass
class OcrTrainResult:
    step: int
    model_dir: Path
    cer: float | None
    wer: float | None
    seconds: float
    export_dir: Path | None = None
    eval_history: list[dict[str, float]] = field(default_factory=list)


def load_ocr_config(data_dir: Path, config_path: Path | None = None) -> Any:
    """The detector config with num_classes, label map and input path of ``data_dir``."""
    import objdet.config
    from objdet.structures.label_map import load_label_map

    label_map_path = data_dir / "label_map.pbtxt"
    if not (data_dir / "train.record").is_file() or not label_map_path.is_file():
        raise DataError(f"--data {data_dir}: expected train.record and label_map.pbtxt "
                        "(written by `objdet ocr synth`)")
    config = objdet.config.load(config_path or default_config_path())
    family = config.model.WhichOneof("model")
    if family is None:
        raise ConfigError(f"{config_path}: model: no detector configured")
    getattr(config.model, family).num_classes = len(load_label_map(label_map_path))
    config.train_input_reader.label_map_path = str(label_map_path)
    del config.train_input_reader.tf_record_input_reader.input_path[:]
    config.train_input_reader.tf_record_input_reader.input_path.append(str(data_dir / "train.record"))
    return config


class TimeBudget:
    """Stops training after the first step that ends past ``seconds`` from the start."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def before_train(self, trainer: Any) -> None:
        self.start = time.monotonic()

    def after_step(self, trainer: Any, losses: dict[str, float]) -> None:
        if time.monotonic() - self.start > self.seconds:
            trainer.num_steps = trainer.step

    def after_train(self, trainer: Any) -> None: ...


class CharacterErrorRateHook:
    """CER/WER of reading the held-out pages, every ``every_n`` steps (0: at the end only)."""

    def __init__(self, eval_dir: Path, info: dict[str, Any], model_dir: Path, every_n: int,
                 max_pages: int = 20) -> None:
        self.eval_dir, self.info, self.model_dir = eval_dir, info, model_dir
        self.every_n, self.max_pages = every_n, max_pages
        self.history: list[dict[str, float]] = []

    def before_train(self, trainer: Any) -> None: ...

    def after_step(self, trainer: Any, losses: dict[str, float]) -> None:
        if self.every_n and trainer.step % self.every_n == 0 and trainer.step < trainer.num_steps:
            self.run(trainer)

    def after_train(self, trainer: Any) -> None:
        if not self.history or self.history[-1]["step"] != trainer.step:
            self.run(trainer)

    def run(self, trainer: Any) -> dict[str, float]:
        from objdet.inference.predictor import Predictor
        from objdet.models.contract import as_detection_model
        from objdet.ocr.evaluation import evaluate_reader

        module = trainer.ema.module if trainer.ema is not None else trainer.model
        module = getattr(module, "module", module)  # DDP
        predictor = Predictor(model=module, network=as_detection_model(module).predict)
        reader = PageReader.from_predictor(predictor, self.info)
        report = evaluate_reader(reader, self.eval_dir / "images", self.eval_dir / "gt",
                                 max_pages=self.max_pages)
        entry = {"step": trainer.step, "cer": report.cer, "wer": report.wer}
        self.history.append(entry)
        logger.info("step %d: CER %.4f, WER %.4f on %d held-out pages", trainer.step, report.cer,
                    report.wer, report.pages)
        with atomic_write(self.model_dir / EVAL_FILE, "w") as handle:
            json.dump(self.history, handle, indent=1)
        return entry


def _write_info(info: dict[str, Any], directory: Path) -> None:
    with atomic_write(directory / OCR_FILE, "w") as handle:
        json.dump(info, handle, ensure_ascii=False, indent=1)


def train_ocr(
    data_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str], *,
    minutes: float | None = None, num_steps: int | None = None,
    config_path: str | os.PathLike[str] | None = None, seed: int = 0, eval_every_n: int = 0,
    num_workers: int = 1, device: str = "cpu", export: bool = True, show_progress: bool = True,
) -> OcrTrainResult:
    """Train (or resume) the character detector in ``model_dir`` on ``data_dir`` (module doc).

    ``num_steps`` (default: the config's) and ``minutes`` both bound the training."""
    from objdet.engine.training import TrainOptions, train

    data_dir, model_dir = Path(data_dir), Path(model_dir)
    start = time.perf_counter()
    try:
        synth_info = json.loads((data_dir / SYNTH_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"--data {data_dir}: has no {SYNTH_FILE} (written by `objdet ocr synth`)") from None
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"--minutes: {minutes}; expected a positive number of minutes")
    config = load_ocr_config(data_dir, Path(config_path) if config_path else None)
    info = {"glyph_texts": synth_info["glyph_texts"], "line_height": synth_info["line_height"]}
    if "glyph_heights" in synth_info:  # synth.json of before the glyph size measure has none
        info["glyph_heights"] = synth_info["glyph_heights"]
        low, high = synth_info["options"]["glyph_height"]
        info["glyph_height"] = 0.5 * (float(low) + float(high))  # the middle of the trained sizes
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_info(info, model_dir)
    hooks: list[Any] = []
    if minutes is not None:
        hooks.append(TimeBudget(60.0 * minutes))
    cer_hook = None
    if (data_dir / "eval" / "images").is_dir():
        cer_hook = CharacterErrorRateHook(data_dir / "eval", info, model_dir, eval_every_n)
        hooks.append(cer_hook)
    result = train(config, model_dir, TrainOptions(
        num_train_steps=num_steps, checkpoint_every_n=500, num_workers=num_workers, seed=seed,
        device=device, show_progress=show_progress, extra_hooks=hooks),
        config_source=config_path or default_config_path())
    export_dir = _export_or_warn(model_dir) if export else None
    last = cer_hook.history[-1] if cer_hook and cer_hook.history else {}
    return OcrTrainResult(result.step, model_dir, last.get("cer"), last.get("wer"),
                          time.perf_counter() - start, export_dir,
                          cer_hook.history if cer_hook else [])


def _export_or_warn(model_dir: Path) -> Path | None:
    """The export after training; a failure to export does not lose the trained checkpoint:
    it is reported, and ``objdet ocr read --model_dir`` reads from the checkpoint."""
    try:
        return export_ocr_model(model_dir)
    except Exception as error:  # noqa: BLE001 - torch.export raises many types
        logger.warning("could not export %s (read it with --model_dir instead): %s", model_dir,
                       str(error).splitlines()[0] if str(error) else type(error).__name__)
        return None


def export_ocr_model(model_dir: str | os.PathLike[str], export_dir: str | os.PathLike[str] | None = None) -> Path:
    """Export the latest checkpoint (``model.pt2``) with its ``ocr.json`` beside it."""
    from objdet.export.exporter import export_inference_graph

    model_dir = Path(model_dir)
    export_dir = Path(export_dir) if export_dir else model_dir / "export"
    export_inference_graph(pipeline_config_path=model_dir / "pipeline.config",
                           trained_checkpoint_dir=model_dir, output_directory=export_dir,
                           formats=("pt2",))
    shutil.copyfile(model_dir / OCR_FILE, export_dir / OCR_FILE)
    return export_dir
