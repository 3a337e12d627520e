"""Gene descriptions written by a language model behind an OpenAI-compatible endpoint.

SGN-style: the model is asked about a gene's function and the phenotypes it is tied to,
several times with sampling, and each answer is cached on disk so a rerun costs nothing.
Only the standard library is used for HTTP (``urllib``), so any server that speaks
``POST /v1/chat/completions`` works: a hosted API, vLLM, llama.cpp, Ollama, ...
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

from geneshot._progress import progress_bar
from geneshot.cache import Cache
from geneshot.errors import InputError

SYSTEM_PROMPT = "You are a molecular biologist who explains human genes clearly and accurately."
GENE_PROMPT = (
    "In one plain-text paragraph of at most 150 words, describe the human gene {symbol}: "
    "what its product does in the cell, the pathways and cell types where it matters, and "
    "the phenotypes or diseases linked to it. Do not use lists or headings."
)
_RETRY_STATUS = {429, 500, 502, 503, 504}


def chat_url(endpoint: str) -> str:
    """Full chat-completions URL from a base URL (``http://host:8000``, ``.../v1`` or the full path)."""
    url = endpoint.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


def _post(url: str, payload: dict, api_key: str | None, timeout: float, retries: int) -> dict:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            if err.code in _RETRY_STATUS and attempt < retries:
                time.sleep(min(2.0**attempt, 10.0))
                continue
            detail = err.read()[:200].decode("utf-8", "replace")
            fix = (
                "check --model and the API key variable"
                if err.code in (401, 403, 404)
                else "check the server"
            )
            raise InputError(
                None, f"LLM endpoint {url} answered HTTP {err.code}: {detail}", fix
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            if attempt < retries:
                time.sleep(min(2.0**attempt, 10.0))
                continue
            reason = getattr(err, "reason", err)
            raise InputError(
                None,
                f"LLM endpoint {url} cannot be reached ({reason})",
                "check --endpoint and that the server is running",
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(
                None,
                f"LLM endpoint {url} did not answer with JSON",
                "point --endpoint at an OpenAI-compatible server",
            ) from None
    raise AssertionError("unreachable")


def _answer_text(reply: dict, url: str) -> str:
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise InputError(
            None,
            f"LLM endpoint {url} answered without choices[0].message.content",
            "point --endpoint at an OpenAI-compatible chat-completions server",
        ) from None
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            None,
            f"LLM endpoint {url} returned an empty answer",
            "try another model or more max_tokens",
        )
    return " ".join(text.split())


def describe_with_llm(
    symbols: Iterable[str],
    endpoint: str,
    model: str,
    n_samples: int = 3,
    api_key_env: str = "OPENAI_API_KEY",
    cache: Cache | None = None,
    *,
    prompt: str = GENE_PROMPT,
    temperature: float = 0.7,
    max_tokens: int = 300,
    timeout: float = 60.0,
    retries: int = 2,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Ask an OpenAI-compatible chat model to describe each gene, ``n_samples`` times.

    Parameters
    ----------
    symbols
        Gene symbols.
    endpoint
        Server base URL (``http://localhost:8000``, ``https://api.example.com/v1``) or the
        full ``.../v1/chat/completions`` URL.
    model
        Model name the server knows.
    n_samples
        Answers per gene (sampled at ``temperature``; SGN averages their embeddings).
    api_key_env
        Environment variable holding the API key; sent as a Bearer token when set.
    cache
        On-disk cache; each answer is keyed by (endpoint, model, symbol, prompt, sample
        index, temperature, max_tokens). Default: the user cache.
    prompt
        User prompt template with a ``{symbol}`` field.
    temperature, max_tokens, timeout, retries
        Request settings; 429 and 5xx answers and connection errors are retried with
        backoff ``retries`` times.
    progress
        Show a progress bar.

    Returns
    -------
    dict
        Symbol -> list of ``n_samples`` texts.

    Raises
    ------
    InputError
        When the endpoint cannot be reached or does not answer like a chat-completions API.
    """
    if n_samples < 1:
        raise InputError(None, f"n_samples={n_samples}", "ask for at least one sample")
    if "{symbol}" not in prompt:
        raise InputError(
            None, "the prompt has no {symbol} field", "put {symbol} where the gene name goes"
        )
    cache = cache if cache is not None else Cache()
    url = chat_url(endpoint)
    api_key = os.environ.get(api_key_env) or None
    genes = list(dict.fromkeys(symbols))
    out: dict[str, list[str]] = {g: [] for g in genes}
    jobs = [(g, i) for g in genes for i in range(n_samples)]
    for gene, i in progress_bar(jobs, progress=progress, desc="LLM descriptions", unit="answer"):
        user_prompt = prompt.format(symbol=gene)
        payload = {
            "model": model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt},
            ],
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": i,  # honoured by some servers; makes sample i reproducible there
        }
        parts = {
            "endpoint": url,
            "model": model,
            "symbol": gene,
            "system": SYSTEM_PROMPT,
            "prompt": user_prompt,
            "sample": i,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        text = cache.json(
            "llm_gene_text",
            parts,
            lambda p=payload: _answer_text(_post(url, p, api_key, timeout, retries), url),
        )
        out[gene].append(text)
    return out
