"""Output formats of ``objdet ocr read``: plain text (blocks separated by a blank line),
JSON (blocks > lines > words > glyphs, every glyph's box and confidence), and hOCR (the HTML
microformat other OCR tools read: ocr_page > ocr_carea > ocr_par > ocr_line > ocrx_word >
ocrx_cinfo, with ``bbox`` in page pixels and ``x_wconf`` in percent; one ocr_carea holding
one ocr_par per block, as Tesseract writes them)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from objdet.ocr.lines import Line
from objdet.ocr.reading import PageResult

FORMATS = ("text", "json", "hocr")


def _bbox(box: Sequence[float]) -> str:
    return "bbox " + " ".join(str(round(v)) for v in box)


def page_json(page: PageResult, image: str) -> dict[str, Any]:
    """One page as JSON: blocks > lines > words > glyphs, boxes [x1, y1, x2, y2] page pixels."""
    return {
        "image": image, "height": page.size[0], "width": page.size[1], "scale": page.scale,
        "text": page.text,
        "blocks": [{
            "text": block.text, "box": [round(v, 1) for v in block.box],
            "lines": [_line_json(line) for line in block.lines],
        } for block in page.blocks],
    }


def _line_json(line: Line) -> dict[str, Any]:
    return {
        "text": line.text, "box": [round(v, 1) for v in line.box],
        "words": [{
            "text": word.text, "box": [round(v, 1) for v in word.box],
            "glyphs": [{"text": g.text, "box": [round(v, 1) for v in g.box],
                        "score": round(g.score, 4)} for g in word.glyphs],
        } for word in line.words],
    }


def hocr_document(pages: Sequence[tuple[str, PageResult]]) -> str:
    """An hOCR document of one or more (image path, page)."""
    body = []
    for page_number, (image, page) in enumerate(pages, start=1):
        height, width = page.size
        title = f"image {html.escape(Path(image).name, quote=False)}; bbox 0 0 {width} {height}; ppageno {page_number - 1}"
        body.append(f"  <div class='ocr_page' id='page_{page_number}' title='{html.escape(title)}'>")
        line_number = 0
        for block_number, block in enumerate(page.blocks, start=1):
            block_id = f"{page_number}_{block_number}"
            body.append(f"   <div class='ocr_carea' id='block_{block_id}' title='{_bbox(block.box)}'>")
            body.append(f"    <p class='ocr_par' id='par_{block_id}' title='{_bbox(block.box)}'>")
            for line in block.lines:
                line_number += 1
                body.extend(_hocr_line(line, f"{page_number}_{line_number}"))
            body.append("    </p>")
            body.append("   </div>")
        body.append("  </div>")
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"',
        '    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
        " <head>",
        "  <title></title>",
        '  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>',
        "  <meta name='ocr-system' content='objdet ocr'/>",
        "  <meta name='ocr-capabilities' content='ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrx_cinfo'/>",
        " </head>",
        " <body>",
        *body,
        " </body>",
        "</html>",
        "",
    ])


def _hocr_line(line: Line, line_id: str) -> list[str]:
    """An ocr_line with its words and glyphs; ``line_id``: "PAGE_LINE" (numbers from 1)."""
    out = [f"     <span class='ocr_line' id='line_{line_id}' title='{_bbox(line.box)}'>"]
    for word_number, word in enumerate(line.words, start=1):
        glyphs = "".join(
            f"<span class='ocrx_cinfo' title='{_bbox(g.box)}; x_conf {100 * g.score:.1f}'>"
            f"{html.escape(g.text)}</span>" for g in word.glyphs)
        out.append(f"      <span class='ocrx_word' id='word_{line_id}_{word_number}' "
                   f"title='{_bbox(word.box)}; x_wconf {round(100 * word.score)}'>{glyphs}</span>")
    out.append("     </span>")
    return out
