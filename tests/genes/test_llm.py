"""LLM describer against the mock OpenAI-compatible server of ``conftest.py``."""

from __future__ import annotations

import socket

import pytest

from geneshot.cache import Cache
from geneshot.errors import InputError
from geneshot.genes import describe_with_llm
from geneshot.genes._llm import chat_url


def test_chat_url():
    assert chat_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_samples_and_cache(server, tmp_path, monkeypatch):
    url, mock = server
    monkeypatch.setenv("MY_KEY", "sekret")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache = Cache(tmp_path / "c")
    out = describe_with_llm(
        ["ERBB2", "ESR1"],
        url,
        "tiny-llm",
        n_samples=3,
        api_key_env="MY_KEY",
        cache=cache,
        progress=False,
    )
    assert out == {
        g: [f"{g} answer {i} from tiny-llm" for i in range(3)] for g in ("ERBB2", "ESR1")
    }
    assert len(mock.seen) == 6
    assert all(r["auth"] == "Bearer sekret" for r in mock.seen)
    assert mock.seen[0]["body"]["messages"][0]["role"] == "system"

    # everything cached: no new request; one more sample costs one request
    again = describe_with_llm(
        ["ERBB2", "ESR1"], url + "/v1", "tiny-llm", n_samples=3, cache=cache, progress=False
    )
    assert again == out and len(mock.seen) == 6
    more = describe_with_llm(["ERBB2"], url, "tiny-llm", n_samples=4, cache=cache, progress=False)
    assert more["ERBB2"][3] == "ERBB2 answer 3 from tiny-llm" and len(mock.seen) == 7
    assert mock.seen[-1]["auth"] is None  # OPENAI_API_KEY unset here
    # a different model or prompt is a different cache entry
    describe_with_llm(["ERBB2"], url, "other", n_samples=1, cache=cache, progress=False)
    describe_with_llm(
        ["ERBB2"],
        url,
        "tiny-llm",
        n_samples=1,
        cache=cache,
        progress=False,
        prompt="Describe the human gene {symbol}: briefly.",
    )
    assert len(mock.seen) == 9


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("500", "HTTP 500"),
        ("garbage", "did not answer with JSON"),
        ("nochoices", "without choices"),
    ],
)
def test_bad_server_answers(server, tmp_path, mode, match):
    url, mock = server
    mock.mode = mode
    with pytest.raises(InputError, match=match):
        describe_with_llm(
            ["ERBB2"], url, "m", n_samples=1, cache=Cache(tmp_path), retries=1, progress=False
        )
    assert len(mock.seen) == (2 if mode == "500" else 1)  # 5xx retried once


def test_wrong_route_and_unreachable(server, tmp_path):
    url, _ = server
    with pytest.raises(InputError, match="HTTP 404"):
        describe_with_llm(
            ["ERBB2"],
            url + "/api/chat/completions",
            "m",
            n_samples=1,
            cache=Cache(tmp_path),
            progress=False,
        )
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="cannot be reached"):
        describe_with_llm(
            ["ERBB2"],
            f"http://127.0.0.1:{port}",
            "m",
            n_samples=1,
            cache=Cache(tmp_path),
            retries=0,
            progress=False,
        )


def test_argument_checks(tmp_path):
    with pytest.raises(InputError, match="n_samples"):
        describe_with_llm(["A"], "http://127.0.0.1:1", "m", n_samples=0, cache=Cache(tmp_path))
    with pytest.raises(InputError, match="symbol"):
        describe_with_llm(
            ["A"], "http://127.0.0.1:1", "m", prompt="no field", cache=Cache(tmp_path)
        )
