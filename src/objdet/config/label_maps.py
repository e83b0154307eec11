"""The label maps a pipeline config names, read and checked against the model's num_classes.

``objdet config validate`` and ``objdet train`` (before building anything) both run these
checks through ``objdet.config.validate(config, path, check_label_maps=True)``, so a bad
label map fails at once, naming the file, rather than after a whole training run.

For every ``label_map_path`` of ``train_input_reader`` and each ``eval_input_reader[i]``:

* the file parses (a syntax error is reported as ``file:line:col``) and validates (ids,
  names: ``objdet.structures.label_map``);
* ``model.<architecture>.num_classes`` is at least the label map's largest id. The OD API
  sizes the class dimension by the largest id, not by the item count (its
  ``create_categories_from_labelmap`` takes ``max(item.id)``; mscoco_label_map.pbtxt has
  80 items with ids up to 90, for ``num_classes: 90``). With fewer classes than the largest
  id, its one-hot encoding silently drops every box of the ids above ``num_classes``: an
  error here.
* More classes than the largest id is accepted with a warning, as the OD API accepts it
  (two of its own sample configs for Open Images have 546 and 601 classes for a label map
  up to id 545): the model also predicts ids the label map does not name, and evaluation
  drops those detections (the OD API's evaluators do the same, silently; objdet's count
  them and warn).

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from objdet.config.accessors import get_num_classes
from objdet.errors import ConfigError, LabelMapError
from objdet.protos.input_reader_pb2 import InputReader
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig


@dataclass
class LabelMapFindings:
    """What checking a config's label maps found, as ``field.path: what`` lines.

    Attributes:
        problems: what makes the config unusable (a bad file, num_classes below its ids).
        warnings: what runs but deserves a look (num_classes above the largest id).
    """

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def input_readers(config: TrainEvalPipelineConfig) -> Iterator[tuple[str, InputReader]]:
    """``(field path, reader)`` of train_input_reader (when set) and each eval_input_reader."""
    if config.HasField("train_input_reader"):
        yield "train_input_reader", config.train_input_reader
    for index, reader in enumerate(config.eval_input_reader):
        yield f"eval_input_reader[{index}]", reader


def label_map_findings(config: TrainEvalPipelineConfig) -> LabelMapFindings:
    """Read every label map ``config`` names and compare it with num_classes (one entry per
    file, naming every field that uses it)."""
    from objdet.structures.label_map import load_label_map

    fields_by_path: dict[str, list[str]] = {}
    for field_path, reader in input_readers(config):
        if reader.label_map_path:
            fields_by_path.setdefault(reader.label_map_path, []).append(
                f"{field_path}.label_map_path"
            )
    num_classes = _num_classes(config)
    findings = LabelMapFindings()
    for path, fields in fields_by_path.items():
        where = ", ".join(fields)
        try:
            label_map = load_label_map(path)
        except LabelMapError as error:
            findings.problems.append(f"{where}: {error}")
            continue
        if num_classes is None or num_classes[1] <= 0 or num_classes[1] == label_map.max_id:
            continue
        name, count = num_classes
        largest = label_map.max_id
        mismatch = f"{name} is {count} but the largest id in {path} ({where}) is {largest}"
        if largest > count:
            findings.problems.append(
                f"{mismatch} ({len(label_map)} items): boxes of ids {_id_range(count + 1, largest)} "
                "could never be learned; num_classes must be at least the largest id (the OD "
                "API counts classes by the largest id, not by items)"
            )
        else:
            findings.warnings.append(
                f"{mismatch}: the model also predicts ids {_id_range(largest + 1, count)}, "
                "which the label map does not name; their detections are not evaluated (as "
                "in the OD API)"
            )
    return findings


def _id_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def _num_classes(config: TrainEvalPipelineConfig) -> tuple[str, int] | None:
    """``("model.ssd.num_classes", value)``, or None when the model has none to compare."""
    architecture = config.model.WhichOneof("model")
    if architecture is None:
        return None
    try:
        return f"model.{architecture}.num_classes", get_num_classes(config)
    except ConfigError:
        return None
