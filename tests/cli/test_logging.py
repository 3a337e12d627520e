"""``geneshot -q/-v``: log levels, progress bars on and off, env vars; ``geneshot -v train``."""

from __future__ import annotations

import io
import logging

import click
import pytest
from cli_helpers import write_section
from click.testing import CliRunner

from geneshot import _progress
from geneshot._logging import configure_logging, level_for
from geneshot.cli import main

log = logging.getLogger("geneshot.probe")


@pytest.fixture
def probe():
    """A throwaway ``geneshot probe`` command that logs at every level and reports progress."""

    @main.command("probe")
    def probe_cmd() -> None:
        """Log one line per level."""
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            log.log(level, "probe-%s", logging.getLevelName(level))
        click.echo(f"progress={_progress.progress_enabled()}")

    yield
    main.commands.pop("probe")
    _progress.set_quiet(False)
    configure_logging(0)


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, [*args, "probe"], env=env)


@pytest.mark.parametrize(
    "args,shown",
    [
        ((), {"WARNING", "ERROR"}),
        (("-q",), {"ERROR"}),
        (("-v",), {"INFO", "WARNING", "ERROR"}),
        (("-vv",), {"DEBUG", "INFO", "WARNING", "ERROR"}),
        (("-q", "-vv"), {"ERROR"}),  # quiet wins
    ],
)
def test_log_levels(probe, args, shown):
    res = run(*args)
    assert res.exit_code == 0, res.output
    got = {lvl for lvl in ("DEBUG", "INFO", "WARNING", "ERROR") if f"probe-{lvl}" in res.stderr}
    assert got == shown
    assert "probe-" not in res.stdout  # logs go to stderr, results to stdout


def test_env_vars_map_to_group_options(probe):
    res = run(env={"GENESHOT_VERBOSE": "1"})
    assert "probe-INFO" in res.stderr and "probe-DEBUG" not in res.stderr
    res = run(env={"GENESHOT_QUIET": "1"})
    assert "probe-WARNING" not in res.stderr and "probe-ERROR" in res.stderr


def test_repeated_configuration_adds_no_duplicate_lines(probe):
    run("-v")
    res = run("-v")
    assert res.stderr.count("probe-INFO") == 1


def test_level_for():
    assert [level_for(v) for v in (-1, 0, 1, 2, 5)] == [
        logging.ERROR,
        logging.WARNING,
        logging.INFO,
        logging.DEBUG,
        logging.DEBUG,
    ]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_only_on_a_terminal_and_not_when_quiet(monkeypatch, probe):
    # CliRunner's stderr is no terminal: the CLI decides "no bars"
    assert "progress=False" in run().stdout
    monkeypatch.delitem(__import__("sys").modules, "ipykernel", raising=False)
    redirected, tty = io.StringIO(), _Tty()
    monkeypatch.setattr("sys.stderr", redirected)
    _progress.set_quiet(False)
    assert not _progress.progress_enabled()
    for _ in _progress.progress_bar(range(50), desc="redirected"):
        pass
    assert redirected.getvalue() == ""  # no carriage-return frames in a log file
    monkeypatch.setattr("sys.stderr", tty)
    assert _progress.progress_enabled()
    for _ in _progress.progress_bar(range(50), desc="on-a-tty", mininterval=0):
        pass
    assert "on-a-tty" in tty.getvalue()
    bar = _progress.progress_bar(range(3), progress=False)
    assert bar.disable  # the library's own progress=False still wins
    _progress.set_quiet(True)
    assert not _progress.progress_enabled()
    assert _progress.progress_bar(range(3)).disable


def test_quiet_silences_hugging_face_bars(monkeypatch, probe):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    run("-q")
    import os

    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"


@pytest.mark.slow
def test_verbose_train_shows_log_lines(tmp_path):
    root = tmp_path / "her2st"
    for i, sec in enumerate(["C2", "C3"]):
        write_section(root, sec, n=9, seed=i)
    # the paper head: three seen genes are too few for the kernel head (it needs 2 to fit)
    args = ["--data", str(root), "--train-sections", "C2,C3", "--model", "align-st-paper"]
    args += ["--no-nuclei", "--n-unseen", "2", "--seen-pool", "3", "--max-epochs", "1"]
    args += ["--cache", str(tmp_path / "c")]
    res = CliRunner().invoke(main, ["-v", "train", *args, "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    info = [ln for ln in res.stderr.splitlines() if " INFO geneshot." in ln]
    assert any("C2: 9 spots prepared" in ln for ln in info), res.stderr
    assert any("align-st-paper epoch 1/1: loss" in ln for ln in info), res.stderr
    assert "\r" not in res.stderr  # no progress-bar frames when stderr is not a terminal
    # without -v the same run logs nothing at INFO
    res = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "run2")])
    assert res.exit_code == 0, res.output
    assert " INFO " not in res.stderr
