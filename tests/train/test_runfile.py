"""Bad run folders: one InputError naming the file at fault and the fix, also through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from geneshot.data import TargetTransform
from geneshot.errors import InputError
from geneshot.train import Ensemble, GeneshotModel
from tests.train.test_distributed import MODEL_CFG, tiny_data

FIT = {"max_epochs": 1, "genes_per_step": 6, "context_per_step": 4, "n_val_genes": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A torch run (align-st), an estimator run (depth) and a torch run of another shape."""
    secs, pg, genes = tiny_data()
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for key, name, cfg in [
        ("torch", "align-st", MODEL_CFG),
        ("wide", "align-st", {**MODEL_CFG, "d_model": 32}),
        ("estimator", "depth", {"n_components": 4}),
    ]:
        m = GeneshotModel(name, "zero-shot", FIT, **cfg)
        m.train(
            secs,
            pg,
            seen_genes=genes[4:],
            unseen_genes=genes[:4],
            target=target,
            features={},
            progress=False,
        )
        out[key] = m.save(root / key)
    return out


def bad_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def corrupt(case: str, runs: dict[str, Path], tmp: Path) -> tuple[Path, Path, str]:
    """Make a broken copy; return (run folder, file at fault, words the error must hold)."""
    run = bad_copy(runs["estimator" if case.startswith("estimator") else "torch"], tmp / case)
    weights, meta = run / "weights.pt", run / "run.json"
    if case in ("truncated-weights", "estimator-truncated"):
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
        return run, weights, "unreadable"
    if case == "garbage-weights":
        weights.write_bytes(b"this is not a torch file\n" * 10)
        return run, weights, "unreadable"
    if case == "other-model-weights":
        shutil.copyfile(runs["wide"] / "weights.pt", weights)
        return run, weights, "not those of this run's 'align-st' model"
    if case == "estimator-wrong-object":
        import pickle

        weights.write_bytes(pickle.dumps({"not": "an estimator"}))
        return run, weights, "holds a dict"
    if case == "empty-run-json":
        meta.write_text("")
        return run, meta, "run file is empty"
    if case == "non-json-run-json":
        meta.write_text("{model: align-st")
        return run, meta, "not valid JSON"
    if case == "run-json-missing-keys":
        d = _meta(run)
        del d["contract"], d["setting"]
        meta.write_text(json.dumps(d))
        return run, meta, "lacks setting, contract"
    if case == "run-json-not-an-object":
        meta.write_text("[1, 2]")
        return run, meta, "not a JSON object"
    if case == "run-json-bad-contract":
        d = _meta(run)
        d["contract"] = {"features": {}}
        meta.write_text(json.dumps(d))
        return run, meta, "does not describe a model"
    raise AssertionError(case)


CASES = [
    "truncated-weights",
    "garbage-weights",
    "other-model-weights",
    "estimator-truncated",
    "estimator-wrong-object",
    "empty-run-json",
    "non-json-run-json",
    "run-json-missing-keys",
    "run-json-not-an-object",
    "run-json-bad-contract",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_run_folder_raises_one_input_error(runs, tmp_path, case):
    run, at_fault, words = corrupt(case, runs, tmp_path)
    for load in (GeneshotModel.load, Ensemble.load):
        with pytest.raises(InputError) as err:
            load(run)
        assert err.value.path == str(at_fault)
        assert words in err.value.problem
        assert "--run" in err.value.fix and "retrain" in err.value.fix


def test_good_runs_still_load(runs):
    secs, pg, genes = tiny_data()
    for key in ("torch", "estimator"):
        m = GeneshotModel.load(runs[key])
        assert m.predict(secs[0], pg, genes[:4]).shape == (secs[0].adata.n_obs, 4)
    # torch weights are read without unpickling arbitrary objects
    state = torch.load(runs["torch"] / "weights.pt", weights_only=True)
    assert isinstance(state, dict) and state


def test_ensemble_block_without_members(runs, tmp_path):
    run = bad_copy(runs["torch"], tmp_path / "ens")
    d = _meta(run)
    d["ensemble"] = {"n_members": 2}
    (run / "run.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match="ensemble block has no member list"):
        Ensemble.load(run)


@pytest.mark.parametrize(
    "case", ["garbage-weights", "non-json-run-json", "run-json-missing-keys", "other-model-weights"]
)
def test_evaluate_on_a_bad_run_fails_in_one_line(runs, tmp_path, case):
    from geneshot.cli import main

    run, at_fault, words = corrupt(case, runs, tmp_path)
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        "--run",
        str(run),
        "--data",
        str(tmp_path / "her2st"),
        "--sections",
        "C6",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.stderr
    assert str(at_fault) in lines[0] and words in lines[0] and "Fix: " in lines[0]
    assert not out.exists()
