"""OCR as character detection: glyph samples -> synthetic pages -> a character detector ->
lines of text (``objdet ocr synth | train | read | eval``).

The modules, in the order the data flows: ``samples`` (glyph sources: CSV, VOC page, font),
``synth`` (page renderer, TFRecords), ``training`` (the shipped config, time budget, CER
while training), ``reading`` (pages -> glyph detections, tiled at the training scale that
``page_scale`` measures), ``lines`` (detections -> lines -> words -> text), ``layout``
(columns: lines -> blocks in reading order), ``hocr`` (text, JSON and hOCR output),
``metrics`` and ``evaluation`` (CER/WER over pages).

    from objdet.ocr.samples import load_csv_samples
    from objdet.ocr.synth import synthesize
    from objdet.ocr.training import train_ocr
    from objdet.ocr.reading import PageReader
    from objdet.ocr.samples import read_gray

    synthesize(load_csv_samples("glyphs.csv"), "pages")
    train_ocr("pages", "model", minutes=15)
    print(PageReader.from_model_dir("model").read(read_gray("scan.png")).text)
"""
