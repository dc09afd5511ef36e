"""Run ``psfkit demo`` and keep its summary figure and table for the docs.

Writes docs/figures/demo_summary.png and docs/demo_output.txt.
"""

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from psfkit.demo import run_demo

DOCS = Path(__file__).resolve().parents[1]

with tempfile.TemporaryDirectory() as folder:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_demo(folder)
    shutil.copy(Path(folder) / "summary.png", DOCS / "figures" / "demo_summary.png")
lines = [line for line in printed.getvalue().splitlines() if not line.startswith("results")]
(DOCS / "demo_output.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
