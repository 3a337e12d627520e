"""Description builders and user description files."""

from __future__ import annotations

import json

import pytest

from geneshot.errors import InputError
from geneshot.genes import build_description, describe_genes, load_descriptions, load_knowledge


def test_build_description_full_erbb2():
    text = build_description(load_knowledge().loc["ERBB2"])
    assert text.startswith(
        "ERBB2 (erb-b2 receptor tyrosine kinase 2) is a protein-coding gene on 17q12."
    )
    assert "Also known as:" in text and "HER2" in text
    for label in (
        "Biological processes:",
        "Molecular functions:",
        "Located in:",
        "Domains (Pfam): ",
    ):
        assert label in text
    assert "protein tyrosine kinase activity" in text
    assert "\t" not in text and "|" not in text


def test_build_description_styles_and_caps():
    row = load_knowledge().loc["ERBB2"]
    short = build_description(row, style="short")
    assert short == "ERBB2 (erb-b2 receptor tyrosine kinase 2) is a protein-coding gene on 17q12."
    func = build_description(row, style="function")
    assert (
        "Molecular functions:" in func and "Located in:" not in func and "Also known as" not in func
    )
    one = build_description(row, max_terms=1)
    assert one.count(",") < build_description(row).count(",")
    assert len(build_description(row, max_terms=None)) > len(build_description(row, max_terms=3))
    with pytest.raises(InputError, match="style"):
        build_description(row, style="poem")


def test_build_description_sparse_entry():
    text = build_description({"symbol": "XYZ1", "name": "", "type": "pseudo"})
    assert text == "XYZ1 is a pseudogene."
    with pytest.raises(InputError, match="symbol"):
        build_description({"name": "nameless"})


def test_describe_genes_knowledge_and_report():
    texts, report = describe_genes(["ERBB2", "FAM132A", "NOT_A_GENE_1", "LINC00511", "ERBB2"])
    assert list(texts) == [
        "ERBB2",
        "FAM132A",
        "NOT_A_GENE_1",
        "LINC00511",
    ]  # input names, deduplicated
    assert texts["FAM132A"].startswith("C1QTNF12 (")
    assert texts["NOT_A_GENE_1"] == "NOT_A_GENE_1"
    assert report.n_genes == 4
    assert report.missing == ["NOT_A_GENE_1"]
    assert report.renamed == {"FAM132A": "C1QTNF12"}
    assert "LINC00511" in report.thin  # in the table, but without GO terms
    assert report.coverage == pytest.approx(0.75)
    assert "1 without annotation" in report.summary()

    dropped, _ = describe_genes(["ERBB2", "NOT_A_GENE_1"], missing="drop")
    assert list(dropped) == ["ERBB2"]
    with pytest.raises(InputError, match="missing"):
        describe_genes(["ERBB2"], missing="skip")


def test_describe_genes_json_source_overrides(tmp_path):
    src = tmp_path / "texts.json"
    # keyed by an alias: matches the canonical gene too; a list gives several samples
    src.write_text(json.dumps({"HER2": "My own ERBB2 text.", "NOVELGENE9": ["first", "second"]}))
    texts, report = describe_genes(["ERBB2", "NOVELGENE9", "ESR1"], source=src)
    assert texts["ERBB2"] == "My own ERBB2 text."
    assert texts["NOVELGENE9"] == "first"
    assert texts["ESR1"].startswith("ESR1 (estrogen receptor 1)")
    assert report.from_source == ["ERBB2", "NOVELGENE9"]
    assert report.missing == []
    assert load_descriptions(src)["NOVELGENE9"] == ["first", "second"]


def test_describe_genes_tsv_source(tmp_path):
    src = tmp_path / "texts.tsv"
    src.write_text("symbol\tdescription\nGENEA\ttext a\n\nGENEA\ttext a2\nGENEB\ttext b\n")
    assert load_descriptions(src) == {"GENEA": ["text a", "text a2"], "GENEB": ["text b"]}
    texts, _ = describe_genes(["GENEB"], source=src)
    assert texts == {"GENEB": "text b"}
    texts, _ = describe_genes(["GENEB"], source={"GENEB": "from a dict"})
    assert texts == {"GENEB": "from a dict"}


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("list.json", '["ERBB2"]', "not an object"),
        ("empty_text.json", '{"ERBB2": ""}', "entry 'ERBB2'"),
        ("number.json", '{"ERBB2": 3}', "entry 'ERBB2'"),
        ("short.tsv", "ERBB2\ttext\nESR1\n", "line 2"),
        ("blank.tsv", "ERBB2\t   \n", "line 1"),
        ("nothing.tsv", "symbol\tdescription\n", "no descriptions"),
        ("genes.csv", "ERBB2,text\n", "unsupported"),
    ],
)
def test_bad_description_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=match) as err:
        describe_genes(["ERBB2"], source=path)
    assert str(path) in str(err.value)


def test_missing_description_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_descriptions(tmp_path / "nope.json")
