"""recolor prepare coco: FiftyOne's real download code against a stand-in for images.cocodataset.org.

COCO's URLs are plain http://, and requests (under FiftyOne) honours `http_proxy`, so a proxy on
127.0.0.1 that answers for images.cocodataset.org serves a tiny annotations zip and a few JPEGs.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from recolor.cli import app
from recolor.data.prepare import prepare
from recolor.data.store import PreparedImages
from recolor.errors import NetworkUnavailableError

ANNOTATIONS = "/annotations/annotations_trainval2017.zip"


def _jpeg(seed: int, gray: bool = False) -> bytes:
    y, x = np.mgrid[0:48, 0:64]
    pixels = np.stack([x * 4, y * 5, np.full_like(x, 40 * seed)], axis=-1).astype(np.uint8)
    if gray:
        pixels[:] = pixels[..., :1]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _coco_site() -> dict[str, bytes]:
    """URL path -> body: the annotations zip (train and val) and their images."""
    site: dict[str, bytes] = {}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for split, ids in (("train", (9, 25, 30, 42)), ("val", (139, 285))):
            images = []
            for image_id in ids:
                name = f"{image_id:012d}.jpg"
                images.append({"id": image_id, "file_name": name, "width": 64, "height": 48,
                               "coco_url": f"http://images.cocodataset.org/{split}2017/{name}"})
                site[f"/{split}2017/{name}"] = _jpeg(image_id, gray=image_id == 25)
            annotations = {"info": {}, "licenses": [], "images": images, "annotations": [],
                           "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
            zf.writestr(f"annotations/instances_{split}2017.json", json.dumps(annotations))
    site[ANNOTATIONS] = archive.getvalue()
    return site


@pytest.fixture
def coco_proxy(monkeypatch):
    """An HTTP proxy on 127.0.0.1 standing in for images.cocodataset.org; yields the request log."""
    site = _coco_site()
    requests_seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            url = urlsplit(self.path)  # a proxy gets the absolute URL
            requests_seen.append(f"{self.command} {url.path}")
            if url.hostname != "images.cocodataset.org":
                self.send_error(502)
                return
            content = site.get(url.path)
            if content is None and url.path != "/":
                self.send_error(404)
                return
            content = content or b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._answer(body=True)

        def do_HEAD(self):  # noqa: N802
            self._answer(body=False)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("HTTP_PROXY", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_address[1]}")
    yield requests_seen
    server.shutdown()
    server.server_close()


def _console() -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, width=200), text


def test_coco_through_fiftyone_download(tmp_path, coco_proxy):
    pytest.importorskip("fiftyone")
    cache, out = tmp_path / "cache", tmp_path / "data"
    console, log = _console()
    info = prepare("coco", out, max_samples=3, size=32, workers=0, cache_dir=cache, console=console)

    assert coco_proxy.count(f"GET {ANNOTATIONS}") == 1
    assert "241 MB annotations zip" in log.getvalue() and "cached" in log.getvalue()
    # The 3 lowest train ids (one of them gray, so skipped) and both val images.
    assert info["source"] == "coco-2017"
    assert info["counts"] == {"train": 2, "val": 2}
    assert info["skipped"] == [{"file": "train/000000000025.jpg", "split": "train", "reason": "grayscale"}]
    assert PreparedImages(out, "train").keys() == ["train/000000000009.jpg", "train/000000000030.jpg"]
    assert "GET /train2017/000000000042.jpg" not in coco_proxy

    # More samples later: the annotations come from the cache, only the new image is fetched.
    coco_proxy.clear()
    console, log = _console()
    info = prepare("coco", out, max_samples=4, size=32, workers=0, cache_dir=cache, console=console)
    assert info["counts"] == {"train": 3, "val": 2}
    assert [r for r in coco_proxy if r.startswith("GET")] == ["GET /train2017/000000000042.jpg"]
    assert "annotations cached" in log.getvalue()

    # Everything at hand: no request at all.
    coco_proxy.clear()
    prepare("coco", out, max_samples=4, size=32, workers=0, cache_dir=cache, console=_console()[0])
    assert coco_proxy == []


def test_coco_unreachable_fails_fast_with_the_fix(tmp_path, monkeypatch):
    pytest.importorskip("fiftyone")
    # A proxy address where nothing listens: the connection is refused at once.
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    started = time.monotonic()
    with pytest.raises(NetworkUnavailableError) as error:
        prepare("coco", tmp_path / "data", max_samples=2, cache_dir=tmp_path / "cache", console=_console()[0])
    assert time.monotonic() - started < 15
    assert "images.cocodataset.org" in error.value.cause
    assert "recolor prepare PATH/TO/PHOTOS" in error.value.fix


def test_coco_without_the_extra_names_the_install(tmp_path, monkeypatch):
    # None in sys.modules makes `import fiftyone` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "fiftyone", None)
    result = CliRunner().invoke(app, ["prepare", "coco", "--out", str(tmp_path / "data"),
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert 'pip install "recolor-cli[coco]"' in result.output
    assert "Traceback" not in result.output
