"""``AnswerStore``: rows, newest-answer semantics, counts and reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet.annotate.store import AnswerStore
from objdet.errors import ObjdetError


def test_answers_are_rows_and_the_newest_answer_of_an_image_counts(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path / "answers.sqlite")
    assert store.sync_images(["a.jpg", "b.jpg", "c.jpg"]) == 3
    ids = {row.key: row.id for row in store.images()}
    store.commit_answer(image_id=ids["a.jpg"], session="ann", answer="accept",
                        boxes=[[1, 2, 30, 40]], label_ids=[1], box_sources=["suggested"],
                        rejected_boxes=[[0, 0, 5, 5]], model_version=3)
    store.commit_answer(image_id=ids["b.jpg"], session="bob", answer="ignore", boxes=[], label_ids=[])
    store.commit_answer(image_id=ids["a.jpg"], session="bob", answer="reject", boxes=[], label_ids=[])
    latest = store.answers()
    assert [(a.image_key, a.answer, a.session) for a in latest] == [("b.jpg", "ignore", "bob"), ("a.jpg", "reject", "bob")]
    every = store.answers(latest_only=False)
    assert len(every) == 3
    first = every[0]
    assert (first.boxes, first.label_ids, first.box_sources, first.rejected_boxes, first.model_version) == (
        [[1.0, 2.0, 30.0, 40.0]], [1], ["suggested"], [[0.0, 0.0, 5.0, 5.0]], 3)
    counts = store.counts()
    assert (counts["answered"], counts["accept"], counts["reject"], counts["ignore"], counts["answer_rows"]) == (2, 0, 1, 1, 3)
    store.close()

    reopened = AnswerStore(tmp_path / "answers.sqlite")  # a restart resumes
    assert reopened.sync_images(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]) == 1
    assert [row.key for row in reopened.images()] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert len(reopened.answers(latest_only=False)) == 3
    assert reopened._query("PRAGMA journal_mode")[0][0] == "wal"


def test_bad_answers_are_refused(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path / "answers.sqlite")
    store.sync_images(["a.jpg"])
    with pytest.raises(ObjdetError, match="answer: 'maybe'"):
        store.commit_answer(image_id=1, session="s", answer="maybe", boxes=[], label_ids=[])
    with pytest.raises(ObjdetError, match="1 boxes but 0 labels"):
        store.commit_answer(image_id=1, session="s", answer="accept", boxes=[[0, 0, 1, 1]], label_ids=[])
    assert store.answers() == []


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ObjdetError, match="not a usable annotation database"):
        AnswerStore(path)


def test_leases_are_shared_through_the_database_and_expire(tmp_path: Path) -> None:
    first = AnswerStore(tmp_path / "answers.sqlite")  # two connections, as two app processes
    second = AnswerStore(tmp_path / "answers.sqlite")
    first.sync_images(["a.jpg", "b.jpg", "c.jpg"])

    def in_order(taken: set[int], answered: set[int]) -> int | None:
        return next((i for i in (1, 2, 3) if i not in taken and i not in answered), None)

    assert first.lease_image("ann", in_order, lease_seconds=10, now=100.0) == 1
    assert second.lease_image("bob", in_order, lease_seconds=10, now=101.0) == 2  # 1 is ann's
    assert first.lease_image("ann", in_order, lease_seconds=10, now=105.0) == 1  # ann's again, renewed
    assert second.renew_lease("bob", lease_seconds=10, now=109.0)
    first.commit_answer(image_id=1, session="ann", answer="accept", boxes=[], label_ids=[])
    assert [(lease.session, lease.image_id) for lease in second.leases(now=110.0)] == [("bob", 2)]
    assert second.lease_image("ann", in_order, lease_seconds=10, now=110.0) == 3  # 1 answered, 2 bob's
    assert second.lease_image("cat", in_order, lease_seconds=10, now=111.0) is None  # all taken
    # ann's lease (renewed at 110) ends at 120, bob's (renewed at 109) at 119: cat gets bob's
    assert first.lease_image("cat", in_order, lease_seconds=10, now=119.5) == 2
    assert not first.renew_lease("bob", lease_seconds=10, now=119.6)
    assert [(lease.session, lease.image_id) for lease in first.leases(now=119.6)] == [("ann", 3), ("cat", 2)]
