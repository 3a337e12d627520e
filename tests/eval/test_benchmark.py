"""The benchmark runner on a tiny synthetic HER2+-layout dataset (3 imaged sections)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geneshot.errors import InputError

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "her2st_smoke.yaml"
GENES = (
    "ERBB2 KRT19 CD74 ACTB MT-CO3 GAPDH COL1A1 IGKC EEF1A1 TPT1 RPLP0 FTL FTH1 B2M TMSB4X MGP "
    "SCGB2A2 KRT8 KRT18 CD24 VIM SPARC COL1A2 COL3A1 FN1 LUM DCN MUC1 ESR1 PGR TFF1 TFF3 AGR2 "
    "XBP1 S100A6 HLA-B HLA-DRA LYZ CD68 PTPRC"
).split()


def write_section(root: Path, section: str, seed: int, shape=(5, 4)) -> None:
    """One HER2+-layout section: counts whose level follows image darkness, spot file, H&E."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(1, shape[0] + 1), np.arange(1, shape[1] + 1))
    xs, ys = xs.ravel(), ys.ravel()
    n = xs.size
    px, py = 90.0 * xs + 40, 90.0 * ys + 40
    img = np.full((py.max().astype(int) + 130, px.max().astype(int) + 130, 3), 225, np.uint8)
    dark = rng.uniform(0, 1, n)
    for x, y, d in zip(px.astype(int), py.astype(int), dark):
        patch = img[y - 40 : y + 40, x - 40 : x + 40]
        patch[rng.uniform(size=patch.shape[:2]) < 0.1 + 0.4 * d] = (90, 40, 140)  # "nuclei"
    base = np.linspace(40, 1, len(GENES))  # ERBB2 most expressed, then KRT19, ...
    lam = base[None, :] * (0.5 + dark[:, None]) * rng.uniform(0.7, 1.3, (1, len(GENES)))
    counts = pd.DataFrame(
        rng.poisson(lam), index=[f"{x}x{y}" for x, y in zip(xs, ys)], columns=GENES
    )
    (root / "ST-cnts").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "ST-cnts" / f"{section}.tsv.gz", "wt") as fh:
        counts.to_csv(fh, sep="\t")
    spots = pd.DataFrame(
        {"x": xs, "y": ys, "new_x": xs, "new_y": ys, "pixel_x": px, "pixel_y": py, "selected": 1}
    )
    (root / "ST-spotfiles").mkdir(exist_ok=True)
    spots.to_csv(root / "ST-spotfiles" / f"{section}_selection.tsv", sep="\t", index=False)
    d = root / "ST-imgs" / section[0] / section
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(d / "HE.jpg")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("her2st")
    for i, s in enumerate(("C2", "C3", "C4")):
        write_section(root, s, i)
    return root


@pytest.fixture(scope="module")
def first_run(data_dir, tmp_path_factory):
    """One benchmark run shared by the checks below (the expensive part)."""
    import geneshot.eval._benchmark as bm
    import geneshot.workflow as wf
    from geneshot.cache import Cache
    from geneshot.data import TargetTransform

    seen = {"split": [], "fit": []}
    orig_split, orig_fit = wf.split_genes, TargetTransform.fit.__func__

    def spy_split(train, **kw):
        seen["split"].append(sorted(s.name for s in train))
        return orig_split(train, **kw)

    def spy_fit(cls, sections, kind="libsize"):
        seen["fit"].append(sorted(a.obs["section"].iloc[0] for a in sections))
        return orig_fit(cls, sections, kind)

    mp = pytest.MonkeyPatch()
    mp.setattr(wf, "split_genes", spy_split)
    mp.setattr(TargetTransform, "fit", classmethod(spy_fit))
    out = tmp_path_factory.mktemp("bench")
    cache = Cache(tmp_path_factory.mktemp("cache"))
    try:
        res = bm.run_benchmark(SMOKE, data_dir, out, cache=cache, progress=False)
    finally:
        mp.undo()
    return res, out, cache, seen


@pytest.mark.slow
def test_outputs_exist_and_are_well_formed(first_run):
    res, out, _, _ = first_run
    for name in (
        "results.csv",
        "results.md",
        "report.html",
        "split.json",
        "provenance.json",
        "paired.csv",
        "ablations.csv",
    ):
        assert (out / name).is_file(), name
    split = json.loads((out / "split.json").read_text())
    assert split["name"] == "leave_one_section_out" and len(split["folds"]) == 3
    df = pd.read_csv(out / "results.csv")
    main = df[df["group"] != "ablation"]
    # 4 methods x 2 conventions, one row each
    assert len(main) == 8 and set(main["convention"]) == {"libsize", "sgn"}
    assert set(main["method"]) == {"align-st", "text-knn", "depth", "ridge"}
    assert main[main["method"] == "ridge"]["group"].iloc[0] == "supervised"
    assert main[main["method"] == "depth"]["group"].iloc[0] == "control"
    # the unseen set is chosen per fold on its training sections; rows score the genes common to all folds
    unseen = [
        set(json.loads((out / "folds" / f / "fold.json").read_text())["gene_split"]["unseen"])
        for f in ("f0", "f1", "f2")
    ]
    assert (main["n_folds"] == 3).all() and (
        main["n_genes"] == len(set.intersection(*unseen))
    ).all()
    assert main["pcc_m_section"].between(-1, 1).all()
    # cross-convention rows (trained on libsize, scored on sgn) have no MSE: different units
    sgn = main[main["convention"] == "sgn"]
    assert sgn["mse"].isna().all() and sgn["units"].str.startswith("cross").all()
    lib = main[main["convention"] == "libsize"]
    assert (lib["mse"] > 0).all()
    assert (main["pcc_m_section_ci_lo"] <= main["pcc_m_section"] + 1e-9).all()
    assert (main["pcc_m_section"] <= main["pcc_m_section_ci_hi"] + 1e-9).all()
    assert main["pcc_h_chosen_on_test"].all()
    # ablation on the first fold only
    abl = pd.read_csv(out / "ablations.csv")
    assert list(abl["ablation"]) == ["no_asig"] and abl["folds"].iloc[0] == "f0"
    # per-gene tables and fold storage
    assert len(list((out / "per_gene").glob("*.csv"))) == 10
    pg = pd.read_csv(out / "per_gene" / "align-st__libsize__libsize.csv", index_col=0)
    assert len(pg) == len(set.intersection(*unseen)) and pg["r_per_section"].is_monotonic_decreasing
    for f in ("f0", "f1", "f2"):
        assert len(list((out / "folds" / f).glob("*.npz"))) == (5 if f == "f0" else 4)
    md = (out / "results.md").read_text()
    assert "Table 1" in md and "Verdict" in md and "chosen on test results" in md
    assert "NOT MET" in res.verdict or " MET " in res.verdict
    # no permuted-text / sgn in the smoke config: the verdict says it cannot judge them
    assert "not judged" in res.verdict and "SGN" in res.verdict
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["method_b"]) == {"text-knn", "depth", "ridge"}


@pytest.mark.slow
def test_report_is_self_contained(first_run):
    _, out, _, _ = first_run
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("data:image/png;base64,") >= 2  # ranking + maps
    assert 'src="http' not in html and 'href="http' not in html
    for needle in ("Table 1", "Provenance", "Ablations", "cores", "ERBB2"):
        assert needle in html


@pytest.mark.slow
def test_no_test_section_leaks(first_run):
    _, out, _, seen = first_run
    for f in ("f0", "f1", "f2"):
        rec = json.loads((out / "folds" / f / "fold.json").read_text())
        assert rec["gene_split_on"] == rec["targets_fitted_on"] == sorted(rec["train"])
        assert not set(rec["test"]) & set(rec["train"])
        assert len(rec["gene_split"]["unseen"]) == 6
        assert not set(rec["gene_split"]["unseen"]) & set(rec["gene_split"]["seen"])
    # what split_genes and TargetTransform.fit actually received: training sections only
    assert len(seen["split"]) == 3
    for train in seen["split"] + seen["fit"]:
        assert len(train) == 2, train  # LOSO on 3 sections: two training sections
    tests = [
        json.loads((out / "folds" / f / "fold.json").read_text())["test"][0]
        for f in ("f0", "f1", "f2")
    ]
    for test, train in zip(tests, seen["split"]):
        assert test not in train


@pytest.mark.slow
def test_resume_trains_nothing(first_run, data_dir):
    from click.testing import CliRunner

    from geneshot.cli import main

    res, out, cache, _ = first_run
    assert len(res.trained) == 13 and not res.loaded  # 4 methods x 3 folds + 1 ablation
    before = (out / "results.csv").read_text()
    r = CliRunner().invoke(
        main,
        [
            "benchmark",
            "--config",
            str(SMOKE),
            "--data",
            str(data_dir),
            "--out",
            str(out),
            "--cache",
            str(cache.root),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "0 runs trained, 13 reused" in r.output
    assert (out / "results.csv").read_text() == before


def test_bad_config_is_an_input_error(tmp_path):
    from geneshot.eval import resolve_config

    with pytest.raises(InputError, match="protocol"):
        resolve_config({"protocol": "nope", "methods": {"depth": {}}})
    with pytest.raises(InputError, match="methods"):
        resolve_config({})
    with pytest.raises(InputError, match="unknown config field"):
        resolve_config({"methodz": {}})
    bad = tmp_path / "b.yaml"
    bad.write_text("methods: [unclosed")
    with pytest.raises(InputError, match="YAML"):
        resolve_config(bad)
    cfg = resolve_config(SMOKE)
    assert cfg["methods"]["ridge"]["group"] == "supervised" and cfg["headline"] == "libsize"


def test_cli_missing_data_exits_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from geneshot.cli import main

    monkeypatch.delenv("GENESHOT_DATA", raising=False)
    r = CliRunner().invoke(
        main, ["benchmark", "--config", str(SMOKE), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "GENESHOT_DATA" in r.output


def test_verdict_says_plainly_when_not_met():
    from geneshot.eval import resolve_config
    from geneshot.eval._benchmark import verdict

    cfg = resolve_config(
        {"methods": {m: {} for m in ("align-st", "sgn", "permuted-text", "depth")}}
    )

    def res(ours, sgn, perm, depth):
        rows = [
            ("align-st", "align-st", ours),
            ("sgn", "sgn", sgn),
            ("permuted-text", "permuted-text", perm),
            ("depth", "depth", depth),
        ]
        return pd.DataFrame(
            [
                {
                    "method": m,
                    "model": mo,
                    "label": m,
                    "group": "zero-shot",
                    "setting": "zero-shot",
                    "trained_on": "libsize",
                    "convention": "libsize",
                    "pcc_m_section": v,
                    "n_folds": 5,
                }
                for m, mo, v in rows
            ]
        )

    ok = verdict(res(0.30, 0.20, 0.15, 0.10), cfg)
    assert ok.startswith("Quality goal MET") and "FAIL" not in ok
    bad = verdict(res(0.30, 0.25, 0.15, 0.10), cfg)  # 1.2x SGN only
    assert "NOT MET" in bad and "FAIL >= 1.3x SGN" in bad
    low = verdict(res(0.20, 0.10, 0.05, 0.25), cfg)
    assert "NOT MET" in low and "FAIL PCC@M 0.200 >= 0.26" in low and "FAIL above depth" in low
