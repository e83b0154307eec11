"""Run-length encoded (RLE) instance masks, numerically identical to pycocotools' maskApi.

COCO stores a mask of ``height x width`` pixels as run lengths over the pixels in
column-major (Fortran) order, alternating background / foreground and starting with
background (a mask that starts with foreground has a first run of 0). The JSON holds the
runs either as a list (``"counts": [..]``, "uncompressed") or as the compressed ASCII string
of ``maskApi.c`` (6 bits per character, each run after the second stored as the difference
to the run two before).

Inside objdet a mask is an ``RleMask``: its size and its foreground *intervals* (sorted,
disjoint, non-touching ``[start, end)`` pixel ranges in that column-major order). Zero-length
runs vanish in this form, which changes no area and no IoU. Polygons are rasterized with
exactly pycocotools' ``rleFrPoly`` (5x upsampled boundary, then the same rounding), so
polygon ground truth gives bit-identical IoUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError

IntArray = NDArray[np.int64]

# pycocotools' rleFrPoly draws the polygon boundary on a grid this many times finer.
_POLYGON_SCALE = 5.0


@dataclass(frozen=True)
class RleMask:
    """A binary mask as foreground intervals.

    Attributes:
        height, width: the mask size in pixels.
        starts, ends: ``[R]`` int64 column-major pixel offsets, ``starts[i] < ends[i] <
            starts[i + 1]``; the foreground is the union of ``[starts[i], ends[i])``.
    """

    height: int
    width: int
    starts: IntArray
    ends: IntArray

    @property
    def area(self) -> int:
        """Number of foreground pixels."""
        return int((self.ends - self.starts).sum())


def _from_boundaries(height: int, width: int, starts: IntArray, ends: IntArray) -> RleMask:
    """An ``RleMask`` from sorted disjoint intervals, dropping empty ones, joining touching."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size > 1:
        touching = starts[1:] == ends[:-1]
        if touching.any():
            starts = np.concatenate([starts[:1], starts[1:][~touching]])
            ends = np.concatenate([ends[:-1][~touching], ends[-1:]])
    return RleMask(height, width, starts.astype(np.int64), ends.astype(np.int64))


def from_counts(counts: Sequence[int] | NDArray[np.integer], height: int, width: int) -> RleMask:
    """An ``RleMask`` from run lengths (background first) over ``height * width`` pixels.

    Raises:
        DataError: if a run is negative or the runs do not add up to ``height * width``.
    """
    runs = np.asarray(counts, dtype=np.int64).reshape(-1)
    if (runs < 0).any():
        raise DataError(f"RLE counts must be >= 0, got {runs[runs < 0][:3].tolist()}")
    if int(runs.sum()) != height * width:
        raise DataError(
            f"RLE counts add up to {int(runs.sum())} pixels, expected height*width = "
            f"{height}*{width} = {height * width}"
        )
    positions = np.concatenate([[0], np.cumsum(runs)])
    # Foreground runs are the odd ones: [positions[1], positions[2]), [positions[3], ...).
    return _from_boundaries(height, width, positions[1:-1:2], positions[2::2])


def to_counts(mask: RleMask) -> IntArray:
    """The canonical run lengths (background first, no empty runs after the first)."""
    edges = np.empty(2 * mask.starts.size + 2, dtype=np.int64)
    edges[0] = 0
    edges[1:-1:2] = mask.starts
    edges[2:-1:2] = mask.ends
    edges[-1] = mask.height * mask.width
    counts = np.diff(edges)
    if counts.size > 1 and counts[-1] == 0:  # foreground reaches the last pixel
        counts = counts[:-1]
    return counts


def encode(binary_mask: NDArray[np.integer] | NDArray[np.bool_]) -> RleMask:
    """An ``RleMask`` from a ``[H, W]`` array; any non-zero pixel is foreground."""
    array = np.asarray(binary_mask)
    if array.ndim != 2:
        raise DataError(f"a mask must be [H, W], got shape {array.shape}")
    height, width = array.shape
    flat = array.ravel(order="F") != 0
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    return RleMask(height, width, changes[0::2].astype(np.int64), changes[1::2].astype(np.int64))


def decode(mask: RleMask) -> NDArray[np.uint8]:
    """The ``[H, W]`` uint8 0/1 array of an ``RleMask``."""
    flat = np.zeros(mask.height * mask.width + 1, dtype=np.int8)
    np.add.at(flat, mask.starts, 1)
    np.add.at(flat, mask.ends, -1)
    pixels = np.cumsum(flat[:-1]).astype(np.uint8)
    return pixels.reshape(mask.width, mask.height).T.copy()


def counts_from_string(text: str | bytes) -> IntArray:
    """Decode pycocotools' compressed counts string into run lengths (``rleFrString``)."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    if not raw:
        return np.zeros(0, dtype=np.int64)
    chars = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if chars.min() < 0 or chars.max() > 63:
        raise DataError("compressed RLE counts hold characters outside '0'..'o'")
    group_ends = np.flatnonzero((chars & 0x20) == 0)  # a character without 0x20 ends a value
    if group_ends.size == 0 or group_ends[-1] != chars.size - 1:
        raise DataError("compressed RLE counts end in the middle of a value")
    group_starts = np.concatenate([[0], group_ends[:-1] + 1])
    lengths = group_ends - group_starts + 1
    position_in_group = np.arange(chars.size) - np.repeat(group_starts, lengths)
    values = np.add.reduceat((chars & 0x1F) << (5 * position_in_group), group_starts)
    negative = (chars[group_ends] & 0x10) != 0
    values = np.where(negative, values | (-1 << (5 * lengths)), values)
    # Runs after the second are stored relative to the run two places before.
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2])
    counts[2::2] = np.cumsum(values[2::2])
    return counts & 0xFFFFFFFF  # maskApi keeps runs in uint32


def counts_to_string(counts: Sequence[int] | NDArray[np.integer]) -> str:
    """pycocotools' compressed string of run lengths (``rleToString``)."""
    runs = [int(value) for value in np.asarray(counts).reshape(-1)]
    characters: list[str] = []
    for index, run in enumerate(runs):
        value = run - runs[index - 2] if index > 2 else run
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            if more:
                chunk |= 0x20
            characters.append(chr(chunk + 48))
    return "".join(characters)


def _polygon_boundary(xy: NDArray[np.float64]) -> tuple[IntArray, IntArray]:
    """rleFrPoly step 1: integer points densely along the 5x upsampled polygon edges."""
    # C's (int) cast truncates toward zero, as numpy's astype does.
    x = (_POLYGON_SCALE * xy[0::2] + 0.5).astype(np.int64)
    y = (_POLYGON_SCALE * xy[1::2] + 0.5).astype(np.int64)
    x_start, y_start = x, y
    x_end, y_end = np.roll(x, -1), np.roll(y, -1)
    dx, dy = np.abs(x_end - x_start), np.abs(y_start - y_end)
    along_x = dx >= dy
    flip = (along_x & (x_start > x_end)) | (~along_x & (y_start > y_end))
    xs, xe = np.where(flip, x_end, x_start), np.where(flip, x_start, x_end)
    ys, ye = np.where(flip, y_end, y_start), np.where(flip, y_start, y_end)
    major = np.where(along_x, dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A zero-length edge divides 0/0; its single point is never used (see below).
        slope = np.where(along_x, (ye - ys) / dx, (xe - xs) / dy)
    num_points = major + 1
    edge = np.repeat(np.arange(x.size), num_points)
    step = np.arange(int(num_points.sum())) - np.repeat(np.cumsum(num_points) - num_points,
                                                        num_points)
    t = np.where(flip[edge], major[edge] - step, step)
    with np.errstate(invalid="ignore"):
        minor_x = np.nan_to_num(xs[edge] + slope[edge] * t + 0.5).astype(np.int64)
        minor_y = np.nan_to_num(ys[edge] + slope[edge] * t + 0.5).astype(np.int64)
    u = np.where(along_x[edge], t + xs[edge], minor_x)
    v = np.where(along_x[edge], minor_y, t + ys[edge])
    return u, v


def _merge_zero_runs(diffs: IntArray) -> IntArray:
    """rleFrPoly's last loop: a zero run after the first folds the next run into the previous."""
    zero_positions = np.flatnonzero(diffs[1:] == 0) + 1
    if zero_positions.size == 0:
        return diffs
    markers: list[int] = []
    consumed_until = -1
    for position in zero_positions.tolist():  # few: duplicate boundary points only
        if position <= consumed_until:
            continue
        markers.append(position)
        consumed_until = position + 1
    marker_array = np.asarray(markers, dtype=np.int64)
    partners = marker_array + 1
    partners = partners[partners < diffs.size]
    keep = np.ones(diffs.size, dtype=bool)
    keep[marker_array] = False
    keep[partners] = False
    merged = diffs[keep].copy()
    # The run a partner joins is the last kept one before its marker.
    target = np.cumsum(keep)[partners - 2] - 1
    np.add.at(merged, target, diffs[partners])
    return merged


def from_polygon(polygon: Sequence[float], height: int, width: int) -> RleMask:
    """Rasterize one polygon ``[x0, y0, x1, y1, ...]`` exactly as pycocotools' rleFrPoly."""
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1)
    xy = xy[: 2 * (xy.size // 2)]
    if xy.size == 0:
        return RleMask(height, width, np.zeros(0, np.int64), np.zeros(0, np.int64))
    u, v = _polygon_boundary(xy)
    # Step 2: where the boundary crosses a pixel column, keep its y; downsample.
    u_now, u_before, v_now, v_before = u[1:], u[:-1], v[1:], v[:-1]
    x_cross = np.where(u_now < u_before, u_now, u_now - 1).astype(np.float64)
    x_cross = (x_cross + 0.5) / _POLYGON_SCALE - 0.5
    keep = (u_now != u_before) & (np.floor(x_cross) == x_cross)
    keep &= (x_cross >= 0) & (x_cross <= width - 1)
    y_cross = np.minimum(v_now, v_before).astype(np.float64)
    y_cross = np.ceil(np.clip((y_cross + 0.5) / _POLYGON_SCALE - 0.5, 0, height))
    # Step 3: the crossings, as column-major offsets, bound the foreground runs.
    offsets = x_cross[keep].astype(np.int64) * height + y_cross[keep].astype(np.int64)
    offsets = np.sort(np.concatenate([offsets, [height * width]]))
    diffs = np.diff(offsets, prepend=0)
    return from_counts(_merge_zero_runs(diffs), height, width)


def union(masks: Sequence[RleMask]) -> RleMask:
    """The union of masks of one size (pycocotools' ``merge`` with intersect=False)."""
    if len(masks) == 1:
        return masks[0]
    if not masks:
        return RleMask(0, 0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    height, width = masks[0].height, masks[0].width
    if any((m.height, m.width) != (height, width) for m in masks):
        raise DataError("cannot merge masks of different sizes into one segmentation")
    starts = np.concatenate([m.starts for m in masks])
    ends = np.concatenate([m.ends for m in masks])
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    if starts.size == 0:
        return masks[0]
    reach = np.maximum.accumulate(ends)
    opens = np.ones(starts.size, dtype=bool)
    opens[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(opens)
    return _from_boundaries(height, width, starts[first], np.maximum.reduceat(ends, first))


def from_box(box_xywh: Sequence[float], height: int, width: int) -> RleMask:
    """A box ``[x, y, w, h]`` rasterized as pycocotools' ``frBbox`` (as a 4-point polygon)."""
    x, y, w, h = (float(value) for value in box_xywh)
    return from_polygon([x, y, x, y + h, x + w, y + h, x + w, y], height, width)


def from_segmentation(segmentation: object, height: int, width: int) -> RleMask:
    """A COCO ``segmentation`` field as a mask, with pycocotools' ``annToRLE`` rules.

    - a list of polygons ``[[x0, y0, ...], ...]``: each rasterized, then their union (a part of
      4 numbers is a 2-point polygon here; pycocotools raises TypeError on it);
    - ``{"counts": [..], "size": [h, w]}`` (uncompressed) or ``{"counts": "...",
      "size": [h, w]}`` (compressed): taken as is, at its own size.

    ``height``/``width`` (the image size) apply to polygons and boxes only.

    Raises:
        DataError: for any other shape of ``segmentation``.
    """
    if isinstance(segmentation, dict):
        return _from_rle_object(segmentation)
    if not isinstance(segmentation, list) or not segmentation:
        raise DataError(
            "segmentation must be a non-empty list of polygons or an RLE object "
            f"{{'counts', 'size'}}, got {str(segmentation)[:80]}"
        )
    first = segmentation[0]
    if isinstance(first, dict):
        return union([_from_rle_object(part) for part in segmentation])
    if not isinstance(first, list) or len(first) < 4:
        raise DataError(
            "segmentation polygons must be lists of at least 4 numbers [x0, y0, x1, y1, ...], "
            f"got {str(segmentation)[:80]}"
        )
    if any(not isinstance(part, list) for part in segmentation):
        raise DataError(f"segmentation mixes polygons and other parts: {str(segmentation)[:80]}")
    return union([from_polygon(part, height, width) for part in segmentation])


def _from_rle_object(rle: dict) -> RleMask:
    """A mask from ``{"counts": list | str, "size": [height, width]}``."""
    if "counts" not in rle or "size" not in rle or len(rle["size"]) != 2:
        raise DataError(f"an RLE segmentation needs 'counts' and 'size': [h, w], got {rle!r:.80}")
    height, width = int(rle["size"][0]), int(rle["size"][1])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        return from_counts(counts_from_string(counts), height, width)
    return from_counts(counts, height, width)


def to_coco_rle(mask: RleMask) -> dict:
    """The compressed COCO RLE object ``{"size": [h, w], "counts": str}`` of a mask."""
    return {"size": [mask.height, mask.width], "counts": counts_to_string(to_counts(mask))}
