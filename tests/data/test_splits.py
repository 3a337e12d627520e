"""Section splits, validation splits, gene splits and split files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from geneshot.data import (
    LEGACY_HER2ST_32,
    default_split,
    gene_split_given,
    gene_split_random_kfold,
    gene_split_sgn,
    leave_one_section_out,
    legacy_loocv_32,
    patient_kfold,
    read_split,
    split_id,
    validation_split,
    validation_spot_mask,
    write_split,
)
from geneshot.errors import InputError

HER2 = [
    f"{p}{i}"
    for p, n in zip("ABCDEFGH", [6, 6, 6, 6, 3, 3, 3, 3], strict=True)
    for i in range(1, n + 1)
]


def first_letter(s: str) -> str:
    return s[0]


def assert_disjoint_cover(split):
    secs = set(split["sections"])
    tested = []
    for f in split["folds"]:
        assert not set(f["train"]) & set(f["test"])
        assert set(f["train"]) | set(f["test"]) == secs
        tested += f["test"]
    assert sorted(tested) == sorted(secs)  # every section tested exactly once


def test_leave_one_patient_out_her2st():
    split = patient_kfold(HER2, first_letter)
    assert split["name"] == "leave_one_patient_out" and split["level"] == "patient"
    assert len(split["folds"]) == 8
    assert_disjoint_cover(split)
    for f in split["folds"]:
        assert {s[0] for s in f["train"]}.isdisjoint({s[0] for s in f["test"]})
    assert split["folds"][4]["test"] == ["E1", "E2", "E3"]


def test_patient_kfold_groups_patients_without_leak():
    split = patient_kfold(HER2, dict(zip(HER2, (s[0] for s in HER2), strict=True)), k=3)
    assert len(split["folds"]) == 3 and split["name"] == "patient_3fold"
    assert_disjoint_cover(split)
    for f in split["folds"]:
        assert {s[0] for s in f["train"]}.isdisjoint({s[0] for s in f["test"]})
    sizes = sorted(len(f["test"]) for f in split["folds"])
    assert sizes == [12, 12, 12]  # balanced: 36 sections over 3 folds
    with pytest.raises(InputError, match="k=9"):
        patient_kfold(HER2, first_letter, k=9)
    with pytest.raises(InputError, match="patient"):
        patient_kfold(["C2", "C3"], first_letter)
    with pytest.raises(InputError, match="no patient"):
        patient_kfold(["A1", "B1"], {"A1": "A"})


def test_split_ids_stable_and_content_sensitive():
    a = patient_kfold(HER2, first_letter)
    b = patient_kfold(list(reversed(HER2)), first_letter)
    assert a["id"] == b["id"] == split_id(a)
    c = patient_kfold(HER2[:-1], first_letter)
    assert c["id"] != a["id"]
    assert (
        leave_one_section_out(["x", "y", "z"])["id"] == leave_one_section_out(["z", "x", "y"])["id"]
    )


def test_leave_one_section_out_and_default():
    split = leave_one_section_out(["C2", "C3", "C4"])
    assert split["level"] == "section" and len(split["folds"]) == 3
    assert_disjoint_cover(split)
    assert default_split(["C2", "C3", "C4"], first_letter)["name"] == "leave_one_section_out"
    assert default_split(["C2", "C3", "D1"], first_letter)["name"] == "leave_one_patient_out"
    with pytest.raises(InputError, match="more than once"):
        leave_one_section_out(["C2", "C2"])


def test_legacy_loocv_32_list():
    split = legacy_loocv_32()
    assert len(LEGACY_HER2ST_32) == 32 and len(split["folds"]) == 32
    assert "A1" not in LEGACY_HER2ST_32 and not {"H1", "H2", "H3"} & set(LEGACY_HER2ST_32)
    assert LEGACY_HER2ST_32 == tuple(sorted(HER2)[1:33])  # Hist2ST: sorted(names)[1:33]
    assert [f["test"][0] for f in split["folds"]] == list(LEGACY_HER2ST_32)
    assert_disjoint_cover(split)
    partial = legacy_loocv_32(available=[s for s in HER2 if s != "B4"])
    assert partial["missing"] == ["B4"] and len(partial["folds"]) == 31
    assert partial["name"] != split["name"]
    assert all("B4" not in f["train"] for f in partial["folds"])


def test_write_read_roundtrip(tmp_path):
    split = patient_kfold(HER2, first_letter)
    path = write_split(split, tmp_path / "splits" / "lopo.json")
    back = read_split(path, sections=HER2)
    assert back == split
    assert [p.name for p in path.parent.iterdir()] == ["lopo.json"]  # no temp file left


def test_read_split_errors(tmp_path):
    split = patient_kfold(HER2, first_letter)
    p = tmp_path / "s.json"

    def write(obj):
        p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
        return p

    with pytest.raises(InputError, match="not in the data"):
        read_split(write(split), sections=[s for s in HER2 if s != "B4"])
    with pytest.raises(InputError, match="not valid JSON"):
        read_split(write("{oops"))
    with pytest.raises(InputError, match="not found"):
        read_split(tmp_path / "missing.json")

    overlap = json.loads(json.dumps(split))
    overlap["folds"][0]["train"].append(overlap["folds"][0]["test"][0])
    del overlap["id"]
    with pytest.raises(InputError, match="overlap"):
        read_split(write(overlap))

    leak = json.loads(json.dumps(split))
    f0 = leak["folds"][0]  # test = patient A; move A2 to train
    f0["test"].remove("A2")
    f0["train"].append("A2")
    del leak["id"]
    with pytest.raises(InputError, match="patient leak"):
        read_split(write(leak))

    unknown = json.loads(json.dumps(split))
    unknown["folds"][0]["test"].append("Z9")
    del unknown["id"]
    with pytest.raises(InputError, match="unknown sections Z9"):
        read_split(write(unknown))

    edited = json.loads(json.dumps(split))
    edited["folds"] = edited["folds"][:2]
    with pytest.raises(InputError, match="'id' does not match"):
        read_split(write(edited))
    del edited["id"]
    assert read_split(write(edited))["id"] == split_id(edited)  # accepted once id removed

    nopat = {k: v for k, v in split.items() if k not in ("id", "patient_of")}
    with pytest.raises(InputError, match="patient_of"):
        read_split(write(nopat))
    with pytest.raises(InputError, match="kind"):
        read_split(write({"name": "x"}))
    # the same leave-one-section-out layout is legal at section level
    assert read_split(write(leave_one_section_out(HER2, first_letter)))["level"] == "section"


def test_write_split_refuses_bad_split_and_leaves_no_file(tmp_path):
    split = leave_one_section_out(["a", "b"])
    split["folds"][0]["test"] = []
    with pytest.raises(InputError, match="empty"):
        write_split(split, tmp_path / "bad.json")
    assert not list(tmp_path.iterdir())


def test_validation_split_whole_section_single_patient():
    train = ["C3", "C4", "C5", "C6"]
    v = validation_split(train, first_letter, seed=0)
    assert v["strategy"] == "section" and v["level"] == "section"
    assert len(v["val"]) == 1 and len(v["train"]) == 3
    assert set(v["val"]) | set(v["train"]) == set(train) and not set(v["val"]) & set(v["train"])
    assert v == validation_split(list(reversed(train)), first_letter, seed=0)
    seen = {validation_split(train, first_letter, seed=s)["val"][0] for s in range(20)}
    assert len(seen) > 1  # the seed matters
    with pytest.raises(InputError, match="spots"):
        validation_split(["C2"], first_letter)


def test_validation_split_patient_level():
    train = [s for s in HER2 if s[0] != "A"]
    v = validation_split(train, first_letter, frac=0.2, seed=3)
    assert v["level"] == "patient"
    assert {s[0] for s in v["val"]}.isdisjoint({s[0] for s in v["train"]})
    assert v["train"] and len(v["val"]) >= round(0.2 * len(train))


def test_validation_spot_mask():
    v = validation_split(["C2"], strategy="spots", frac=0.25)
    assert v["train"] == v["val"] == ["C2"]
    m = validation_spot_mask("C2", 400, 0.25, seed=1)
    assert m.sum() == 100 and m.dtype == bool
    assert (m == validation_spot_mask("C2", 400, 0.25, seed=1)).all()
    assert not (m == validation_spot_mask("C3", 400, 0.25, seed=1)).all()
    assert validation_spot_mask("C2", 2, 0.01).sum() == 1


def test_gene_split_sgn():
    means = pd.Series({"g0": 5.0, "g1": 1.0, "g2": 9.0, "g3": 5.0, "g4": 0.0})
    split = gene_split_sgn(means, n_unseen=3)
    f = split["folds"][0]
    assert f["unseen"] == ["g0", "g2", "g3"] and f["seen"] == ["g1", "g4"]
    assert split["kind"] == "genes"
    with pytest.raises(InputError, match="n_unseen"):
        gene_split_sgn(means, n_unseen=5)


def test_gene_split_random_kfold_and_given(tmp_path):
    genes = [f"g{i}" for i in range(23)]
    split = gene_split_random_kfold(genes, k=4, seed=1)
    unseen = [g for f in split["folds"] for g in f["unseen"]]
    assert sorted(unseen) == sorted(genes)
    for f in split["folds"]:
        assert not set(f["seen"]) & set(f["unseen"]) and len(f["seen"]) + len(f["unseen"]) == 23
    assert split == gene_split_random_kfold(list(reversed(genes)), k=4, seed=1)
    assert split["id"] != gene_split_random_kfold(genes, k=4, seed=2)["id"]
    assert read_split(write_split(split, tmp_path / "g.json")) == split

    given = gene_split_given(["g3", "g1", "g3"], genes)
    assert given["folds"][0]["unseen"] == ["g1", "g3"] and len(given["folds"][0]["seen"]) == 21
    with pytest.raises(InputError, match="not in the gene list"):
        gene_split_given(["nope"], genes)


def test_patient_kfold_is_fast_enough_for_many_sections():
    secs = [f"P{p}_{i}" for p in range(50) for i in range(20)]
    split = patient_kfold(secs, lambda s: s.split("_")[0], k=5)
    assert len(split["folds"]) == 5
    assert np.isclose(sum(len(f["test"]) for f in split["folds"]), 1000)


@pytest.mark.realdata
def test_protocols_on_her2st_section_list(her2st_dir, tmp_path):
    from geneshot.io import get_dataset

    spec = get_dataset("her2st")
    secs = spec.list_sections(her2st_dir)
    lopo = patient_kfold(secs, spec.patient_of)
    assert len(lopo["folds"]) == 8
    legacy = legacy_loocv_32(available=secs)
    assert legacy["missing"] == [s for s in LEGACY_HER2ST_32 if s not in secs]
    assert read_split(write_split(legacy, tmp_path / "legacy.json"), sections=secs) == legacy
    # sections with images (C2-C6) belong to one patient: the default falls back to sections
    imaged = [s for s in secs if (her2st_dir / "ST-imgs" / s[0] / s).is_dir()]
    if len({spec.patient_of(s) for s in imaged}) < 2:
        assert default_split(imaged, spec.patient_of)["level"] == "section"
