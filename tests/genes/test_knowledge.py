"""The shipped knowledge table and symbol resolution."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geneshot.genes import load_knowledge, resolve_symbols
from geneshot.genes._knowledge import KNOWLEDGE_FILE

RESOURCES = Path(__file__).parents[2] / "src" / "geneshot" / "resources"


def test_table_shape_and_content():
    kb = load_knowledge()
    assert kb is load_knowledge()  # cached in-process
    assert len(kb) > 60_000
    assert kb.index.is_unique
    assert list(kb.columns) == [
        "symbol",
        "entrez",
        "name",
        "type",
        "cytoband",
        "aliases",
        "go_bp",
        "go_mf",
        "go_cc",
        "pfam",
    ]
    erbb2 = kb.loc["ERBB2"]
    assert erbb2["name"] == "erb-b2 receptor tyrosine kinase 2"
    assert erbb2["type"] == "protein-coding"
    assert erbb2["cytoband"] == "17q12"
    assert "HER2" in erbb2["aliases"].split("|")
    assert "PF07714" in erbb2["pfam"].split("|")  # protein tyrosine kinase domain
    assert "protein tyrosine kinase activity" in erbb2["go_mf"].split("|")
    # GO lists are capped and drop the uninformative "protein binding"
    for col in ("go_bp", "go_mf", "go_cc"):
        lens = kb[col].str.count(r"\|") + (kb[col] != "")
        assert lens.max() <= 12
        assert not kb[col].str.split("|").explode().eq("protein binding").any()
    pc = kb[kb["type"] == "protein-coding"]
    assert (pc["go_bp"] != "").mean() > 0.8


def test_shipped_file_is_small_and_documented():
    path = RESOURCES / KNOWLEDGE_FILE
    assert path.stat().st_size < 5 * 2**20
    with gzip.open(path, "rt") as fh:
        assert fh.readline().startswith("symbol\tentrez\tname")
    sources = (RESOURCES / "GENE_KNOWLEDGE_SOURCES.md").read_text()
    for needle in ("r-bioc-org.hs.eg.db", "r-bioc-go.db", "Artistic-2.0", "CC BY 4.0"):
        assert needle in sources


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ERBB2", "ERBB2"),
        ("HER2", "ERBB2"),  # alias
        ("her2", "ERBB2"),  # case
        ("erbb2", "ERBB2"),
        ("FAM132A", "C1QTNF12"),  # former symbol in the HER2+ tables
        ("ATRIP.1", "ATRIP"),  # R's make.unique suffix
        ("2-Sep", "SEPTIN2"),  # spreadsheet date
        ("SEPT2", "SEPTIN2"),
        ("QARS", "QARS1"),  # alias shared with EPRS1: the prefix match wins
        ("TAZ", "TAFAZZIN"),  # alias shared with WWTR1
        ("GBA", "GBA1"),  # alias shared with a pseudogene
        ("MT-CO1", "COX1"),  # NCBI's name of the mitochondrial gene
        ("MT-CO2", "COX2"),  # not the nuclear pseudogene that lists "MT-CO2" as alias
        ("  ESR1 ", "ESR1"),
        ("HBD", "HBD"),  # symbol shared by two records: the gene, not the disease locus
        ("AC004076.9", None),  # clone-based name unknown to NCBI
        ("NOT_A_GENE_XYZ", None),
        ("", None),
    ],
)
def test_resolve(given, expected):
    assert resolve_symbols([given]) == {given: expected}


def test_exact_symbol_beats_alias():
    kb = load_knowledge()
    aliases = kb["aliases"].str.split("|").explode()
    # symbols that are also some other gene's alias
    clashes = sorted(set(aliases[aliases.isin(kb.index) & (aliases != aliases.index)]))
    assert len(clashes) > 50
    res = resolve_symbols(clashes[:200])
    assert all(res[s] == s for s in clashes[:200])


@pytest.mark.slow
@pytest.mark.realdata
def test_her2st_coverage(her2st_dir):
    """Acceptance: >= 95% of all genes and every one of the top-250 genes by mean count."""
    paths = sorted((her2st_dir / "ST-cnts").glob("*.tsv.gz"))
    assert len(paths) >= 30
    union: set[str] = set()
    for p in paths:
        with gzip.open(p, "rt") as fh:
            union.update(fh.readline().rstrip("\n").split("\t")[1:])
    res = resolve_symbols(sorted(union))
    frac = np.mean([v is not None for v in res.values()])
    print(f"her2st genes: {len(union)}, resolved {frac:.2%}")
    assert frac >= 0.95

    # mean raw count over all spots of all sections (absent gene = 0 in that section)
    totals: pd.Series | None = None
    n_spots = 0
    for p in paths:
        df = pd.read_csv(p, sep="\t", index_col=0, engine="c")
        s = df.sum(0)
        totals = s if totals is None else totals.add(s, fill_value=0)
        n_spots += len(df)
    top = (totals / n_spots).sort_values(ascending=False).index[:250]
    missing = [g for g in top if res[g] is None]
    print(f"top-250 by mean count: {250 - len(missing)} resolved, missing {missing}")
    assert missing == []
    assert res["AP000769.1"] == "MALAT1"  # the HER2+ tables' name for MALAT1
