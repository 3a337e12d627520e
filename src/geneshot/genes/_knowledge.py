"""The shipped gene knowledge table and symbol resolution.

The table (``resources/gene_knowledge.tsv.gz``, built by ``scripts/build_gene_knowledge.py``
from Bioconductor's org.Hs.eg.db and GO.db) has one row per human gene symbol with its
full name, gene type, cytoband, aliases, ranked GO term names and Pfam accessions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

KNOWLEDGE_FILE = "gene_knowledge.tsv.gz"
LIST_COLUMNS = ("aliases", "go_bp", "go_mf", "go_cc", "pfam", "cytoband")
LIST_SEP = "|"

# R's make.unique() turns a duplicated column "ATRIP" into "ATRIP.1" (HER2+ count tables).
_DUP_SUFFIX = re.compile(r"^(.+)\.\d+$")
# Spreadsheets turn SEPT2 / MARCH1 / DEC1 into dates ("2-Sep"); undo the common ones.
_EXCEL_DATE = re.compile(r"^(\d{1,2})-(SEP|MAR|DEC)$", re.IGNORECASE)
_EXCEL_PREFIX = {"SEP": "SEPT", "MAR": "MARCH", "DEC": "DEC"}
# Types whose records are rarely what a count table means when an alias is shared.
_WEAK_TYPES = {"unknown", "biological-region", "other"}


@lru_cache(maxsize=1)
def load_knowledge() -> pd.DataFrame:
    """The shipped gene knowledge table, indexed by symbol (loaded once per process).

    Returns
    -------
    DataFrame
        Columns ``entrez, name, type, cytoband, aliases, go_bp, go_mf, go_cc, pfam`` (all
        strings; list fields joined with ``|``, empty when unknown); index ``symbol``.
        Treat it as read-only: it is shared by every caller in the process.
    """
    ref = resources.files("geneshot.resources").joinpath(KNOWLEDGE_FILE)
    with resources.as_file(ref) as path:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    return df.set_index("symbol", drop=False)


def split_list(value: str) -> list[str]:
    """A ``|``-joined table field as a list (empty field -> empty list)."""
    return value.split(LIST_SEP) if value else []


@dataclass(frozen=True)
class _Index:
    """Lookup tables for :func:`resolve_symbols`."""

    symbols: frozenset[str]
    upper_symbol: dict[str, str]
    # alias -> candidate genes as (symbol, type, entrez); several genes may share an alias
    alias: dict[str, list[tuple[str, str, int]]]
    upper_alias: dict[str, list[tuple[str, str, int]]]


@lru_cache(maxsize=1)
def _index() -> _Index:
    kb = load_knowledge()
    alias: dict[str, list[tuple[str, str, int]]] = {}
    upper_alias: dict[str, list[tuple[str, str, int]]] = {}
    upper_symbol: dict[str, str] = {}
    for sym, gtype, entrez, aliases in zip(
        kb["symbol"], kb["type"], kb["entrez"].astype(int), kb["aliases"]
    ):
        cand = (sym, gtype, entrez)
        upper_symbol.setdefault(sym.upper(), sym)
        for a in split_list(aliases):
            alias.setdefault(a, []).append(cand)
            upper_alias.setdefault(a.upper(), []).append(cand)
    return _Index(frozenset(kb["symbol"]), upper_symbol, alias, upper_alias)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _pick(name: str, cands: list[tuple[str, str, int]]) -> str:
    """The gene most likely meant by an alias that several genes share.

    org.Hs.eg.db does not say which alias is a former official symbol. Heuristics that
    get most HER2+ cases right (QARS -> QARS1, TAZ -> TAFAZZIN, GBA -> GBA1): skip
    placeholder records and pseudogenes, prefer the symbol sharing the longest prefix with
    the alias, then protein-coding genes, then the oldest record (lowest Entrez id).
    """
    if len(cands) == 1:
        return cands[0][0]
    up = name.upper()
    return min(
        cands,
        key=lambda c: (
            c[1] in _WEAK_TYPES,
            c[1] == "pseudo",
            -_common_prefix(up, c[0].upper()),
            c[1] != "protein-coding",
            c[2],
        ),
    )[0]


def _lookup(name: str, idx: _Index) -> str | None:
    if name in idx.symbols:
        return name
    if name in idx.alias:
        return _pick(name, idx.alias[name])
    up = name.upper()
    if up in idx.upper_symbol:
        return idx.upper_symbol[up]
    if up in idx.upper_alias:
        return _pick(name, idx.upper_alias[up])
    return None


def resolve_symbol(symbol: str) -> str | None:
    """Canonical symbol of one gene name, or None; see :func:`resolve_symbols`."""
    idx = _index()
    name = str(symbol).strip()
    if not name:
        return None
    hit = None
    if name.upper().startswith("MT-"):
        # mitochondrial genes: NCBI names MT-CO1 "COX1" with the alias MTCO1 (and gives
        # "MT-CO2" as an alias of a nuclear pseudogene), so try the hyphen-less form first
        hit = _lookup("MT" + name[3:], idx)
    if hit is None:
        hit = _lookup(name, idx)
    if hit is None and (m := _EXCEL_DATE.match(name)):
        hit = _lookup(_EXCEL_PREFIX[m.group(2).upper()] + m.group(1), idx)
    if hit is None and (m := _DUP_SUFFIX.match(name)):
        hit = _lookup(m.group(1), idx)
    return hit


def resolve_symbols(symbols: Iterable[str]) -> dict[str, str | None]:
    """Map gene names to canonical symbols of the knowledge table.

    Tried in order: exact symbol, exact alias (a current symbol always wins over another
    gene's alias), case-insensitive symbol, case-insensitive alias, spreadsheet dates
    (``2-Sep`` -> SEPT2), mitochondrial names (``MT-CO1`` -> COX1) and R's duplicate
    suffix (``ATRIP.1`` -> ATRIP). An alias shared by several genes goes to the most likely
    one (see ``_pick``). Old symbols such
    as ``FAM132A`` resolve through the alias list (to ``C1QTNF12``).

    Parameters
    ----------
    symbols
        Gene names as they appear in a count table or a gene list.

    Returns
    -------
    dict
        Each input name -> its canonical symbol, or None when it is unknown.
    """
    return {s: resolve_symbol(s) for s in symbols}
