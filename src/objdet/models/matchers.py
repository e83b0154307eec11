"""Matchers: assign each anchor (column) to a groundtruth box (row) of a similarity matrix.

A match is ``Tensor[num_anchors]`` int64: ``>= 0`` the matched groundtruth index,
:data:`UNMATCHED` (-1) a negative, :data:`IGNORED` (-2) neither positive nor negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

UNMATCHED = -1
IGNORED = -2


class ArgMaxMatcher:
    """The OD API's ``argmax_matcher``.

    Each anchor takes its most similar groundtruth. Below ``unmatched_threshold`` it is
    a negative; between the thresholds it is ignored (swapped with
    ``negatives_lower_than_unmatched=False``). With ``matched_threshold=None`` (the OD API's
    ``ignore_thresholds``) every anchor keeps its argmax. ``force_match_for_each_row`` also
    gives every groundtruth its best anchor (the first groundtruth wins a shared anchor).
    Ties pick the lowest index, as ``tf.argmax`` does.
    """

    def __init__(
        self,
        *,
        matched_threshold: float | None = 0.5,
        unmatched_threshold: float | None = None,
        negatives_lower_than_unmatched: bool = True,
        force_match_for_each_row: bool = False,
    ) -> None:
        if matched_threshold is None:
            unmatched_threshold = None
        elif unmatched_threshold is None:
            unmatched_threshold = matched_threshold
        elif unmatched_threshold > matched_threshold:
            raise ValueError(
                f"unmatched_threshold {unmatched_threshold} > matched_threshold {matched_threshold}"
            )
        self.matched_threshold = matched_threshold
        self.unmatched_threshold = unmatched_threshold
        self.negatives_lower_than_unmatched = negatives_lower_than_unmatched
        self.force_match_for_each_row = force_match_for_each_row

    def __call__(self, similarity: Tensor) -> Tensor:
        """``similarity [num_gt, num_anchors]`` -> match ``[num_anchors]`` int64."""
        num_anchors = similarity.shape[1]
        if similarity.shape[0] == 0:
            return torch.full(
                (num_anchors,), UNMATCHED, dtype=torch.int64, device=similarity.device
            )
        best_values, matches = similarity.max(dim=0)  # [num_anchors]
        if self.matched_threshold is not None and self.unmatched_threshold is not None:
            below = best_values < self.unmatched_threshold
            between = (best_values >= self.unmatched_threshold) & (
                best_values < self.matched_threshold
            )
            below_value, between_value = (UNMATCHED, IGNORED)
            if not self.negatives_lower_than_unmatched:
                below_value, between_value = (IGNORED, UNMATCHED)
            matches = torch.where(below, torch.full_like(matches, below_value), matches)
            matches = torch.where(between, torch.full_like(matches, between_value), matches)
        if self.force_match_for_each_row:
            matches = _force_match_rows(similarity, matches)
        return matches


def _force_match_rows(similarity: Tensor, matches: Tensor) -> Tensor:
    """Give every row its best column; a column wanted by several rows goes to the first."""
    num_anchors = similarity.shape[1]
    best_anchor_per_gt = similarity.argmax(dim=1)  # [num_gt]
    anchor_indices = torch.arange(num_anchors, device=similarity.device)
    wanted = best_anchor_per_gt[:, None] == anchor_indices[None, :]  # [num_gt, num_anchors]
    # argmax returns the first maximum: the lowest groundtruth index wins a shared anchor.
    forced_gt = wanted.to(torch.uint8).argmax(dim=0)  # [num_anchors]
    return torch.where(wanted.any(dim=0), forced_gt, matches)


class BipartiteMatcher:
    """The OD API's ``bipartite_matcher``: greedy one-to-one matching by highest similarity.

    Repeatedly takes the most similar remaining (groundtruth, anchor) pair; every anchor left
    over is unmatched (a negative).
    """

    def __call__(self, similarity: Tensor) -> Tensor:
        """``similarity [num_gt, num_anchors]`` -> match ``[num_anchors]`` int64."""
        num_gt, num_anchors = similarity.shape
        matches = torch.full((num_anchors,), UNMATCHED, dtype=torch.int64, device=similarity.device)
        remaining = similarity.detach().clone().float()
        for _ in range(min(num_gt, num_anchors)):
            flat_index = int(remaining.argmax())
            gt_index, anchor_index = divmod(flat_index, num_anchors)
            matches[anchor_index] = gt_index
            remaining[gt_index, :] = -1.0
            remaining[:, anchor_index] = -1.0
        return matches
