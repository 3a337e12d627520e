"""``geneshot data fetch|list``."""

from __future__ import annotations

import io
import tarfile

from click.testing import CliRunner

from geneshot.cli import main

CSCC_PATH = "/geo/series/GSE144nnn/GSE144240/suppl/GSE144240_RAW.tar"


def _serve_cscc(server, build, tmp_path) -> None:
    src = build.write_cscc(tmp_path / "src", {"P2_rep1": None, "P9_rep3": None})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for p in sorted(src.iterdir()):
            t.add(p, p.name)
    server.files[CSCC_PATH] = buf.getvalue()


def test_fetch_then_list(http_server, build, tmp_path, monkeypatch):
    monkeypatch.delenv("GENESHOT_DATA", raising=False)
    _serve_cscc(http_server, build, tmp_path)
    dest = tmp_path / "data"
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "data",
            "fetch",
            "cscc",
            "--data",
            str(dest / "cscc"),
            "--base-url",
            http_server.url,
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"cscc: {dest / 'cscc'} (2 sections)" in res.output
    res = runner.invoke(main, ["data", "list", "--data-root", str(dest)])
    assert res.exit_code == 0, res.output
    assert f"2 sections in {dest / 'cscc'}: P2_rep1, P9_rep3" in res.output
    assert f"not present in {dest / 'her2st'}" in res.output  # her2st is not there
    # --data is the dataset's own folder, as in every other command
    res = runner.invoke(main, ["data", "list", "--dataset", "cscc", "--data", str(dest / "cscc")])
    assert "2 sections in" in res.output and "her2st" not in res.output
    # the default folder is $GENESHOT_DATA/<dataset>, where `data fetch` puts it by default
    monkeypatch.setenv("GENESHOT_DATA", str(dest))
    res = runner.invoke(main, ["data", "list"])
    assert f"2 sections in {dest / 'cscc'}" in res.output
    monkeypatch.delenv("GENESHOT_DATA")
    res = runner.invoke(main, ["data", "list"])
    assert res.exit_code == 0 and "her2st" in res.output and "pass --data" in res.output


def test_bad_inputs_exit_2_with_one_line(http_server, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["data", "list", "--data", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert f"error: {tmp_path / 'missing'}: data folder does not exist. Fix:" in res.output
    (tmp_path / "file").write_text("x")
    res = runner.invoke(
        main, ["data", "fetch", "cscc", "--data", str(tmp_path / "file")]
    )
    assert res.exit_code == 2  # click rejects a file where a folder is expected
    dest = tmp_path / "d"
    res = runner.invoke(
        main,
        [
            "data",
            "fetch",
            "cscc",
            "--data",
            str(dest / "cscc"),
            "--base-url",
            http_server.url,
        ],
    )
    assert (
        res.exit_code == 2
        and "download failed (HTTP 404" in res.output
        and "Traceback" not in res.output
    )
    assert not dest.exists() or not any(dest.rglob("*"))
    res = runner.invoke(main, ["data", "fetch", "visium", "--data", str(dest)])
    assert res.exit_code == 2 and "Invalid value" in res.output
