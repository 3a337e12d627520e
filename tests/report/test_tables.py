"""Benchmark tables: markdown rendering (``DataFrame.to_markdown``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geneshot.errors import InputError
from geneshot.report import format_table, per_gene_path, read_per_gene


def test_format_table():
    df = pd.DataFrame(
        {"method": ["SGN", "ours|x"], "pcc_m": [0.31449, np.nan], "n": [250, 3]}
    ).set_index("method")
    out = format_table(df)
    lines = out.strip().splitlines()
    assert lines[0].split("|")[1].strip() == "method"
    rule = lines[1].strip("|").split("|")
    assert set(lines[1]) <= {"|", "-", ":"}
    # text left-aligned, numbers right-aligned
    assert rule[0].startswith(":") and all(
        c.endswith(":") and not c.startswith(":") for c in rule[1:]
    )
    assert "0.314" in lines[2] and "250" in lines[2] and "250.000" not in out
    assert "n/a" in lines[3] and "ours\\|x" in lines[3]
    assert "0.3145" in format_table(df, floatfmt=".4f")
    assert "method" not in format_table(df, index=False)


def test_per_gene_tables_read_back_the_genes_of_every_fold(tmp_path):
    path = per_gene_path(tmp_path, "align-st+ref", "libsize", "sgn")
    assert path.name == "align-st_ref__libsize__sgn.csv"  # the writer's file name rule
    path.parent.mkdir(parents=True)
    pd.DataFrame(
        {"gene": ["A", "B", "C"], "r_per_section": [0.5, 0.2, 0.9], "n_folds": [5, 5, 3]}
    ).to_csv(path, index=False)
    r = read_per_gene(tmp_path, "align-st+ref", "libsize", "sgn")
    assert r.to_dict() == {"A": 0.5, "B": 0.2}  # C was not scored in every fold
    with pytest.raises(InputError, match="no per-gene table"):
        read_per_gene(tmp_path, "sgn")
