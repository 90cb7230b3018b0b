"""Run the research notebooks through papermill: ``python -m trader.research``.

Reads the list of notebooks and their parameters from ``notebooks/research.toml``,
executes each into ``runs/<UTC timestamp>/`` (under its own name, or the item's
``output`` name when a notebook runs twice) and exports HTML beside it. A failing
notebook stops the run with the failing cell and its error, and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from nbconvert import HTMLExporter

from trader import REPO_ROOT


def run_notebook(
    src: Path, out: Path, parameters: dict[str, Any], *, progress: bool = False
) -> None:
    """Execute ``src`` with ``parameters`` into ``out`` (and ``out`` with ``.html``);
    ``progress`` shows papermill's per-cell progress bar (tqdm).

    Raises
    ------
    papermill.PapermillExecutionError
        If a cell fails; it names the cell and the error.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(src),
        str(out),
        parameters=parameters,
        cwd=str(REPO_ROOT),
        progress_bar=progress,
        kernel_name="python3",
    )
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(out, as_version=4))
    out.with_suffix(".html").write_text(html)


def main(argv: list[str] | None = None) -> int:
    """Run every notebook of the parameters file; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m trader.research", description=__doc__)
    p.add_argument("--params", type=Path, default=REPO_ROOT / "notebooks/research.toml")
    p.add_argument("--out", type=Path, help="run folder (default runs/<UTC timestamp>)")
    a = p.parse_args(argv)
    run_dir = a.out or REPO_ROOT / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with open(a.params, "rb") as f:
        plan = tomllib.load(f)["notebook"]
    for item in plan:
        src = REPO_ROOT / item["path"]
        params = {
            k: (v.replace("{run_dir}", str(run_dir)) if isinstance(v, str) else v)
            for k, v in item.get("parameters", {}).items()
        }
        out = run_dir / item.get("output", src.name)
        print(f"running {item['path']} -> {out}", flush=True)
        try:
            run_notebook(src, out, params, progress=sys.stderr.isatty())
        except pm.PapermillExecutionError as e:
            print(
                f"FAILED {item['path']} cell {e.cell_index}: {e.ename}: {e.evalue}\n"
                f"executed copy: {out}",
                file=sys.stderr,
            )
            return 1
    print(f"research run complete: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
