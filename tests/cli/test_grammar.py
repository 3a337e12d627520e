"""One CLI grammar: every command's options, shared names, choices, env vars and the docs.

Walks the click command tree, so a command added later is checked too.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from cli_helpers import assert_clean_failure, invoke
from click.testing import CliRunner

from geneshot.cli import main

ROOT = Path(__file__).resolve().parents[2]
GONE = {"--quiet", "--no-progress", "--epochs", "--dest"}


def walk(group: click.Group, path: tuple[str, ...] = ()):
    """Every leaf command as ``(path, command)``."""
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from walk(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = list(walk(main))


def options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and p.name != "help"]


def flags(cmd: click.Command) -> set[str]:
    out: set[str] = set()
    for p in options(cmd):
        out |= set(p.opts) | set(p.secondary_opts)
    return out


def test_the_tree_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"train", "evaluate", "predict", "prepare", "data fetch", "genes describe"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_and_argument_is_documented(path, cmd):
    for p in options(cmd):
        assert p.help and len(p.help) > 8, f"geneshot {' '.join(path)} {p.opts[0]} has no help"
    # click arguments take no help=; the command's docstring must name them
    for p in cmd.params:
        if isinstance(p, click.Argument):
            assert p.human_readable_name.upper() in (cmd.help or ""), (path, p.name)


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_one_grammar(path, cmd):
    f = flags(cmd)
    assert not f & GONE, f"geneshot {' '.join(path)} still has {sorted(f & GONE)}"
    assert not {"-q", "-v"} & f, "-q/-v belong to the group"
    by_flag = {o: p for p in options(cmd) for o in p.opts}
    if "--data" in by_flag:
        assert "dataset's own folder" in by_flag["--data"].help
    if "--dataset" in by_flag:
        assert isinstance(by_flag["--dataset"].type, click.Choice)
        from geneshot.io import DATASETS

        assert set(by_flag["--dataset"].type.choices) == set(DATASETS)
    if "--model" in by_flag:  # always a geneshot model; the LLM one is --llm-model
        from geneshot.models import MODELS

        assert list(by_flag["--model"].type.choices) == list(MODELS)
    if "--out" in by_flag:
        assert re.search(r"\b(file|folder)\b", by_flag["--out"].help, re.I), path
    if "--cache" in by_flag:
        assert by_flag["--cache"].envvar == "GENESHOT_CACHE"


def test_group_has_quiet_and_verbose_and_env_prefix():
    f = flags(main)
    assert {"-q", "--quiet", "-v", "--verbose"} <= f
    assert main.context_settings["auto_envvar_prefix"] == "GENESHOT"


def test_renamed_options_exist():
    cmds = {" ".join(p): c for p, c in COMMANDS}
    assert "--max-epochs" in flags(cmds["train"]) and "--max-epochs" in flags(cmds["benchmark"])
    assert "--llm-model" in flags(cmds["genes describe"])
    assert "--data" in flags(cmds["data fetch"]) and "--data-root" in flags(cmds["data list"])


def test_choices_reject_unknown_names(tmp_path):
    res = invoke(["prepare", "--dataset", "nope", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "'nope' is not one of" in res.output
    res = invoke(["train", "--train-sections", "C2", "--model", "alignst", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "align-st" in res.output
    res = invoke(["prepare", "--text-encoder", "bert", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "hf:<model id>" in res.output


def test_text_encoder_type_accepts_registry_and_hf_ids():
    from geneshot.cli._main import TextEncoderType

    t = TextEncoderType()
    assert t.convert("minilm", None, None) == "minilm"
    assert t.convert("hf:org/model", None, None) == "hf:org/model"
    for bad in ("hf:", "bert-base"):
        with pytest.raises(click.BadParameter):
            t.convert(bad, None, None)


def test_default_data_dir(tmp_path, monkeypatch):
    from geneshot.cli._main import default_data_dir

    monkeypatch.setenv("GENESHOT_DATA", str(tmp_path))
    assert default_data_dir("her2st") == tmp_path / "her2st"
    monkeypatch.delenv("GENESHOT_DATA")
    monkeypatch.setattr("platformdirs.user_data_dir", lambda app: str(tmp_path / "user" / app))
    assert default_data_dir("cscc") == tmp_path / "user" / "geneshot" / "cscc"


def test_command_options_read_prefixed_env_vars(tmp_path):
    from geneshot.cli._main import ENV_PREFIX

    assert ENV_PREFIX == "GENESHOT"
    res = CliRunner().invoke(
        main,
        ["data", "list", "--data-root", str(tmp_path)],
        env={"GENESHOT_DATA_LIST_DATASET": "cscc"},
    )
    assert res.exit_code == 0, res.output
    assert "cscc" in res.output and "her2st" not in res.output


def test_fetch_needs_a_folder_named_after_the_dataset(tmp_path):
    res = invoke(["data", "fetch", "cscc", "--data", str(tmp_path / "mydata")])
    assert_clean_failure(
        res, str(tmp_path / "mydata"), "named 'cscc'", str(tmp_path / "mydata" / "cscc")
    )


# -- the README and BENCHMARKS commands use options that exist ---------------------------


def doc_commands(text: str) -> list[list[str]]:
    """The arguments of every ``geneshot ...`` command in fenced blocks and inline code."""
    spans = []
    for m in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S):
        spans += m.group(1).replace("\\\n", " ").splitlines()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    spans += [m.group(1).replace("\n", " ") for m in re.finditer(r"`([^`]+)`", text)]
    found = []
    for span in spans:
        m = re.search(r"(?:^|\s)(?:-m\s+)?geneshot(?:\.cli)?\s+(.*)$", span)
        if m:
            tokens = shlex.split(m.group(1).replace("$", ""))
            # "fetch her2st|cscc" names alternatives; "..." elides the rest
            if tokens and not tokens[0].isupper():  # `geneshot COMMAND -h` is a pattern
                found.append([t.split("|")[0] for t in tokens if t != "..."])
    return found


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md"])
def test_documented_commands_use_existing_options(doc):
    cmds = doc_commands((ROOT / doc).read_text())
    assert cmds, f"no geneshot commands found in {doc}"
    group_flags = flags(main)
    for tokens in cmds:
        tokens = [t for t in tokens if t not in group_flags and not re.fullmatch(r"-v+", t)]
        cmd: click.Command = main
        while isinstance(cmd, click.Group) and tokens and tokens[0] in cmd.commands:
            cmd = cmd.commands[tokens.pop(0)]
        assert not isinstance(cmd, click.Group), f"{doc}: no such command in {tokens}"
        known = flags(cmd) | {"-h", "--help"}
        used = {t.split("=")[0] for t in tokens if t.startswith("--")}
        assert used <= known, f"{doc}: `geneshot {cmd.name}` has no {sorted(used - known)}"
