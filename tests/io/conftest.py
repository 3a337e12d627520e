"""Builders of tiny on-disk datasets in the published layouts, and a local HTTP server."""

from __future__ import annotations

import gzip
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

PITCH_PX = 40.0  # spot pitch of the synthetic ST grids: 200 µm / 40 px = 5 µm/px
ST_MPP = 200.0 / PITCH_PX


def st_tables(
    seed: int, n_genes: int = 6, nx: int = 5, ny: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A legacy-ST count table ("{x}x{y}" ids) and its spot selection table."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(2, 2 + nx), np.arange(3, 3 + ny))
    xs, ys = xs.ravel(), ys.ravel()
    ids = [f"{x}x{y}" for x, y in zip(xs, ys, strict=True)]
    counts = pd.DataFrame(
        rng.poisson(3, (len(ids), n_genes)),
        index=pd.Index(ids),
        columns=[f"G{i}" for i in range(n_genes)],
    )
    jitter = rng.uniform(-0.05, 0.05, (len(ids), 2))
    new_x, new_y = xs + jitter[:, 0], ys + jitter[:, 1]
    spots = pd.DataFrame(
        {
            "x": xs,
            "y": ys,
            "new_x": new_x,
            "new_y": new_y,
            "pixel_x": PITCH_PX * (new_x - 1),
            "pixel_y": PITCH_PX * (new_y - 1),
            "selected": 1,
        }
    )
    return counts, spots


def write_image(path: Path, size: tuple[int, int] = (320, 300)) -> Path:
    """A small RGB image (JPEG, PNG or, for .gz, a gzipped JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(100, 255, (size[1], size[0], 3), dtype=np.uint8))
    if path.suffix == ".gz":
        raw = path.with_suffix("")
        im.save(raw)
        path.write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
    else:
        im.save(path)
    return path


def write_cscc(root: Path, sections: dict[str, str | None]) -> Path:
    """GEO-layout cSCC files: ``{"P2_rep1": ".jpg.gz" | ".jpg" | None (no image)}``."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (sec, img) in enumerate(sections.items()):
        patient, rep = sec.split("_")
        gsm = f"GSM42843{16 + i}"
        counts, spots = st_tables(i)
        counts.to_csv(root / f"{gsm}_{patient}_ST_{rep}_stdata.tsv.gz", sep="\t")
        spots.to_csv(
            root / f"{gsm}_spot_data-selection-{patient}_ST_{rep}.tsv.gz", sep="\t", index=False
        )
        if img:
            write_image(root / f"{gsm}_{patient}_ST_{rep}{img}")
    return root


def write_her2st(root: Path, sections: list[str], images: list[str] = ()) -> Path:
    """HER2+ Zenodo layout: ST-cnts, ST-spotfiles and ST-imgs for ``images``."""
    for i, sec in enumerate(sections):
        counts, spots = st_tables(10 + i)
        (root / "ST-cnts").mkdir(parents=True, exist_ok=True)
        (root / "ST-spotfiles").mkdir(parents=True, exist_ok=True)
        counts.to_csv(root / "ST-cnts" / f"{sec}.tsv.gz", sep="\t")
        spots.to_csv(root / "ST-spotfiles" / f"{sec}_selection.tsv", sep="\t", index=False)
        if sec in images:
            write_image(root / "ST-imgs" / sec[0] / sec / f"HE_{sec}.jpg")
    return root


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with HEAD, GET and ``Range: bytes=N-``; logs every request."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _serve(self, body_too: bool) -> None:
        srv = self.server
        srv.requests.append((self.command, self.path, self.headers.get("Range")))
        path = self.path.split("?")[0]
        if path not in srv.files:
            self.send_error(404)
            return
        data = srv.files[path]
        start = 0
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if m and srv.ranges:
            start = int(m.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not body_too:
            return
        if path in srv.truncate_once:
            srv.truncate_once.discard(path)
            body = body[: len(body) // 2]
            self.close_connection = True
        # counted before writing: the client can read the last byte and assert before a
        # count placed after the write has run (a race on a loaded machine)
        srv.sent += len(body)
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(False)


@pytest.fixture
def http_server() -> Iterator[http.server.ThreadingHTTPServer]:
    """A local HTTP server on 127.0.0.1; ``.url``, ``.files``, ``.requests``, ``.sent``."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.timeout = 5
    srv.files, srv.requests, srv.truncate_once, srv.sent, srv.ranges = {}, [], set(), 0, True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


class Builders:
    """The builders above, handed to tests as one fixture."""

    pitch_px = PITCH_PX
    st_mpp = ST_MPP
    st_tables = staticmethod(st_tables)
    write_image = staticmethod(write_image)
    write_cscc = staticmethod(write_cscc)
    write_her2st = staticmethod(write_her2st)


@pytest.fixture
def build() -> type[Builders]:
    """Builders of tiny datasets (see this module)."""
    return Builders
