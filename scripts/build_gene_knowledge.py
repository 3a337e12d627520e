#!/usr/bin/env python
"""Build ``src/geneshot/resources/gene_knowledge.tsv.gz`` from Bioconductor's annotation packages.

Debian ships Bioconductor's human gene annotation (``r-bioc-org.hs.eg.db``) and the Gene
Ontology (``r-bioc-go.db``) as SQLite files inside R packages; no R is needed to read them.
This script downloads both ``.deb`` files with ``apt-get download`` (run ``apt-get update``
once before), unpacks them into a temporary folder, and writes one row per human gene:

    symbol, entrez, name, type, cytoband, aliases, go_bp, go_mf, go_cc, pfam

List fields are joined with ``|``. GO terms are ranked by the strength of their best
evidence (experimental > curated > electronic), then by how many evidence codes support
them, then by specificity (terms annotated to fewer genes first); each list is capped.

It also rewrites ``GENE_KNOWLEDGE_SOURCES.md`` with package versions, source dates and
licences.

Usage::

    apt-get update
    python scripts/build_gene_knowledge.py [--debs DIR] [--cap 12]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import gzip
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "geneshot" / "resources" / "gene_knowledge.tsv.gz"
SOURCES = ROOT / "src" / "geneshot" / "resources" / "GENE_KNOWLEDGE_SOURCES.md"
PACKAGES = ("r-bioc-org.hs.eg.db", "r-bioc-go.db")
ORG_SQLITE = "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
GO_SQLITE = "usr/lib/R/site-library/GO.db/extdata/GO.sqlite"
COLUMNS = (
    "symbol",
    "entrez",
    "name",
    "type",
    "cytoband",
    "aliases",
    "go_bp",
    "go_mf",
    "go_cc",
    "pfam",
)

# Evidence tiers (lower is stronger). See geneontology.org's guide to evidence codes.
EXPERIMENTAL = {"EXP", "IDA", "IPI", "IMP", "IGI", "IEP", "HTP", "HDA", "HMP", "HGI", "HEP"}
CURATED = {"TAS", "IC", "NAS", "ISS", "ISO", "ISA", "ISM", "IGC", "IBA", "IBD", "IKR", "IRD", "RCA"}
ELECTRONIC = {"IEA"}
# Names used by count tables built on Ensembl/GENCODE annotations that NCBI does not list as
# aliases. AP000769.1 is Ensembl ENSG00000279576, a gene model of the MALAT1 locus; it is
# among the most highly expressed "genes" of the HER2+ tables, which lack MALAT1 itself.
EXTRA_ALIASES = {"MALAT1": ["AP000769.1"]}
# Terms that every gene has or that say nothing about what a gene does.
UNINFORMATIVE = {
    "protein binding",
    "biological_process",
    "molecular_function",
    "cellular_component",
}


def tier(code: str) -> int | None:
    """Evidence tier of a GO evidence code; None for 'no data' (ND) and unknown codes."""
    if code in EXPERIMENTAL:
        return 0
    if code in CURATED:
        return 1
    if code in ELECTRONIC:
        return 2
    return None


def fetch_debs(dest: Path) -> dict[str, Path]:
    """``apt-get download`` the two packages into ``dest``; return package -> .deb path."""
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=dest, check=True)
    out = {}
    for pkg in PACKAGES:
        found = sorted(dest.glob(f"{pkg}_*.deb"))
        if not found:
            sys.exit(f"{pkg}: no .deb after apt-get download (run `apt-get update` first)")
        out[pkg] = found[-1]
    return out


def deb_version(deb: Path) -> str:
    """The Debian package version recorded in a .deb."""
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def clean(text: str) -> str:
    """One-line text safe for a TSV field and for the ``|`` list separator."""
    return " ".join(str(text).replace("|", "/").split())


def ranked_go(
    org: sqlite3.Connection, terms: dict[str, str], table: str, cap: int
) -> dict[int, list[str]]:
    """Gene id -> GO term names of one ontology, strongest evidence first, at most ``cap``."""
    per_gene: dict[int, dict[str, list[int]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    genes_per_term: collections.Counter[str] = collections.Counter()
    for gid, go_id, code in org.execute(f"SELECT _id, go_id, evidence FROM {table}"):
        t = tier(code)
        name = terms.get(go_id)
        if t is None or name is None or name in UNINFORMATIVE:
            continue
        if go_id not in per_gene[gid]:
            genes_per_term[go_id] += 1
        per_gene[gid][go_id].append(t)
    out = {}
    for gid, by_term in per_gene.items():
        order = sorted(
            by_term, key=lambda g: (min(by_term[g]), -len(by_term[g]), genes_per_term[g], terms[g])
        )
        out[gid] = [clean(terms[g]) for g in order[:cap]]
    return out


def build(org_path: Path, go_path: Path, cap: int) -> tuple[list[list[str]], dict[str, str]]:
    """Rows of the knowledge table and the source metadata of org.Hs.eg.db."""
    org = sqlite3.connect(f"file:{org_path}?mode=ro", uri=True)
    go = sqlite3.connect(f"file:{go_path}?mode=ro", uri=True)
    meta = dict(org.execute("SELECT name, value FROM metadata"))
    meta.update({f"GO.db {k}": v for k, v in go.execute("SELECT name, value FROM metadata")})
    terms = dict(go.execute("SELECT go_id, term FROM go_term"))

    info = org.execute(
        "SELECT g._id, g.gene_id, i.symbol, i.gene_name FROM genes g JOIN gene_info i ON g._id = i._id ORDER BY i.symbol"
    )
    gtype = dict(org.execute("SELECT _id, gene_type FROM genetype"))
    bands: dict[int, list[str]] = collections.defaultdict(list)
    for gid, band in org.execute("SELECT _id, cytogenetic_location FROM cytogenetic_locations"):
        if band not in bands[gid]:
            bands[gid].append(band)
    symbols = dict(org.execute("SELECT _id, symbol FROM gene_info"))
    aliases: dict[int, list[str]] = collections.defaultdict(list)
    for gid, alias in org.execute("SELECT _id, alias_symbol FROM alias ORDER BY _id, alias_symbol"):
        if alias != symbols.get(gid) and alias not in aliases[gid]:
            aliases[gid].append(alias)
    by_symbol = {s: gid for gid, s in symbols.items()}
    for sym, extra in EXTRA_ALIASES.items():
        aliases[by_symbol[sym]].extend(a for a in extra if a not in aliases[by_symbol[sym]])
    pfam: dict[int, list[str]] = collections.defaultdict(list)
    for gid, pid in org.execute(
        "SELECT _id, pfam_id FROM pfam WHERE pfam_id IS NOT NULL ORDER BY _id, pfam_id"
    ):
        if pid not in pfam[gid]:
            pfam[gid].append(pid)
    go_lists = {t: ranked_go(org, terms, t, cap) for t in ("go_bp", "go_mf", "go_cc")}

    rows = []
    for gid, entrez, symbol, name in info:
        rows.append(
            [
                clean(symbol),
                str(entrez),
                clean(name),
                gtype.get(gid, "unknown"),
                "|".join(bands.get(gid, [])),
                "|".join(clean(a) for a in aliases.get(gid, [])),
                *("|".join(go_lists[t].get(gid, [])) for t in ("go_bp", "go_mf", "go_cc")),
                "|".join(pfam.get(gid, [])),
            ]
        )
    return dedupe(rows), meta


def dedupe(rows: list[list[str]]) -> list[list[str]]:
    """One row per symbol: a few symbols (HBD, TEC, tRNAs) name several Entrez records.

    Keep the record with a known gene type, then the one with the most GO terms, then the
    oldest (lowest Entrez id), and return the rows sorted by symbol.
    """

    def rank(r: list[str]) -> tuple:
        n_terms = sum(len(f.split("|")) for f in r[6:9] if f)
        return (r[3] in ("unknown", "biological-region"), -n_terms, int(r[1]))

    best: dict[str, list[str]] = {}
    for r in rows:
        if r[0] not in best or rank(r) < rank(best[r[0]]):
            best[r[0]] = r
    return [best[s] for s in sorted(best)]


def write_sources(versions: dict[str, str], meta: dict[str, str], n_rows: int, cap: int) -> None:
    """Record where the table came from, and under which licences."""
    today = dt.date.today().isoformat()
    extra = "; ".join(f"{k}: {', '.join(v)}" for k, v in EXTRA_ALIASES.items())
    text = f"""# Sources of `gene_knowledge.tsv.gz`

Built {today} by `scripts/build_gene_knowledge.py` ({n_rows} human genes; GO lists capped at {cap} terms).

| source | Debian package (version) | data date | licence |
|---|---|---|---|
| Bioconductor org.Hs.eg.db (NCBI Entrez Gene: symbols, names, aliases, gene types, cytobands; Pfam ids; GO annotations) | `r-bioc-org.hs.eg.db` ({versions["r-bioc-org.hs.eg.db"]}) | Entrez Gene {meta.get("EGSOURCEDATE", "?")}, GO annotations {meta.get("GOEGSOURCEDATE", "?")}, UniProt/Pfam {meta.get("UPSOURCEDATE", "?")} | Artistic-2.0 |
| Bioconductor GO.db (Gene Ontology term names) | `r-bioc-go.db` ({versions["r-bioc-go.db"]}) | GO {meta.get("GO.db GOSOURCEDATE", "?")} | Gene Ontology: CC BY 4.0 |

Gene Ontology data: the Gene Ontology Consortium, http://geneontology.org (CC BY 4.0).
Pfam domain names are not part of org.Hs.eg.db, so the table carries Pfam accessions only.
Aliases added by the script (Ensembl clone names that NCBI does not list): {extra}.

Columns (tab separated, lists joined with `|`): `{"`, `".join(COLUMNS)}`.
GO terms are ordered by their strongest evidence (experimental, then curated, then IEA), then by the
number of evidence codes supporting them, then by specificity; 'no data' (ND) annotations and
uninformative terms (e.g. "protein binding") are left out.
"""
    SOURCES.write_text(text)


def main(argv: list[str] | None = None) -> None:
    """Download, read and write; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--debs", type=Path, default=None, help="folder already holding the two .deb files"
    )
    ap.add_argument("--cap", type=int, default=12, help="GO terms kept per gene and ontology")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.debs:
            debs = {p: sorted(args.debs.glob(f"{p}_*.deb"))[-1] for p in PACKAGES}
        else:
            debs = fetch_debs(tmp)
        for deb in debs.values():
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], check=True)
        versions = {p: deb_version(d) for p, d in debs.items()}
        rows, meta = build(tmp / "x" / ORG_SQLITE, tmp / "x" / GO_SQLITE, args.cap)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    part = args.out.with_name(args.out.name + ".part")
    # mtime=0 keeps the gzip bytes reproducible for identical content
    with (
        open(part, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz,
    ):
        gz.write(("\t".join(COLUMNS) + "\n").encode())
        for r in rows:
            gz.write(("\t".join(r) + "\n").encode())
    os.replace(part, args.out)
    write_sources(versions, meta, len(rows), args.cap)
    print(f"wrote {args.out} ({len(rows)} genes, {args.out.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
