"""The loop end to end: answers arrive, the trainer process trains a round on the accepted
ones and exports a version, and the suggestions switch to it without a restart."""

from __future__ import annotations

import math
import time
from pathlib import Path

from annotate_server import TEST_RECORD, AnnotateServer, make_project

from objdet.annotate.store import AnswerStore
from objdet.annotate.trainer import (
    TrainerSettings,
    answers_for_round,
    export_initial_model,
    training_config,
)


def test_answers_train_a_new_version_and_suggestions_switch_to_it(tmp_path: Path) -> None:
    project = make_project(tmp_path, num_images=5)
    server = AnnotateServer(project, "--order", "file", "--retrain_every_n", "2", "--steps_per_round", "2",
                            "--trainer_threads", "1", "--eval_input", str(TEST_RECORD))
    try:
        first = server.next_task()
        assert first["model_version"] == 0 and first["boxes"] == []
        server.answer(first, "accept", boxes=[{"box_xyxy": [20, 10, 200, 150], "label": "raccoon"}])
        server.answer(server.next_task(), "reject", boxes=[])  # not trained on
        third = server.next_task()
        server.answer(third, "accept", boxes=[{"box_xyxy": [5, 5, 120, 90], "label": "raccoon"}])

        deadline = time.monotonic() + 400
        while True:
            status = server.request("GET", "/api/status")[1]
            if status["model_version"] >= 1 or time.monotonic() > deadline:
                break
            assert status["trainer"]["state"] != "error", status["trainer"]
            time.sleep(0.5)
        trainer = status["trainer"]
        assert status["model_version"] == 1, (status, server.log())
        assert (trainer["version"], trainer["step"], trainer["trained_on"]) == (1, 2, 2)
        assert math.isfinite(trainer["loss"]) and 0.0 <= trainer["ap50"] <= 1.0
        assert (project.model_dir / "export" / "1" / "weights.pt").is_file()

        task = server.next_task()
        assert task["model_version"] == 1
        assert task["boxes"], "the new version suggests boxes"
        assert all(box["label"] == "raccoon" and 0.05 <= box["score"] <= 1 for box in task["boxes"])
        x1, y1, x2, y2 = task["boxes"][0]["box_xyxy"]
        assert 0 <= x1 < x2 <= task["width"] and 0 <= y1 < y2 <= task["height"]
    finally:
        assert server.stop() == 0, server.log()


def test_a_round_trains_on_every_accepted_answer_or_the_last_batch(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path / "answers.sqlite")
    store.sync_images(["a", "b", "c", "d"])
    for image_id, answer in [(1, "accept"), (2, "reject"), (3, "accept"), (1, "accept"), (4, "ignore")]:
        store.commit_answer(image_id=image_id, session="s", answer=answer, boxes=[], label_ids=[])
    accepted = store.answers(answer="accept")  # the newest answer of each image: 3 and 1 (again)
    assert [(a.id, a.image_id) for a in accepted] == [(3, 3), (4, 1)]
    assert answers_for_round(accepted, "all", since_answer_id=3) == accepted
    assert [a.id for a in answers_for_round(accepted, "last_batch", since_answer_id=3)] == [4]
    assert [a.id for a in answers_for_round(accepted, "last_batch", since_answer_id=4)] == [4]


def test_training_config_points_the_inputs_at_the_answers(tmp_path: Path) -> None:
    project = make_project(tmp_path, num_images=1)
    settings = TrainerSettings(database="", images=str(project.images), label_map_path=str(project.label_map),
                               pipeline_config_path=str(project.config), model_dir=str(project.model_dir))
    config = training_config(settings, tmp_path / "answers.record")
    assert list(config.train_input_reader.tf_record_input_reader.input_path) == [str(tmp_path / "answers.record")]
    assert len(config.eval_input_reader) == 0  # no --eval_input: no evaluation
    settings.eval_input = str(TEST_RECORD)
    config = training_config(settings, tmp_path / "answers.record")
    assert list(config.eval_input_reader[0].tf_record_input_reader.input_path) == [str(TEST_RECORD)]
    assert len(config.train_config.data_augmentation_options) == 2  # the config's augmentations stay


def test_a_full_fine_tune_checkpoint_is_exported_as_version_1_before_any_answer(tmp_path: Path) -> None:
    import torch
    from tiny_detector import write_tiny_training

    import objdet.config

    tiny = write_tiny_training(tmp_path / "tiny")
    config = objdet.config.load(tiny.config_path)
    config.train_config.fine_tune_checkpoint = str(tiny.checkpoint_dir / "ckpt-7.pt")
    config.train_config.fine_tune_checkpoint_type = "full"
    config_path = tmp_path / "fine_tune.config"
    objdet.config.save(config, config_path)
    project = make_project(tmp_path / "project", num_images=1)
    settings = TrainerSettings(database="", images=str(project.images), label_map_path=str(tiny.label_map_path),
                               pipeline_config_path=str(config_path), model_dir=str(tmp_path / "model"))
    assert export_initial_model(settings) == 1
    exported = torch.load(tmp_path / "model" / "export" / "1" / "weights.pt")
    checkpoint = torch.load(tiny.checkpoint_dir / "ckpt-7.pt", weights_only=False)["model"]
    assert all(torch.equal(exported[key], checkpoint[key]) for key in checkpoint)
    assert export_initial_model(settings) is None  # exported once
    assert not list((tmp_path / "model").glob("ckpt-*"))  # model_dir left for the first round
