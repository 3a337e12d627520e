"""``load_gene_list``: the one reader of gene list files, one test per format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from geneshot.data import load_gene_list
from geneshot.errors import InputError


def test_text_one_per_line_skips_comments_blanks_and_duplicates(tmp_path):
    p = tmp_path / "genes.txt"
    p.write_text("# my panel\nERBB2\n\n  KRT19  # luminal\nERBB2\nGRB7,FAM132A\tMYC\n")
    assert load_gene_list(p) == ["ERBB2", "KRT19", "GRB7", "FAM132A", "MYC"]


def test_csv_with_gene_column_any_case(tmp_path):
    p = tmp_path / "genes.csv"
    p.write_text("rank,Gene,score\n1,ERBB2,0.9\n2,KRT19,0.8\n")
    assert load_gene_list(p) == ["ERBB2", "KRT19"]


def test_headerless_csv_keeps_its_first_gene(tmp_path):
    p = tmp_path / "genes.csv"
    p.write_text("ERBB2\nKRT19\nACTB\n")
    assert load_gene_list(p) == ["ERBB2", "KRT19", "ACTB"]


def test_tsv_with_gene_column_and_headerless_tsv(tmp_path):
    p = tmp_path / "genes.tsv"
    p.write_text("id\tGENE\nx\tCD74\ny\tMT-CO3\n")
    assert load_gene_list(p) == ["CD74", "MT-CO3"]
    p.write_text("CD74\t3\nMT-CO3\t1\n")
    assert load_gene_list(p) == ["CD74", "MT-CO3"]


def test_npy_of_strings(tmp_path):
    p = tmp_path / "genes.npy"
    np.save(p, np.array(["VAR", "HIGH"]))
    assert load_gene_list(p) == ["VAR", "HIGH"]


def test_npy_object_array_is_refused_without_unpickling(tmp_path):
    p = tmp_path / "genes.npy"
    np.save(p, np.array(["VAR", "HIGH"], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="object array.*without pickle") as err:
        load_gene_list(p)
    assert "dtype=str" in str(err.value)  # the fix says how to re-save it


def test_npy_of_numbers_is_not_a_gene_list(tmp_path):
    p = tmp_path / "genes.npy"
    np.save(p, np.arange(3))
    with pytest.raises(InputError, match="not gene names"):
        load_gene_list(p)


@pytest.mark.parametrize("content", ["", "# only a comment\n\n"])
def test_empty_list_is_an_input_error(tmp_path, content):
    p = tmp_path / "genes.txt"
    p.write_text(content)
    with pytest.raises(InputError, match="empty"):
        load_gene_list(p)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_gene_list(tmp_path / "nope.txt")


HER2ST_LISTS = Path(os.environ.get("GENESHOT_DATA", "/nonexistent")) / "her2st" / "genelists"


@pytest.mark.skipif(
    not HER2ST_LISTS.is_dir(), reason="GENESHOT_DATA with her2st/genelists not available"
)
def test_shipped_her2st_lists():
    # her_hvg_cut_1000.npy is a string array; skin_hvg_cut_1000.npy is an object array,
    # which is refused (loading it would need pickle)
    genes = load_gene_list(HER2ST_LISTS / "her_hvg_cut_1000.npy")
    assert len(genes) > 700 and all(isinstance(g, str) and g for g in genes)
    with pytest.raises(InputError, match="object array"):
        load_gene_list(HER2ST_LISTS / "skin_hvg_cut_1000.npy")
