"""Issue #17's "done when": per public function, how many distinct inputs the property
suites tried and how many of the calls gave a finite result or a clear error.

Runs ``tests/test_contract.py`` (the non-deconvolution core) and
``tests/test_contract_deconvolution.py`` (deconvolution, frames, chunked, the CLI, the
widgets' checks) in this process with pytest, then reads the counts their property
(``tests/_contract.py``) keeps, and writes ``benchmarks/results/contract.md``. A call that
breaks the contract fails its test, so a complete table with every test passed means every
call tried gave a finite result or a clear error. It takes two to three minutes on two
cores.

    PYTHONPATH=src python benchmarks/contract_counts.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("tests/test_contract.py", "tests/test_contract_deconvolution.py")
RESULT = ROOT / "benchmarks" / "results" / "contract.md"


class _TestOutcomes:
    """A pytest plugin that records each test's outcome."""

    def __init__(self):
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome


def run_suites() -> tuple[int, dict[str, str], float]:
    """Run the property suites; their exit status, each test's outcome and the seconds."""
    plugin = _TestOutcomes()
    started = time.perf_counter()
    status = pytest.main(["-q", "-p", "no:cacheprovider", *(str(ROOT / s) for s in SUITES)],
                         plugins=[plugin])
    return int(status), plugin.outcomes, time.perf_counter() - started


def table(outcomes, seen, messages) -> list[str]:
    """The Markdown rows: function, distinct inputs, calls, finite, clear error, others, and
    the most common error."""
    rows = ["| function | distinct inputs | calls | finite result | clear error | "
            "neither | most common error |", "|---|---:|---:|---:|---:|---:|---|"]
    for function in sorted(outcomes):
        counts = outcomes[function]
        calls = sum(counts.values())
        clear = counts["finite"] + counts["error"]
        common = messages[function].most_common(1)
        common = f"`{common[0][0]}` ({common[0][1]})" if common else ""
        rows.append(f"| {function} | {len(seen[function])} | {calls} | {counts['finite']} | "
                    f"{counts['error']} | {calls - clear} | {common} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(RESULT), help="the Markdown file")
    args = parser.parse_args(argv)
    status, tests, seconds = run_suites()
    sys.path.insert(0, str(ROOT / "tests"))
    import _contract  # the module pytest imported: it holds the counts

    passed = sum(outcome == "passed" for outcome in tests.values())
    lines = [
        "# Contract counts (issue #17)",
        "",
        f"`benchmarks/contract_counts.py`: the property suites {', '.join(SUITES)} run with "
        f"hypothesis derandomized (the same inputs every run), {passed} of {len(tests)} "
        f"tests passed (pytest exit status {status}) in {seconds:.0f} s on "
        f"{platform.machine()} with Python {platform.python_version()}.",
        "",
        "A call counts as *finite* when it returned finite results of the documented shape "
        "and dtype, as a *clear error* when it raised `ValueError`/`TypeError` naming one of "
        "its arguments; in both cases no input was modified. *Neither* would be a call that "
        "broke the contract (its test then fails). *Distinct inputs* counts different "
        "argument values (hypothesis may repeat an input).",
        "",
        *table(_contract.OUTCOMES, _contract.SEEN, _contract.MESSAGES),
        "",
        "The CLI row counts `psfkit deconvolve` runs in-process: *finite* is exit code 0 and a "
        "finite float32 TIFF, *clear error* exit code 2 with one line on stderr and no file.",
    ]
    failed = sorted(name for name, outcome in tests.items() if outcome != "passed")
    if failed:
        lines += ["", "Tests that failed:", "", *(f"- `{name}`" for name in failed)]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
