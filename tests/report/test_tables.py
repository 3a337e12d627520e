"""Benchmark tables: markdown rendering (``DataFrame.to_markdown``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from geneshot.report import format_table


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
