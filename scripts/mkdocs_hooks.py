"""
mkdocs hook (mkdocs.yml ``hooks:``): the learning benchmark's plots become site files under
``img/learning/`` straight from ``benchmarks/learning/results/``, so the Results page always shows the
plots the benchmark last wrote, without a copy in ``docs/``.
"""

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PLOTS = Path(__file__).resolve().parents[1] / "benchmarks" / "learning" / "results"


def on_files(files: Files, config: Any) -> Files:
    for plot in sorted(PLOTS.glob("*.png")):
        files.append(File.generated(config, f"img/learning/{plot.name}", abs_src_path=str(plot)))
    return files
