"""``geneshot train --config``: the YAML is checked against TrainConfig and the model's config."""

from __future__ import annotations

import pytest
from cli_helpers import assert_clean_failure, invoke

from geneshot.cli._config import read_train_config, validate_train_config
from geneshot.errors import InputError


def test_valid_config_passes_through(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  d_model: 64\n  dropout: 0.2\ntrain:\n  max_epochs: 3\n  lr: 0.001\n")
    cfg = read_train_config(p, "align-st")
    assert cfg == {
        "model": {"d_model": 64, "dropout": 0.2},
        "train": {"max_epochs": 3, "lr": 0.001},
    }
    assert read_train_config(None, "align-st") == {"model": {}, "train": {}}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_train_config(empty, "ridge") == {"model": {}, "train": {}}


@pytest.mark.parametrize(
    "cfg,model,needles",
    [
        ({"train": {"max_epoch": 3}}, "align-st", ["'max_epoch'", "`train:`", "max_epochs", "lr"]),
        ({"model": {"d_modl": 8}}, "align-st", ["'d_modl'", "model align-st", "d_model"]),
        # a key valid for one model is misspelt for another
        ({"model": {"d_model": 8}}, "ridge", ["'d_model'", "model ridge", "n_components"]),
        ({"trian": {}}, "align-st", ["'trian'", "top level", "model, train"]),
        ({"train": [1, 2]}, "align-st", ["`train:` must be a mapping"]),
        ([1, 2], "align-st", ["must be a mapping"]),
    ],
)
def test_misspelt_keys_are_named_with_the_valid_ones(cfg, model, needles):
    with pytest.raises(InputError) as err:
        validate_train_config(cfg, model)
    msg = str(err.value)
    for n in needles:
        assert n in msg, (n, msg)


def test_close_match_is_suggested():
    with pytest.raises(InputError, match="did you mean 'max_epochs'"):
        validate_train_config({"train": {"max_epoch": 1}}, "sgn")


def test_cli_rejects_a_misspelt_key_before_reading_data(her2st, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  patiense: 3\n")
    out = tmp_path / "run"
    res = invoke(
        ["-q", "train", "--data", str(her2st), "--train-sections", "C2", "--config", str(cfg)]
        + ["--cache", str(tmp_path / "c"), "--out", str(out)]
    )
    assert_clean_failure(res, str(cfg), "'patiense'", "patience", out=out)


def test_cli_rejects_broken_yaml(her2st, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train: [unclosed\n")
    res = invoke(
        [
            "train",
            "--data",
            str(her2st),
            "--train-sections",
            "C2",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert_clean_failure(res, str(cfg), "not valid YAML")


def test_feature_window_options_parse():
    """--fov-um / --context-um: micrometre lists, 'none' for off, a clear error otherwise."""
    import pytest

    from geneshot.cli._prepare import feature_config_from
    from geneshot.errors import InputError
    from geneshot.prepare import FeatureConfig

    base = {"image_encoder": "effnet-lite0", "tta": False, "nuclei": True, "stain": None, "text_encoder": "minilm", "gene_texts": None}
    assert feature_config_from({**base}).fov_um == FeatureConfig().fov_um
    cfg = feature_config_from({**base, "fov_um": "224,896", "context_um": "none"})
    assert cfg.fov_um == (224.0, 896.0) and cfg.context_um == ()
    with pytest.raises(InputError, match="--fov-um"):
        feature_config_from({**base, "fov_um": "224,big"})
    with pytest.raises(InputError, match="non-positive"):
        feature_config_from({**base, "context_um": "0,300"})


@pytest.mark.parametrize(
    ("model", "body", "needle"),
    [
        ("align-st", {"departure_scale": -1}, "departure_scale"),
        ("gene-kernel", {"departure_shrink": "big"}, "departure_shrink"),
        ("align-st", {"common_fit": "depth"}, "common_fit"),
    ],
)
def test_a_bad_model_value_is_named_with_the_file(tmp_path, model, body, needle):
    with pytest.raises(InputError) as err:
        validate_train_config({"model": body}, model, tmp_path / "cfg.yaml")
    msg = str(err.value)
    assert str(tmp_path / "cfg.yaml") in msg and needle in msg and f"model {model}" in msg


def test_a_bad_train_value_is_named_with_the_file(tmp_path):
    with pytest.raises(InputError) as err:
        validate_train_config({"train": {"support_from": "genes"}}, "align-st", tmp_path / "cfg.yaml")
    msg = str(err.value)
    assert str(tmp_path / "cfg.yaml") in msg and "`train:`" in msg and "support_from" in msg
    assert "sections" in msg  # the fix names the valid values
