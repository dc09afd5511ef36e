"""psfkit: find the blur between images and undo it.

Three jobs, one package: estimate the kernel between a sharp and a blurred image
(:func:`estimate_kernel`, :func:`fit_kernel`), turn a photo of a bead, LED or star into a
clean PSF (:func:`prepare_psf`, :func:`average_beads`), and deconvolve an image with a PSF
(:func:`deconvolve`). The core is plain NumPy/SciPy and never imports napari or Qt; the
napari plugin lives in ``psfkit._napari``.
"""

__version__ = "0.1.0"

from .align import estimate_shift
from .beads import BeadAverage, average_beads
from .chunked import deconvolve_chunked
from .deconvolution import deconvolve
from .deconvolver import Deconvolver
from .defocus import defocus_diameter
from .estimate import KernelEstimate, estimate_kernel
from .fit import KernelFit, fit_kernel
from .io import (
    ImageFile,
    PsfMapFile,
    load_psf,
    load_psf_map,
    read_image,
    save_psf,
    save_psf_map,
    write_image,
)
from .maps import estimate_kernel_map, fit_kernel_map
from .models import MODELS, make_psf
from .noise import noise_sigma
from .operators import Convolver, convolve
from .optics import confocal_psf, widefield_psf
from .profiles import Profile, axial_profile, radial_profile
from .psf import (
    BackgroundWarning,
    PsfReport,
    PsfWarning,
    SaturationWarning,
    TruncationWarning,
    prepare_psf,
)
from .psf_map import PsfMap
from .units import UndersamplingWarning, resample_psf

__all__ = [
    "MODELS",
    "BackgroundWarning",
    "BeadAverage",
    "Convolver",
    "Deconvolver",
    "ImageFile",
    "KernelEstimate",
    "KernelFit",
    "Profile",
    "PsfMap",
    "PsfMapFile",
    "PsfReport",
    "PsfWarning",
    "SaturationWarning",
    "TruncationWarning",
    "UndersamplingWarning",
    "__version__",
    "average_beads",
    "axial_profile",
    "confocal_psf",
    "convolve",
    "deconvolve",
    "deconvolve_chunked",
    "defocus_diameter",
    "estimate_kernel",
    "estimate_kernel_map",
    "estimate_shift",
    "fit_kernel",
    "fit_kernel_map",
    "load_psf",
    "load_psf_map",
    "make_psf",
    "noise_sigma",
    "prepare_psf",
    "radial_profile",
    "read_image",
    "resample_psf",
    "save_psf",
    "save_psf_map",
    "widefield_psf",
    "write_image",
]
