"""The exceptions objdet raises for bad input.

Every error names the file (and line, record or byte offset where there is one), what was
expected and what was found. The CLI prints these messages without a traceback.
"""


class ObjdetError(Exception):
    """Base class of every error objdet raises on purpose."""


class ConfigError(ObjdetError):
    """A pipeline config that does not parse, validate or build."""


class LabelMapError(ObjdetError):
    """A label map that does not parse or fails validation, or a label missing from it."""


class DataError(ObjdetError):
    """Bad data: a corrupt TFRecord, an undecodable image, an invalid box or annotation."""


class CheckpointError(ObjdetError):
    """A checkpoint that cannot be read or does not fit the model (names the file and key)."""
