import torch

from objdet.models.matchers import IGNORED, UNMATCHED, ArgMaxMatcher, BipartiteMatcher


def test_thresholds_split_matches_negatives_and_ignored() -> None:
    similarity = torch.tensor([[0.7, 0.45, 0.2, 0.5], [0.1, 0.40, 0.3, 0.1]])
    matcher = ArgMaxMatcher(matched_threshold=0.5, unmatched_threshold=0.4)
    assert matcher(similarity).tolist() == [0, IGNORED, UNMATCHED, 0]
    swapped = ArgMaxMatcher(
        matched_threshold=0.5, unmatched_threshold=0.4, negatives_lower_than_unmatched=False
    )
    assert swapped(similarity).tolist() == [0, UNMATCHED, IGNORED, 0]


def test_threshold_values_themselves_fall_on_the_od_api_side() -> None:
    # argmax_matcher: matched when >= matched_threshold, ignored when in
    # [unmatched_threshold, matched_threshold), negative only when < unmatched_threshold.
    similarity = torch.tensor([[0.5, 0.25, 0.125]])
    matcher = ArgMaxMatcher(matched_threshold=0.5, unmatched_threshold=0.25)
    assert matcher(similarity).tolist() == [0, IGNORED, UNMATCHED]


def test_ties_pick_the_lowest_groundtruth_index() -> None:
    similarity = torch.tensor([[0.6, 0.6], [0.6, 0.9]])
    assert ArgMaxMatcher(matched_threshold=0.5)(similarity).tolist() == [0, 1]


def test_force_match_for_each_row_gives_every_groundtruth_an_anchor() -> None:
    similarity = torch.tensor(
        [[0.9, 0.3, 0.0], [0.1, 0.35, 0.2], [0.8, 0.1, 0.0]]
    )  # row 2 also prefers anchor 0
    plain = ArgMaxMatcher(matched_threshold=0.5)
    assert plain(similarity).tolist() == [0, UNMATCHED, UNMATCHED]
    forced = ArgMaxMatcher(matched_threshold=0.5, force_match_for_each_row=True)
    # row 1 takes anchor 1; rows 0 and 2 both want anchor 0 and the first row wins.
    assert forced(similarity).tolist() == [0, 1, UNMATCHED]


def test_ignore_thresholds_keeps_every_argmax() -> None:
    similarity = torch.tensor([[0.01, 0.3], [0.02, 0.1]])
    assert ArgMaxMatcher(matched_threshold=None)(similarity).tolist() == [1, 0]


def test_no_groundtruth_means_all_negatives() -> None:
    assert ArgMaxMatcher()(torch.zeros(0, 3)).tolist() == [UNMATCHED] * 3


def test_bipartite_matcher_is_greedy_one_to_one() -> None:
    similarity = torch.tensor([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0]])
    # (0, 0) first, then row 1 can only take anchor 1.
    assert BipartiteMatcher()(similarity).tolist() == [0, 1, UNMATCHED]
