"""Fixtures of the zoo tests: the mirror, a real HTTP server on 127.0.0.1 that
``$OBJDET_ZOO_URL`` points at, serving a tarball in the TF2 zoo's layout
(``zoo_mirror.make_tarball``); ``$OBJDET_HOME`` is a temporary folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from range_http_server import ServerState, serve
from zoo_mirror import NAME, Zoo, make_tarball

from objdet.zoo import CATALOG, ZooCache


@pytest.fixture(scope="session")
def tarball() -> bytes:
    return make_tarball(NAME)


@pytest.fixture()
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tarball: bytes) -> Iterator[Zoo]:
    """The mirror serving ``NAME``'s tarball; the cache under ``tmp_path/home``."""
    state = ServerState()
    with serve(state) as url:
        monkeypatch.setenv("OBJDET_ZOO_URL", url)
        monkeypatch.setenv("OBJDET_HOME", str(tmp_path / "home"))
        zoo = Zoo(state, url, ZooCache(), CATALOG[NAME])
        state.files[zoo.path_of(zoo.model)] = tarball
        yield zoo
