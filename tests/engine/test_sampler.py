from __future__ import annotations

import itertools

from objdet.engine.sampler import ResumableSampler


def take(sampler: ResumableSampler, count: int) -> list[int]:
    return list(itertools.islice(iter(sampler), count))


def test_each_epoch_is_a_permutation_and_seeded() -> None:
    stream = take(ResumableSampler(7, seed=3), 21)
    for epoch in range(3):
        assert sorted(stream[epoch * 7 : (epoch + 1) * 7]) == list(range(7))
    assert stream[:7] != stream[7:14]
    assert stream == take(ResumableSampler(7, seed=3), 21)
    assert stream != take(ResumableSampler(7, seed=4), 21)


def test_resume_continues_the_same_stream() -> None:
    full = take(ResumableSampler(5, seed=1), 17)
    assert take(ResumableSampler(5, seed=1, start=6), 11) == full[6:]


def test_ranks_split_the_global_stream() -> None:
    full = take(ResumableSampler(6, seed=2), 24)
    rank0 = take(ResumableSampler(6, seed=2, rank=0, world_size=2), 12)
    rank1 = take(ResumableSampler(6, seed=2, rank=1, world_size=2, start=0), 12)
    assert rank0 == full[0::2] and rank1 == full[1::2]
    resumed = take(ResumableSampler(6, seed=2, rank=1, world_size=2, start=4), 8)
    assert resumed == full[9::2]


def test_unshuffled_is_sequential() -> None:
    assert take(ResumableSampler(3, shuffle=False), 7) == [0, 1, 2, 0, 1, 2, 0]
