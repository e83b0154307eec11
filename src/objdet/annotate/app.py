"""The annotation web app: the page (``static/``) and the JSON API it uses.

API (pixel boxes ``[x1, y1, x2, y2]``, label names from the label map)::

    GET  /api/next?session=NAME[&include_answered=1]
         -> {"task_id", "image", "width", "height", "model_version", "model_name",
             "boxes": [{"box_xyxy", "label", "score"}]}      (204 when nothing is left)
         (model_version 0: no version of the project's yet; its boxes, if any, come from the
         --initial_model, which model_name names)
    GET  /api/task/{task_id}?session=NAME -> the same for one image, with "previous_answer"
    GET  /api/image/{task_id}             -> the image's bytes (only project images, by id)
    POST /api/answer {"task_id", "session", "answer": "accept"|"reject"|"ignore",
                      "boxes": [{"box_xyxy", "label", ["source"]}], ["rejected": [box_xyxy]]}
         -> 200 {"answer_id", ...} once the row is committed
    GET  /api/status[?session=NAME]       -> progress, model version, trainer state, labels
                                             (with a session: renews that session's lease;
                                             trainer.started_from: where its training started,
                                             e.g. {"source": "initial_model", "checkpoint"})
    GET  /api/export?format=jsonl|coco|tfrecord|voc|yolo -> the accepted annotations

POST bodies must be ``application/json``; on loopback only requests addressed to a loopback
name are served (no DNS rebinding). When the app listens beyond loopback it requires ``token``: the ``X-Objdet-Token`` header,
``Authorization: Bearer``, the ``objdet_token`` cookie (set by opening ``/?token=...``) or a
``token`` query parameter.
"""

from __future__ import annotations

import hmac
import io
import math
import tempfile
import zipfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from objdet.annotate.exports import EXPORT_FORMATS, export_project, jsonl_lines
from objdet.annotate.sources import ImageSource
from objdet.annotate.store import ANSWERS, BOX_SOURCES, AnswerStore
from objdet.annotate.suggestions import Suggester
from objdet.annotate.tasks import PreparedTask, TaskQueue
from objdet.annotate.trainer import STATUS_KEY
from objdet.errors import ObjdetError
from objdet.structures.label_map import LabelMap

MAX_SESSION_CHARS = 64
MAX_BOXES = 1000
_STATIC = files("objdet.annotate") / "static"


@dataclass
class Project:
    """What the app serves: the store, the images, the label map and the task queue."""

    store: AnswerStore
    source: ImageSource
    label_map: LabelMap
    suggester: Suggester
    queue: TaskQueue
    token: str | None = None
    eval_input: str | None = None
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted (empty: any); loopback: its names


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def build_app(project: Project) -> FastAPI:
    app = FastAPI(title="objdet annotate", docs_url=None, redoc_url=None, openapi_url=None)
    names = {item.id: item.name for item in (project.label_map.item(i) for i in project.label_map.ids)}
    ids = {name: class_id for class_id, name in names.items()}

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Any:
        if project.allowed_hosts and request.url.hostname not in project.allowed_hosts:
            # DNS rebinding: a page of another site resolving its name to 127.0.0.1
            return JSONResponse({"error": f"host {request.url.hostname!r} not served"}, 421)
        if project.token is not None and not _has_token(request, project.token):
            return JSONResponse({"error": "a valid token is required (open /?token=...)"}, 401)
        response = await call_next(request)
        if project.token is not None and request.query_params.get("token") == project.token:
            response.set_cookie("objdet_token", project.token, httponly=True, samesite="strict")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> Any:
        return JSONResponse({"error": str(error)}, error.status)

    @app.get("/")
    def index() -> Any:
        return FileResponse(_static_file("index.html"), media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str) -> Any:
        media = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
        path = _static_file(name)
        return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"))

    @app.get("/api/next")
    def next_task(session: str = "default", include_answered: int = 0) -> Any:
        task = project.queue.next_for(_session(session), bool(include_answered))
        if task is None:
            return Response(status_code=204)
        return _task_json(task, names, project.suggester)

    @app.get("/api/task/{task_id}")
    def one_task(task_id: int) -> Any:
        if not project.queue.has_image(task_id):
            raise BadRequest(f"task {task_id}: no such task", 404)
        task = project.queue.prepare(task_id)
        if task is None:
            raise BadRequest(f"task {task_id}: the image cannot be read: "
                             f"{project.queue.bad_images.get(task_id)}", 422)
        content = _task_json(task, names, project.suggester)
        previous = project.store.latest_answer(task_id)
        if previous is not None:
            content["previous_answer"] = {
                "answer": previous.answer, "session": previous.session,
                "boxes": [{"box_xyxy": box, "label": names.get(label, str(label)), "source": source}
                          for box, label, source in zip(previous.boxes, previous.label_ids,
                                                        previous.box_sources)],
            }
        return content

    @app.get("/api/image/{task_id}")
    def image(task_id: int) -> Any:
        if not project.queue.has_image(task_id):
            raise BadRequest(f"task {task_id}: no such task", 404)
        try:
            encoded = project.source.read(project.queue.key_of(task_id)).encoded
        except ObjdetError as error:
            project.queue.mark_bad(task_id, str(error))
            raise BadRequest(f"task {task_id}: {error}", 422) from None
        return Response(encoded, media_type=_media_type(encoded))

    @app.post("/api/answer")
    async def answer(request: Request) -> Any:
        # a JSON content type makes a cross-site POST preflighted (and refused): another web
        # page open in the browser cannot answer for the person
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise BadRequest("the body must be sent as application/json", 415)
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        # the commit waits for the disk (fsync): off the event loop, so other requests go on
        return await run_in_threadpool(_commit, project, body, ids)

    @app.get("/api/status")
    def status(session: str | None = None) -> Any:
        if session is not None:  # the page polls with its session: its image stays leased
            project.queue.renew(_session(session))
        return status_json(project, names)

    @app.get("/api/export")
    def export(format: str = "jsonl") -> Any:
        return _export_response(project, format)

    return app


def _task_json(task: PreparedTask, names: dict[int, str], suggester: Suggester) -> dict[str, Any]:
    return {
        "task_id": task.image_id, "image": f"/api/image/{task.image_id}", "key": task.key,
        "width": task.width, "height": task.height, "model_version": task.model_version,
        "model_name": suggester.model_name(task.model_version),
        "boxes": [{"box_xyxy": [round(v, 2) for v in s.box_xyxy],
                   "label": names.get(s.label_id, str(s.label_id)), "score": round(s.score, 4)}
                  for s in task.suggestions],
    }


def _commit(project: Project, body: Any, ids: dict[str, int]) -> dict[str, Any]:
    """Validate one answer and commit it; the reply says it is on disk."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    task_id = body.get("task_id")
    if not isinstance(task_id, int) or not project.queue.has_image(task_id):
        raise BadRequest(f"task_id: {task_id!r} is not a task of this project", 404)
    session = _session(body.get("session", "default"))
    answer = body.get("answer")
    if answer not in ANSWERS:
        raise BadRequest(f"answer: {answer!r}; expected one of {', '.join(ANSWERS)}")
    row = project.store.image(task_id)
    size = (row.width, row.height) if row is not None and row.width and row.height else None
    boxes, label_ids, sources = _boxes(body.get("boxes", []), ids, size)
    rejected = [_box(item, "rejected", size) for item in _list(body.get("rejected", []), "rejected")]
    version = body.get("model_version", project.suggester.version)
    answer_id = project.store.commit_answer(
        image_id=task_id, session=session, answer=answer, boxes=boxes, label_ids=label_ids,
        box_sources=sources, rejected_boxes=rejected,
        model_version=int(version) if isinstance(version, int) else 0,
    )
    project.queue.answered(task_id)
    return {"answer_id": answer_id, "task_id": task_id, "committed": True}


def _boxes(items: Any, ids: dict[str, int], size: tuple[int, int] | None,
           ) -> tuple[list[list[float]], list[int], list[str]]:
    boxes, label_ids, sources = [], [], []
    for index, item in enumerate(_list(items, "boxes")):
        if not isinstance(item, dict):
            raise BadRequest(f"boxes[{index}]: expected an object with box_xyxy and label")
        boxes.append(_box(item.get("box_xyxy"), f"boxes[{index}].box_xyxy", size))
        label = item.get("label")
        if label not in ids:
            raise BadRequest(f"boxes[{index}].label: {label!r} is not in the label map "
                             f"({', '.join(sorted(ids))})")
        label_ids.append(ids[label])
        source = item.get("source", "suggested" if "score" in item else "drawn")
        if source not in BOX_SOURCES:
            raise BadRequest(f"boxes[{index}].source: {source!r}; expected one of {', '.join(BOX_SOURCES)}")
        sources.append(source)
    return boxes, label_ids, sources


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_BOXES:
        raise BadRequest(f"{what}: expected a list of at most {MAX_BOXES} boxes")
    return value


def _box(value: Any, what: str, size: tuple[int, int] | None) -> list[float]:
    """A valid ``[x1, y1, x2, y2]`` inside the image (pixels), clipped by at most 1 pixel."""
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)):
        raise BadRequest(f"{what}: expected [x1, y1, x2, y2] of 4 finite numbers, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if size is not None:
        width, height = size
        if min(x1, y1) < -1 or x2 > width + 1 or y2 > height + 1:
            raise BadRequest(f"{what}: {value} is outside the {width}x{height} image")
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if not (x1 < x2 and y1 < y2):
        raise BadRequest(f"{what}: {value} is empty (expected x1 < x2 and y1 < y2)")
    return [x1, y1, x2, y2]


def _session(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_SESSION_CHARS:
        raise BadRequest(f"session: expected a name of 1 to {MAX_SESSION_CHARS} characters")
    return value.strip()


def status_json(project: Project, names: dict[int, str]) -> dict[str, Any]:
    counts = project.store.counts()
    bad = project.queue.bad_images
    return {
        "answered": counts["answered"], "total": counts["images"] - len(bad),
        "images": counts["images"], "accept": counts["accept"], "reject": counts["reject"],
        "ignore": counts["ignore"], "bad_images": len(bad),
        "bad_examples": list(bad.values())[:5],
        "model_version": project.suggester.version, "model_error": project.suggester.load_error,
        "model_name": project.suggester.model_name(project.suggester.version),
        "ordering": project.queue.ordering, "eval_input": project.eval_input,
        "trainer": project.store.get_meta(STATUS_KEY) or {"state": "off"},
        "labels": [{"id": class_id, "name": name} for class_id, name in names.items()],
    }


def _export_response(project: Project, format_name: str) -> Any:
    if format_name not in EXPORT_FORMATS:
        raise BadRequest(f"format: {format_name!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if format_name == "jsonl":
        text = "".join(line + "\n" for line in jsonl_lines(project.store, project.source, project.label_map))
        return Response(text, media_type="application/x-ndjson")
    with tempfile.TemporaryDirectory(prefix="objdet-annotate-export-") as folder:
        output = Path(folder) / ("annotations.record" if format_name == "tfrecord" else format_name)
        try:
            export_project(project.store, project.source, project.label_map, format_name, output)
        except ObjdetError as error:
            raise BadRequest(str(error), 422) from None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
    return Response(buffer.getvalue(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="annotations-{format_name}.zip"'})


def _static_file(name: str) -> Path:
    """A file shipped in ``static/`` (only plain names listed there)."""
    path = _STATIC / name
    if "/" in name or "\\" in name or name.startswith(".") or not isinstance(path, Path) or not path.is_file():
        raise BadRequest(f"{name}: no such file", 404)
    return path


def _media_type(encoded: bytes) -> str:
    signatures = {b"\xff\xd8": "image/jpeg", b"\x89PNG": "image/png", b"GIF8": "image/gif",
                  b"BM": "image/bmp", b"RIFF": "image/webp"}
    return next((media for magic, media in signatures.items() if encoded.startswith(magic)),
                "application/octet-stream")


def _has_token(request: Any, token: str) -> bool:
    header = request.headers.get("authorization", "")
    candidates = [request.headers.get("x-objdet-token"), request.cookies.get("objdet_token"),
                  request.query_params.get("token"),
                  header[7:] if header.lower().startswith("bearer ") else None]
    return any(c is not None and hmac.compare_digest(c, token) for c in candidates)
