"""The results files of the table-style benchmarks: ``<out>.json`` (``{"meta", "rows"}``) and
``<out>.md`` (the rendered table), and the command line that wrote them."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional


def command(script: str, argv: Optional[List[str]]) -> str:
    """``python benchmarks/<script> <arguments>``: what a results file says produced it."""
    return f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)


def write(out: Path, meta: dict, rows: list, text: str) -> None:
    """Write ``out.json`` and ``out.md`` (creating the folder), and print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(text)
    print(text)
