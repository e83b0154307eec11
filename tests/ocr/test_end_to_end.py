"""The whole loop on a tiny glyph set: synth -> train -> read -> eval, library and CLI.

Three glyphs on 64x64 pages train for 120 steps (~15 s on 2 idle cores). An untrained
detector reads nothing (CER 1.0); the test asks for CER < MAX_CER on held-out pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from objdet.cli.main import main
from objdet.ocr.samples import render_font_samples
from objdet.ocr.synth import SynthOptions, synthesize
from objdet.ocr.training import default_config_path, train_ocr

GLYPHS = ["o", "x", "l"]
TILE = 64
STEPS = 120
MAX_CER = 0.5  # an untrained detector reads nothing (1.0) or noise (> 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, font_path: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ocr")
    samples = render_font_samples(font_path, GLYPHS)
    synthesize(samples, root / "data", SynthOptions(
        num_pages=48, num_eval_pages=4, page_height=TILE, page_width=TILE,
        glyph_height=(15.0, 19.0), seed=0))
    config = default_config_path().read_text()
    config = config.replace("height: 160", f"height: {TILE}").replace("width: 160", f"width: {TILE}")
    config = config.replace("learning_rate: 0.002", "learning_rate: 0.004")
    # a moving average over ~100 steps would still hold much of the initial weights here
    config = config.replace("use_moving_average: true", "use_moving_average: false")
    (root / "tiny.config").write_text(config)
    result = train_ocr(root / "data", root / "model", num_steps=STEPS, config_path=root / "tiny.config",
                       export=False, show_progress=False)
    assert result.step == STEPS
    assert result.cer is not None and result.cer < MAX_CER, result.eval_history
    return {"root": root, "data": root / "data", "model": root / "model"}


def test_training_reaches_a_low_cer_on_held_out_pages(trained: dict[str, Path]) -> None:
    history = json.loads((trained["model"] / "ocr_eval.json").read_text())
    assert history[-1]["step"] == STEPS and history[-1]["cer"] < MAX_CER


def test_cli_eval_prints_cer_wer_pages(trained: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    eval_dir = trained["data"] / "eval"
    assert main(["ocr", "eval", "--model_dir", str(trained["model"]), "--images",
                 str(eval_dir / "images"), "--gt", str(eval_dir / "gt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pages"] == 4 and report["cer"] < MAX_CER and 0.0 <= report["wer"] <= 1.0


def test_cli_read_formats(trained: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    page = trained["data"] / "eval" / "images" / "page_00048.png"
    truth = (trained["data"] / "eval" / "gt" / "page_00048.txt").read_text()
    base = ["ocr", "read", "--model_dir", str(trained["model"]), "--image", str(page)]
    assert main(base) == 0
    text = capsys.readouterr().out
    assert set(text) <= set(GLYPHS) | {" ", "\n"} and text.strip()
    assert main([*base, "--format", "json"]) == 0
    page_json = json.loads(capsys.readouterr().out)
    glyphs = [g for block in page_json["blocks"] for line in block["lines"]
              for w in line["words"] for g in w["glyphs"]]
    assert glyphs and all(len(g["box"]) == 4 and 0 < g["score"] <= 1 for g in glyphs)
    assert page_json["text"] == text.rstrip("\n")
    out = trained["root"] / "page.hocr"
    assert main([*base, "--format", "hocr", "--output", str(out)]) == 0
    hocr = out.read_text()
    assert hocr.count("class='ocrx_cinfo'") == len(glyphs) and "ocr_line" in hocr
    assert truth.strip()


def test_cli_errors_name_the_input(trained: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ocr", "eval", "--model_dir", str(trained["model"]), "--images",
                 str(trained["data"] / "eval" / "images"), "--gt", str(tmp_path)]) == 2
    assert "has no page_00048.txt" in capsys.readouterr().err
    assert main(["ocr", "read", "--model_dir", str(tmp_path), "--image", "x.png"]) == 2
    assert "has no ocr.json" in capsys.readouterr().err
    assert main(["ocr", "synth", "--samples", str(tmp_path / "none.csv"), "--output_dir",
                 str(tmp_path / "o")]) == 2
    assert "none.csv: samples CSV does not exist" in capsys.readouterr().err
