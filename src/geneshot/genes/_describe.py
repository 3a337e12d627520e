"""Gene descriptions: sentences built from the knowledge table, or the user's own texts."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from geneshot.errors import InputError
from geneshot.genes._knowledge import load_knowledge, resolve_symbol, split_list

STYLES = ("full", "short", "function")

_TYPE_PHRASE = {
    "protein-coding": "a protein-coding gene",
    "ncRNA": "a non-coding RNA gene",
    "pseudo": "a pseudogene",
    "rRNA": "a ribosomal RNA gene",
    "tRNA": "a transfer RNA gene",
    "snRNA": "a small nuclear RNA gene",
    "snoRNA": "a small nucleolar RNA gene",
    "scRNA": "a small cytoplasmic RNA gene",
    "biological-region": "a genomic region",
}


def _field(entry: Mapping | pd.Series, key: str) -> str:
    value = entry.get(key, "") if hasattr(entry, "get") else ""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def build_description(
    entry: Mapping | pd.Series,
    style: str = "full",
    max_terms: int | None = 8,
    max_aliases: int = 4,
) -> str:
    """A readable description of one gene from its knowledge-table row.

    Parameters
    ----------
    entry
        A row of :func:`load_knowledge` (or any mapping with its column names; ``symbol``
        is required, the rest may be missing or empty).
    style
        ``"full"``: identity, aliases, GO processes / functions / components and Pfam
        domains. ``"short"``: identity sentence only. ``"function"``: identity plus
        processes and functions (no location, aliases or domains).
    max_terms
        At most this many GO terms per ontology (the table keeps the strongest first);
        None keeps all stored terms.
    max_aliases
        At most this many aliases in ``"full"`` style.

    Returns
    -------
    str
        E.g. ``"ERBB2 (erb-b2 receptor tyrosine kinase 2) is a protein-coding gene on
        17q12. Also known as: HER2, NEU. Biological processes: ...; Molecular functions:
        ...; Located in: ...; Domains (Pfam): ..."``
    """
    if style not in STYLES:
        raise InputError(
            None, f"unknown description style {style!r}", f"use one of: {', '.join(STYLES)}"
        )
    symbol = _field(entry, "symbol") or str(getattr(entry, "name", "") or "")
    if not symbol:
        raise InputError(
            None, "gene entry has no 'symbol'", "pass a row of geneshot.genes.load_knowledge()"
        )
    name = _field(entry, "name")
    gtype = _TYPE_PHRASE.get(_field(entry, "type"), "a gene")
    bands = split_list(_field(entry, "cytoband"))
    head = f"{symbol} ({name})" if name and name != symbol else symbol
    where = f" on {' and '.join(bands[:2])}" if bands else ""
    parts = [f"{head} is {gtype}{where}."]
    if style == "short":
        return parts[0]

    def terms(key: str) -> list[str]:
        t = split_list(_field(entry, key))
        return t if max_terms is None else t[:max_terms]

    if style == "full" and (aliases := split_list(_field(entry, "aliases"))[:max_aliases]):
        parts.append(f"Also known as: {', '.join(aliases)}.")
    sections = [("Biological processes", terms("go_bp")), ("Molecular functions", terms("go_mf"))]
    if style == "full":
        sections += [
            ("Located in", terms("go_cc")),
            ("Domains (Pfam)", split_list(_field(entry, "pfam"))),
        ]
    body = "; ".join(f"{label}: {', '.join(items)}" for label, items in sections if items)
    if body:
        parts.append(body + ".")
    return " ".join(parts)


def load_descriptions(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a user description file: gene symbol -> one or more texts.

    Parameters
    ----------
    path
        ``.json``: an object ``{"SYMBOL": "text", ...}`` (a value may also be a list of
        texts, e.g. several LLM samples). ``.tsv``/``.txt``: two tab-separated columns,
        symbol and text, with an optional header ``symbol<TAB>description``; a symbol may
        repeat to give several texts.

    Raises
    ------
    InputError
        When the file is missing, unparsable, or has an empty symbol or text.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(
            p,
            "description file does not exist",
            "pass a .json or .tsv file mapping gene symbol to text",
        )
    out: dict[str, list[str]] = {}
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(
                p, f"not valid JSON ({err})", 'write an object like {"ERBB2": "text", ...}'
            ) from None
        if not isinstance(data, dict):
            raise InputError(
                p,
                f"top-level JSON is a {type(data).__name__}, not an object",
                'write an object like {"ERBB2": "text", ...}',
            )
        for sym, value in data.items():
            texts = [value] if isinstance(value, str) else value
            if (
                not isinstance(texts, list)
                or not texts
                or not all(isinstance(t, str) and t.strip() for t in texts)
            ):
                raise InputError(
                    p,
                    f"entry {sym!r}: value must be a non-empty text or a list of texts",
                    "give each gene a non-empty string (or list of strings)",
                )
            if not str(sym).strip():
                raise InputError(
                    p, "an entry has an empty gene symbol", "remove it or name the gene"
                )
            out[str(sym).strip()] = [t.strip() for t in texts]
        return out
    if p.suffix.lower() not in {".tsv", ".txt", ".tab"}:
        raise InputError(p, f"unsupported description file type {p.suffix!r}", "use .json or .tsv")
    try:
        with open(p, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except UnicodeDecodeError as err:
        raise InputError(p, f"not UTF-8 text ({err})", "save the file as UTF-8") from None
    if rows and rows[0] and rows[0][0].strip().lower() in {"symbol", "gene", "gene_symbol"}:
        rows = rows[1:]
        start = 2
    else:
        start = 1
    for lineno, row in enumerate(rows, start):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise InputError(
                p,
                f"line {lineno}: expected 'symbol<TAB>description'",
                "give every line a gene symbol and a non-empty text separated by one tab",
            )
        out.setdefault(row[0].strip(), []).append(row[1].strip())
    if not out:
        raise InputError(
            p, "no descriptions found", "write one 'symbol<TAB>description' line per gene"
        )
    return out


@dataclass
class DescriptionReport:
    """Where each gene's text came from.

    Attributes
    ----------
    n_genes
        Genes asked for.
    from_source
        Genes whose text came from the user's file.
    from_knowledge
        Genes whose text was built from the knowledge table.
    renamed
        Input name -> canonical symbol, for names that are not current symbols.
    thin
        Genes found in the table but without GO terms (their text is short).
    missing
        Genes without any annotation (text is the bare symbol, or dropped).
    """

    n_genes: int = 0
    from_source: list[str] = field(default_factory=list)
    from_knowledge: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    thin: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        """Fraction of genes with an annotation (source or knowledge table)."""
        return 1.0 if self.n_genes == 0 else 1 - len(self.missing) / self.n_genes

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"{self.n_genes} genes: {len(self.from_knowledge)} from the knowledge table "
            f"({len(self.thin)} without GO terms), {len(self.from_source)} from the description file, "
            f"{len(self.missing)} without annotation ({self.coverage:.1%} covered)"
        )


def describe_genes(
    symbols: Iterable[str],
    source: str | os.PathLike | Mapping[str, str | list[str]] | None = None,
    missing: Literal["symbol", "drop"] = "symbol",
    style: str = "full",
    max_terms: int | None = 8,
) -> tuple[dict[str, str], DescriptionReport]:
    """Describe genes: the user's texts where given, else the knowledge table.

    Parameters
    ----------
    symbols
        Gene names (count-table columns); keys of the result keep these names.
    source
        Optional user texts overriding and extending the table: a ``.json``/``.tsv`` file
        (see :func:`load_descriptions`) or a mapping. Keys match the input name or its
        canonical symbol. A list of texts contributes its first text.
    missing
        For genes with no annotation: ``"symbol"`` uses the bare symbol as text, ``"drop"``
        leaves them out of the result.
    style, max_terms
        Passed to :func:`build_description`.

    Returns
    -------
    texts, report
        Input name -> description, and a :class:`DescriptionReport`.
    """
    if missing not in ("symbol", "drop"):
        raise InputError(
            None, f"missing={missing!r} is not supported", "use missing='symbol' or missing='drop'"
        )
    if source is None:
        user: dict[str, list[str]] = {}
    elif isinstance(source, Mapping):
        user = {str(k): [v] if isinstance(v, str) else list(v) for k, v in source.items()}
    else:
        user = load_descriptions(source)
    # Also key user texts by canonical symbol, so "HER2" in the file matches "ERBB2".
    user_canon = {c: v for k, v in user.items() if (c := resolve_symbol(k)) is not None}
    kb = load_knowledge()

    texts: dict[str, str] = {}
    report = DescriptionReport()
    for sym in dict.fromkeys(symbols):
        report.n_genes += 1
        canon = resolve_symbol(sym)
        if canon is not None and canon != sym:
            report.renamed[sym] = canon
        given = user.get(sym) or (user_canon.get(canon) if canon else None)
        if given:
            texts[sym] = given[0]
            report.from_source.append(sym)
        elif canon is not None:
            row = kb.loc[canon]
            texts[sym] = build_description(row, style=style, max_terms=max_terms)
            report.from_knowledge.append(sym)
            if not (row["go_bp"] or row["go_mf"] or row["go_cc"]):
                report.thin.append(sym)
        else:
            report.missing.append(sym)
            if missing == "symbol":
                texts[sym] = sym
    return texts, report
