"""``geneshot genes describe|coverage`` on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import geneshot.cli._genes  # noqa: F401  (registers the commands)
from geneshot.cli._main import main


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_describe_genes_option(tmp_path):
    out = tmp_path / "d.json"
    res = _run("genes", "describe", "--genes", "ERBB2, ESR1,NOT_A_GENE_2", "--out", str(out))
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert list(data) == ["ERBB2", "ESR1", "NOT_A_GENE_2"]
    assert data["ESR1"].startswith("ESR1 (estrogen receptor 1)")
    assert "1 without annotation" in res.output and "NOT_A_GENE_2" in res.output


def test_describe_gene_list_files(tmp_path):
    txt = tmp_path / "genes.txt"
    txt.write_text("# my panel\nERBB2\nGRB7\tFAM132A\n\n")
    out = tmp_path / "d.json"
    res = _run(
        "genes",
        "describe",
        "--gene-list",
        str(txt),
        "--style",
        "short",
        "--missing",
        "drop",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert list(data) == ["ERBB2", "GRB7", "FAM132A"]
    assert data["GRB7"].endswith("17q12.")  # short style: identity sentence only

    npy = tmp_path / "genes.npy"
    np.save(npy, np.array(["ERBB2", "ESR1"]))
    res = _run("genes", "describe", "--gene-list", str(npy), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert list(json.loads(out.read_text())) == ["ERBB2", "ESR1"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([], "exactly one of --genes and --gene-list"),
        (["--genes", " , "], "--genes is empty"),
        (["--genes", "ERBB2", "--endpoint", "http://127.0.0.1:9"], "--endpoint needs --llm-model"),
        (["--gene-list", "nope.txt"], "gene list does not exist"),
        (["--genes", "ERBB2", "--source", "nope.json"], "does not exist"),
    ],
)
def test_describe_bad_input(tmp_path, args, match):
    out = tmp_path / "d.json"
    res = _run("genes", "describe", *args, "--out", str(out))
    assert res.exit_code == 2
    assert match in res.output
    assert not out.exists()  # nothing half-written


def _tiny_her2st(root, genes: list[str]) -> None:
    """A two-section HER2+ layout with a few spots (counts + spot files, no images)."""
    rng = np.random.default_rng(0)
    (root / "ST-cnts").mkdir(parents=True)
    (root / "ST-spotfiles").mkdir()
    for sec, cols in (("A1", genes), ("B1", genes[:-1])):
        ids = [f"{x}x{y}" for x, y in ((10, 10), (11, 10), (12, 11))]
        counts = pd.DataFrame(rng.integers(0, 5, (3, len(cols))), index=ids, columns=cols)
        counts["ERBB2"] = 100  # the most expressed gene
        counts.to_csv(root / "ST-cnts" / f"{sec}.tsv.gz", sep="\t")
        spots = pd.DataFrame(
            {
                "x": [10, 11, 12],
                "y": [10, 10, 11],
                "new_x": [10.0, 11.0, 12.0],
                "new_y": [10.0, 10.0, 11.0],
                "pixel_x": [100.0, 250.0, 400.0],
                "pixel_y": [100.0, 100.0, 250.0],
                "selected": 1,
            }
        )
        spots.to_csv(root / "ST-spotfiles" / f"{sec}_selection.tsv", sep="\t", index=False)


def test_coverage_command(tmp_path):
    data = tmp_path / "her2st"
    _tiny_her2st(data, ["ERBB2", "FAM132A", "ATRIP.1", "AC004076.9"])
    res = _run("genes", "coverage", "--data", str(data), "--dataset", "her2st", "--top", "2")
    assert res.exit_code == 0, res.output
    assert "2 sections, 6 spots, 4 genes" in res.output
    assert "in the knowledge table: 3 (75.0%)" in res.output
    assert "top 2 by mean count:" in res.output
    assert "missing (1): AC004076.9" in res.output


def test_coverage_needs_data(monkeypatch):
    monkeypatch.delenv("GENESHOT_DATA", raising=False)
    res = _run("genes", "coverage")
    assert res.exit_code == 2 and "GENESHOT_DATA" in res.output


def test_describe_with_llm_endpoint(server, tmp_path):
    url, mock = server
    out = tmp_path / "llm.json"
    args = [
        "genes",
        "describe",
        "--genes",
        "ERBB2,ESR1",
        "--endpoint",
        url,
        "--llm-model",
        "tiny",
        "--samples",
        "2",
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(out),
    ]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == {
        g: [f"{g} answer {i} from tiny" for i in range(2)] for g in ("ERBB2", "ESR1")
    }
    assert len(mock.seen) == 4
    assert _run(*args).exit_code == 0 and len(mock.seen) == 4  # second run: all from the cache
