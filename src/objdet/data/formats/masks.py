"""COCO segmentations -> binary masks: run-length encodings and polygons.

COCO stores a mask either as polygons (``[[x1, y1, x2, y2, ...], ...]``, pixel coordinates)
or as a run-length encoding over the mask in column-major order: ``counts`` alternate
between runs of 0s and 1s, starting with 0s. Counts are a list of ints ("uncompressed") or a
string ("compressed": each count as the difference to the count two places before, written
in 5-bit groups as characters from '0').

The polygon rasterization reproduces the COCO API's (``maskApi.c``: points are upsampled 5x
along every edge and a pixel is inside when its centre lies below a crossing of the outline
in its column), so masks here equal ``pycocotools.mask.decode`` pixel for pixel; the tests
check that against pycocotools.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from objdet.errors import DataError

UPSAMPLE = 5  # maskApi.c's scale for walking polygon edges


def decode_rle_counts(
    counts: Sequence[int], height: int, width: int, where: str = ""
) -> np.ndarray:
    """Uncompressed RLE counts -> ``[height, width]`` uint8 mask (0/1)."""
    counts_array = np.asarray(counts, dtype=np.int64)
    if (counts_array < 0).any() or int(counts_array.sum()) != height * width:
        raise DataError(
            f"{where}: RLE counts must be non-negative and sum to height*width = "
            f"{height}*{width} = {height * width}, found sum {int(counts_array.sum())}"
        )
    values = (np.arange(len(counts_array)) % 2).astype(np.uint8)  # 0, 1, 0, 1, ...
    flat = np.repeat(values, counts_array)  # column-major pixels
    return np.ascontiguousarray(flat.reshape(width, height).T)


def encode_rle_counts(mask: np.ndarray) -> list[int]:
    """``[height, width]`` binary mask -> uncompressed RLE counts (first run is 0s)."""
    flat = (np.asarray(mask).T.reshape(-1) > 0).astype(np.int8)  # column-major pixels
    change_positions = np.flatnonzero(np.diff(flat)) + 1
    boundaries = np.concatenate([[0], change_positions, [flat.size]])
    counts = np.diff(boundaries).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return [int(c) for c in counts]


def decode_counts_string(text: str, where: str = "") -> list[int]:
    """Compressed RLE string -> uncompressed counts."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise DataError(f"{where}: compressed RLE string ends inside a count")
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # sign-extend the last 5-bit group
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_counts_string(counts: Sequence[int]) -> str:
    """Uncompressed counts -> compressed RLE string (the inverse of decode_counts_string)."""
    characters = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            characters.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(characters)


def polygon_to_rle_counts(polygon: Sequence[float], height: int, width: int) -> list[int]:
    """One polygon ``[x1, y1, x2, y2, ...]`` (pixels) -> uncompressed RLE counts."""
    coords = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    # Vertices on the upsampled grid; int(v + .5) truncates toward zero as C does.
    xs = np.trunc(UPSAMPLE * coords[:, 0] + 0.5).astype(np.int64)
    ys = np.trunc(UPSAMPLE * coords[:, 1] + 0.5).astype(np.int64)
    xs, ys = np.append(xs, xs[0]), np.append(ys, ys[0])
    edge_points = [_edge_points(xs[j], ys[j], xs[j + 1], ys[j + 1]) for j in range(len(coords))]
    u = np.concatenate([p[0] for p in edge_points])
    v = np.concatenate([p[1] for p in edge_points])
    # Where the outline crosses from one upsampled column to the next, find the pixel column
    # and the first pixel row below the crossing.
    crossing = np.flatnonzero(u[1:] != u[:-1]) + 1
    u_now, u_before, v_now, v_before = u[crossing], u[crossing - 1], v[crossing], v[crossing - 1]
    column = np.where(u_now < u_before, u_now, u_now - 1).astype(np.float64)
    column = (column + 0.5) / UPSAMPLE - 0.5
    keep = (np.floor(column) == column) & (column >= 0) & (column <= width - 1)
    row = np.minimum(v_now, v_before).astype(np.float64)
    row = np.ceil(np.clip((row + 0.5) / UPSAMPLE - 0.5, 0, height))
    positions = column[keep].astype(np.int64) * height + row[keep].astype(np.int64)
    positions = np.sort(np.append(positions, height * width))
    runs = np.diff(positions, prepend=0).tolist()
    return _merge_empty_runs(runs)


def _edge_points(xs: int, ys: int, xe: int, ye: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer points along one upsampled edge, from its start to its end."""
    dx, dy = abs(xe - xs), abs(ye - ys)
    # Walk each edge from its lower end so both directions round the same way.
    flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
    if flip:
        xs, xe, ys, ye = xe, xs, ye, ys
    steps = np.arange(max(dx, dy) + 1)
    t = (max(dx, dy) - steps) if flip else steps
    if dx >= dy:
        slope = (ye - ys) / dx if dx else 0.0
        return t + xs, np.trunc(ys + slope * t + 0.5).astype(np.int64)
    slope = (xe - xs) / dy
    return np.trunc(xs + slope * t + 0.5).astype(np.int64), t + ys


def _merge_empty_runs(runs: list[int]) -> list[int]:
    """Drop zero-length runs after the first, joining the runs on either side."""
    merged = [runs[0]]
    index = 1
    while index < len(runs):
        if runs[index] > 0:
            merged.append(runs[index])
            index += 1
        else:
            index += 1
            if index < len(runs):
                merged[-1] += runs[index]
                index += 1
    return merged


def segmentation_to_mask(segmentation: object, height: int, width: int, where: str) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, or RLE dict) -> ``[height, width]`` uint8 mask."""
    if isinstance(segmentation, list):
        mask = np.zeros((height, width), dtype=np.uint8)
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) % 2 or len(polygon) < 4:
                raise DataError(
                    f"{where}: a polygon must be a list of x, y pairs, found {polygon!r:.80}"
                )
            mask |= decode_rle_counts(
                polygon_to_rle_counts(polygon, height, width), height, width, where
            )
        return mask
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size")
        if list(size or []) != [height, width]:
            raise DataError(
                f"{where}: RLE size {size} does not match the image ({height}, {width})"
            )
        counts = segmentation["counts"]
        if isinstance(counts, str | bytes):
            text = counts.decode("ascii") if isinstance(counts, bytes) else counts
            counts = decode_counts_string(text, where)
        return decode_rle_counts(counts, height, width, where)
    raise DataError(
        f"{where}: segmentation must be polygons or an RLE dict, found {segmentation!r:.80}"
    )


def mask_to_rle(mask: np.ndarray) -> dict[str, object]:
    """``[height, width]`` binary mask -> COCO compressed RLE ``{'size': [h, w], 'counts': str}``."""
    height, width = mask.shape
    return {
        "size": [int(height), int(width)],
        "counts": encode_counts_string(encode_rle_counts(mask)),
    }
