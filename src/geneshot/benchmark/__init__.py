"""The honest benchmark: config schema, fold planning, runner + result store, statistics, verdict,
acceptance, and where each model's maps leave the common pattern (departure).

Tables and the HTML report come from :func:`geneshot.report.write_benchmark`, which takes
the result of :func:`run_benchmark` as data::

    res = run_benchmark("configs/her2st_zero_shot.yaml", data_dir, out)
    write_benchmark(out, res.aggregate, res.config, res.provenance, res.maps)
"""

from geneshot.benchmark._acceptance import acceptance, acceptance_summary
from geneshot.benchmark._aggregate import aggregate
from geneshot.benchmark._config import DEFAULT_CONFIG, resolve_config
from geneshot.benchmark._departure import against_common, departure_bins, departure_table
from geneshot.benchmark._fold import code_hash, run_key
from geneshot.benchmark._plan import FoldPlan, plan_folds, section_split
from geneshot.benchmark._runner import BenchmarkResult, run_benchmark
from geneshot.benchmark._verdict import verdict

__all__ = [
    "DEFAULT_CONFIG",
    "BenchmarkResult",
    "FoldPlan",
    "acceptance",
    "acceptance_summary",
    "against_common",
    "aggregate",
    "code_hash",
    "departure_bins",
    "departure_table",
    "plan_folds",
    "resolve_config",
    "run_benchmark",
    "run_key",
    "section_split",
    "verdict",
]
