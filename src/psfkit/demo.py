"""``psfkit demo``: the whole pipeline on the bundled sample data, checked against the truth.

Four steps, each calling the real core: estimate the kernel of a sample pair, fit a Gaussian
to the same pair, prepare a PSF from a photo of an out-of-focus LED, and deconvolve a blurred
fluorescence image. Results go to TIFF files and a PNG summary; a table compares each result
with the known truth. A step whose capability is still being built says so in its row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import samples
from .metrics import image_error, kernel_error


@dataclass
class _Demo:
    """What the steps of a demo share: the output folder, the summary figure's panels (in
    the order they are shown) and the numbers measured."""

    output: Path
    panels: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def save(self, name: str, image: np.ndarray, panel: str | None = None) -> None:
        """Write ``image`` to ``<name>.tif`` and, given a ``panel`` title, show it."""
        import tifffile

        tifffile.imwrite(self.output / f"{name}.tif", image)
        if panel is not None:
            self.panels[panel] = image


@dataclass(frozen=True)
class _Outcome:
    """One row of the table: what a step produced and how it compares with the truth."""

    result: str
    check: str


def _step(rows: list, name: str, run) -> bool:
    """Run one step and add its row to ``rows``; ``True`` when it failed."""
    start = time.perf_counter()
    try:
        outcome = run()
    except NotImplementedError as error:
        rows.append((name, "not built yet", str(error), ""))
        return False
    except Exception as error:  # the demo reports and continues with the next step
        rows.append((name, "FAILED", f"{type(error).__name__}: {error}", ""))
        return True
    seconds = time.perf_counter() - start
    rows.append((name, outcome.result, outcome.check, f"{seconds:.2f} s"))
    return False


def _estimate(demo: _Demo, pair: dict) -> _Outcome:
    """Estimate the kernel of the sample pair; compare kernel and shift with the truth."""
    from .estimate import estimate_kernel

    truth = pair["truth"]
    result = estimate_kernel(pair["sharp"], pair["blurred"])
    demo.save("estimated_kernel", result.kernel, "estimated kernel")
    demo.save("residual", result.residual, "residual")
    error = kernel_error(result.kernel, truth["kernel"])
    shift_error = float(np.max(np.abs(np.asarray(result.shift) - truth["shift"])))
    demo.metrics.update(kernel_error=error, shift_error=shift_error,
                        residual_ratio=float(result.residual_ratio))
    return _Outcome(f"kernel {result.kernel.shape}, residual/noise "
                    f"{result.residual_ratio:.2f}",
                    f"kernel error {error:.3f}, shift error {shift_error:.3f} px")


def _fit(demo: _Demo, pair: dict) -> _Outcome:
    """Fit a Gaussian to the sample pair; compare its sigma with the truth."""
    from .fit import fit_kernel

    truth = pair["truth"]
    result = fit_kernel(pair["sharp"], pair["blurred"], "gaussian")
    sigma = float(np.ravel(result.params["sigma"])[0])
    error = float(np.ravel(result.errors["sigma"])[0])
    demo.metrics.update(sigma=sigma, sigma_error=error)
    demo.save("fitted_kernel", result.kernel)
    return _Outcome(f"sigma {sigma:.3f} ± {error:.3f} px",
                    f"true sigma {truth['sigma']:.3f} px "
                    f"({abs(sigma / truth['sigma'] - 1) * 100:.2f} % off)")


def _prepare(demo: _Demo, led: dict) -> _Outcome:
    """Prepare a PSF from the LED photo; compare it with the true LED PSF."""
    from .psf import prepare_psf

    psf = prepare_psf(led["image"])
    demo.panels["LED photo"] = led["image"]
    demo.save("prepared_psf", psf, "prepared PSF")
    error = kernel_error(psf, led["truth"]["psf"])
    demo.metrics.update(psf_error=error)
    return _Outcome(f"PSF {psf.shape}, sum {psf.sum():.3f}",
                    f"PSF error {error:.3f} against the true LED PSF")


def _restore(demo: _Demo, cells: dict) -> _Outcome:
    """Deconvolve the blurred cells; compare the error before and after with the truth."""
    from .deconvolution import deconvolve

    restored = deconvolve(cells["blurred"], cells["psf"])
    demo.panels["blurred cells"] = cells["blurred"]
    demo.save("deconvolved", restored, "deconvolved")
    before = image_error(cells["blurred"], cells["truth"]["image"])
    after = image_error(restored, cells["truth"]["image"])
    demo.metrics.update(deconvolved_error=after, blurred_error=before)
    return _Outcome(f"{restored.shape} {restored.dtype}",
                    f"image error {after:.3f} (blurred input: {before:.3f})")


def run_demo(output="psfkit-demo", *, show_table: bool = True) -> dict:
    """Run the pipeline and write TIFFs and ``summary.png`` into ``output``.

    Returns the measured numbers (``metrics``), the table ``rows`` and the ``exit_code``
    (1 if a step failed, 0 otherwise; a step still being built is not a failure). An
    ``output`` that is a file is a ``ValueError``; a folder that cannot be created, an
    ``OSError``.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"the demo's output {output} is a file; name a folder for its "
                         f"results")
    output.mkdir(parents=True, exist_ok=True)
    pair = samples.sample_pair()
    led = samples.sample_point_source()
    cells = samples.sample_blurred_image()
    truth = pair["truth"]
    demo = _Demo(output, panels={"sharp": pair["sharp"], "blurred": pair["blurred"],
                                 "true kernel": truth["kernel"]})
    demo.save("sharp", pair["sharp"])
    demo.save("blurred", pair["blurred"])
    rows: list[tuple[str, str, str, str]] = []
    steps = [("estimate kernel", lambda: _estimate(demo, pair)),
             ("fit Gaussian", lambda: _fit(demo, pair)),
             ("prepare PSF (LED)", lambda: _prepare(demo, led)),
             ("deconvolve", lambda: _restore(demo, cells))]
    failed = [_step(rows, name, run) for name, run in steps]
    _summary_figure(demo.panels, output / "summary.png")
    if show_table:
        noise = f"noise sigma {truth['noise_sigma']:.4f} (1 % of range), shift {truth['shift']}"
        print(f"psfkit demo — sample pair: Gaussian blur sigma {truth['sigma']} px, {noise}")
        _print_table(rows)
        print(f"results written to {output.resolve()}")
    return {"metrics": demo.metrics, "rows": rows, "exit_code": 1 if any(failed) else 0}


def _print_table(rows) -> None:
    header = ("step", "result", "against the truth", "time")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def _summary_figure(panels: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(panels)
    columns = 4
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (title, image) in zip(axes.ravel(), panels.items(), strict=False):
        axis.imshow(image, cmap="magma" if "kernel" in title or "PSF" in title else "gray")
        axis.set_title(title)
    figure.suptitle("psfkit demo: sample data against the known truth")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
