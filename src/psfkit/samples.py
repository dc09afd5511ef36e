"""Synthetic data with a known truth: scenes, camera-like blurred pairs, bead images.

A real camera sees a scene that extends beyond its frame, so a blurred pair is made the way
a camera makes it: the whole scene is shifted and blurred, then *both* images are cropped to
the same window. Light from outside the window therefore enters the blurred image, which
is what breaks methods that assume periodic images. These generators feed the sample data,
the demo, the tests and the benchmarks, so all of them measure against the same truth.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi

from .operators import convolve, fourier_shift

SCENES = ("natural", "blobs", "stars")


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def scene(kind: str = "natural", shape=(256, 256), *, rng=0) -> np.ndarray:
    """A float32 test scene in [0, 1] (about): ``natural``, ``blobs`` or ``stars``.

    ``natural`` is a crop of scikit-image's bundled camera photograph (2D only), mirrored
    when a larger scene is asked for; ``blobs`` imitates fluorescent structures of several
    sizes; ``stars`` is a sparse star field with a power-law flux distribution on a sky level.
    """
    rng = _rng(rng)
    shape = tuple(int(n) for n in shape)
    if kind == "natural":
        if len(shape) != 2:
            raise ValueError("the natural scene is 2D only")
        from skimage import data

        photo = data.camera().astype(np.float32) / 255.0
        reps = [int(np.ceil(n / p)) for n, p in zip(shape, photo.shape, strict=True)]
        if any(r > 1 for r in reps):
            photo = np.pad(photo, [(0, (r - 1) * p) for r, p in zip(reps, photo.shape,
                                                                       strict=True)],
                           mode="symmetric")
        start = [(p - n) // 2 for p, n in zip(photo.shape, shape, strict=True)]
        return np.ascontiguousarray(
            photo[tuple(slice(s, s + n) for s, n in zip(start, shape, strict=True))])
    if kind == "blobs":
        image = np.zeros(shape, dtype=np.float32)
        volume = float(np.prod(shape))
        for size, density in ((0.8, 4e-3), (2.0, 1e-3), (5.0, 2e-4)):
            points = np.zeros(shape, dtype=np.float32)
            count = max(1, int(density * volume))
            index = tuple(rng.integers(0, n, count) for n in shape)
            np.add.at(points, index, rng.uniform(0.3, 1.0, count).astype(np.float32))
            image += ndi.gaussian_filter(points, size) * (2 * np.pi * size**2) ** (len(shape) / 2)
        image = image / max(float(image.max()), 1e-12) + 0.05
        return image.astype(np.float32)
    if kind == "stars":
        image = np.full(shape, 0.02, dtype=np.float32)
        count = max(3, int(1.5e-3 * np.prod(shape)))
        index = tuple(rng.integers(0, n, count) for n in shape)
        flux = (rng.pareto(1.5, count) + 1).astype(np.float32) * 0.05
        np.add.at(image, index, np.minimum(flux, 5.0))
        return image
    raise ValueError(f"unknown scene {kind!r}; choose from {SCENES}")


def jpeg_roundtrip(image: np.ndarray, quality: int = 85) -> np.ndarray:
    """Quantise a 2D image to 8 bits and pass it through JPEG compression at ``quality``."""
    from PIL import Image

    low, high = float(image.min()), float(image.max())
    scale = (high - low) or 1.0
    eight_bit = np.clip(np.round((image - low) / scale * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(eight_bit).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32)
    return decoded / 255 * scale + low


@dataclass
class BlurredPair:
    """A sharp image, its blurred counterpart, and the truth that relates them.

    ``blurred = gain * (kernel * shift(sharp_scene, shift)) + offset + noise``, with both
    images cropped from a larger scene to the same window.
    """

    sharp: np.ndarray
    blurred: np.ndarray
    kernel: np.ndarray
    shift: np.ndarray
    gain: float
    offset: float
    noise_sigma: float
    notes: dict = field(default_factory=dict)


def blurred_pair(
    kernel: np.ndarray,
    shape=(256, 256),
    *,
    scene_kind: str = "natural",
    scene_image: np.ndarray | None = None,
    noise: float = 0.01,
    poisson_photons: float | None = None,
    jpeg_quality: int | None = None,
    gain: float = 1.0,
    offset: float = 0.0,
    shift=(0.0, 0.0),
    rng=0,
) -> BlurredPair:
    """A camera-like pair: blur (and shift) a larger scene, then crop both to ``shape``.

    Parameters
    ----------
    kernel : ndarray
        The true kernel (odd shape, unit sum is not required).
    noise : float
        Standard deviation of added Gaussian noise, as a fraction of the blurred image's
        range.
    poisson_photons : float, optional
        If given, the blurred image is scaled so its maximum collects this many photons,
        Poisson-sampled, and scaled back.
    jpeg_quality : int, optional
        If given, the blurred image goes through JPEG compression (2D only).
    gain, offset : float
        Intensity change between the sharp and blurred images.
    shift : sequence of float
        Translation of the blurred image relative to the sharp one, in pixels.
    """
    rng = _rng(rng)
    kernel = np.asarray(kernel, dtype=np.float32)
    shape = tuple(int(n) for n in shape)
    shift = np.broadcast_to(np.asarray(shift, dtype=float), (len(shape),)).copy()
    margin = [k // 2 + int(np.ceil(abs(s))) + 8 for k, s in zip(kernel.shape, shift,
                                                                  strict=True)]
    big_shape = [n + 2 * m for n, m in zip(shape, margin, strict=True)]
    if scene_image is None:
        big = scene(scene_kind, big_shape, rng=rng)
    else:
        big = np.asarray(scene_image, dtype=np.float32)
        if any(b < n for b, n in zip(big.shape, big_shape, strict=True)):
            raise ValueError(f"scene_image must be at least {big_shape}")
        big = big[tuple(slice(0, n) for n in big_shape)]
    window = tuple(slice(m, m + n) for m, n in zip(margin, shape, strict=True))
    sharp = big[window].copy()
    moved = fourier_shift(big, shift, edges="mirror") if np.any(shift) else big
    blurred = convolve(moved, kernel, mode="same")[window]
    blurred = gain * blurred + offset
    if poisson_photons is not None:
        scale = poisson_photons / max(float(blurred.max()), 1e-12)
        blurred = rng.poisson(np.clip(blurred, 0, None) * scale).astype(np.float32) / scale
    sigma = noise * float(blurred.max() - blurred.min())
    if sigma > 0:
        blurred = blurred + rng.normal(0.0, sigma, blurred.shape).astype(np.float32)
    if jpeg_quality is not None:
        blurred = jpeg_roundtrip(blurred, jpeg_quality)
    return BlurredPair(sharp=sharp, blurred=blurred.astype(np.float32), kernel=kernel,
                       shift=shift, gain=float(gain), offset=float(offset), noise_sigma=sigma)


def soft_disk(radius: float, blur: float = 0.7) -> np.ndarray:
    """A defocus disk of ``radius`` px seen through a lens whose in-focus blur is a Gaussian
    of ``blur`` px: the PSF of a real out-of-focus camera, unit sum, odd shape."""
    from .models import make_psf

    size = 2 * int(radius + 4 * blur) + 3
    disk = convolve(make_psf("disk", (size, size), radius=radius),
                    make_psf("gaussian", (9, 9), sigma=blur), mode="same")
    disk = np.clip(disk, 0, None)
    return (disk / disk.sum()).astype(np.float32)


def point_source_frame(
    psf: np.ndarray,
    centre,
    shape=(80, 80),
    *,
    flux: float = 60000.0,
    background: float = 120.0,
    read_noise: float = 4.0,
    hot_pixels=((6, 60), (70, 9), (25, 20)),
    hot_value: float = 5000.0,
    rng=0,
) -> np.ndarray:
    """A camera frame of one point source (an LED, a star, a bead) imaged through ``psf``.

    The source collects ``flux`` photons at the sub-pixel ``centre``; the frame adds a
    ``background`` level, shot noise on everything, Gaussian read noise and hot pixels,
    given as a sequence of indices or as a count of randomly placed ones.
    """
    rng = _rng(rng)
    psf = np.asarray(psf, dtype=np.float32)
    image = np.zeros(shape, dtype=np.float32)
    whole = np.round(centre).astype(int)
    half = np.array(psf.shape) // 2
    stamp = fourier_shift(np.pad(psf, 4) * flux, np.asarray(centre) - whole, edges="mirror")
    box = tuple(slice(w - h - 4, w + h + 5) for w, h in zip(whole, half, strict=True))
    image[box] += np.clip(stamp, 0, None)
    image = rng.poisson(image + background).astype(np.float32)
    image += rng.normal(0, read_noise, shape).astype(np.float32)
    if np.isscalar(hot_pixels):
        hot_pixels = [tuple(rng.integers(0, n) for n in shape) for _ in range(int(hot_pixels))]
    for index in hot_pixels:
        image[tuple(index)] = hot_value
    return image


def bead_image(
    psf: np.ndarray,
    shape=(256, 256),
    *,
    count: int = 12,
    peak_snr: float = 20.0,
    background: float = 100.0,
    peak: float = 1000.0,
    min_distance: int | None = None,
    rng=0,
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-resolution beads at random sub-pixel positions, imaged through ``psf``.

    Returns the image (float32, background + beads + Gaussian noise scaled so the peak of a
    bead is ``peak_snr`` times the noise) and the true bead centres, one row per bead.
    """
    rng = _rng(rng)
    psf = np.asarray(psf, dtype=np.float32)
    shape = tuple(int(n) for n in shape)
    margin = np.array(psf.shape) // 2 + 2
    min_distance = int(min_distance or 2 * max(psf.shape))
    centres: list[np.ndarray] = []
    for _ in range(count * 200):
        if len(centres) == count:
            break
        candidate = np.array([rng.uniform(m, n - 1 - m) for m, n in zip(margin, shape,
                                                                          strict=True)])
        if all(np.max(np.abs(candidate - c)) >= min_distance for c in centres):
            centres.append(candidate)
    image = np.zeros(shape, dtype=np.float32)
    stamp = psf / psf.max() * peak
    half = np.array(psf.shape) // 2
    for centre in centres:
        whole = np.round(centre).astype(int)
        moved = fourier_shift(stamp, centre - whole, edges="mirror")
        region = tuple(slice(w - h, w + h + 1) for w, h in zip(whole, half, strict=True))
        image[region] += moved
    noise = peak / peak_snr
    image += background + rng.normal(0.0, noise, shape).astype(np.float32)
    return image, np.array(centres)


# -- the bundled sample data (napari's File > Open Sample, and `psfkit demo`) -------------


def sample_pair(rng=1) -> dict:
    """Sharp and blurred crops of the camera photograph, with the truth that relates them.

    The blur is a Gaussian of sigma 2 px; the blurred image is shifted by (0.4, -0.7) px, has
    gain 0.9, offset 0.05 and 1 % Gaussian noise, and the scene runs off every frame edge.
    """
    from .models import make_psf

    sigma = 2.0
    kernel = make_psf("gaussian", (17, 17), sigma=sigma)
    pair = blurred_pair(kernel, (320, 320), scene_kind="natural", noise=0.01, gain=0.9,
                        offset=0.05, shift=(0.4, -0.7), rng=rng)
    truth = {"kernel": kernel, "sigma": sigma, "shift": pair.shift.tolist(), "gain": pair.gain,
             "offset": pair.offset, "noise_sigma": pair.noise_sigma}
    return {"sharp": pair.sharp, "blurred": pair.blurred, "truth": truth}


def sample_point_source(rng=2) -> dict:
    """One out-of-focus LED in a dark frame: a defocus disk of radius 4.5 px softened by the
    lens (a Gaussian of sigma 0.7 px), off-centre by a fraction of a pixel, 40 000 photons on
    a background of 100 counts, shot and read noise, and three hot pixels."""
    psf = soft_disk(4.5, 0.7)
    centre = (30.3, 33.6)
    image = point_source_frame(psf, centre, (64, 64), flux=40000.0, background=100.0,
                               read_noise=3.0, hot_pixels=((5, 50), (55, 12), (20, 20)),
                               hot_value=4000.0, rng=rng)
    return {"image": image, "truth": {"psf": psf, "centre": list(centre), "radius": 4.5}}


def sample_beads(rng=3) -> dict:
    """Fifteen beads imaged through an Airy PSF (first zero at 2.5 px) at SNR 30."""
    from .models import make_psf

    psf = make_psf("airy", (15, 15), radius=2.5)
    image, centres = bead_image(psf, (256, 256), count=15, peak_snr=30.0, rng=rng)
    return {"image": image, "truth": {"psf": psf, "centres": centres.tolist()}}


def sample_blurred_image(rng=4) -> dict:
    """Fluorescence-like scene blurred by a Moffat PSF with Poisson noise (about 1000 photons
    at the peak) and a little read noise, plus the PSF and the sharp ground truth."""
    from .models import make_psf

    rng = _rng(rng)
    psf = make_psf("moffat", (25, 25), alpha=2.5, beta=2.5)
    pair = blurred_pair(psf, (256, 256), scene_kind="blobs", noise=0.002,
                        poisson_photons=1000.0, rng=rng)
    return {"blurred": pair.blurred, "psf": psf, "truth": {"image": pair.sharp}}


def sample_blurred_volume(rng=5) -> dict:
    """3D fluorescence-like volume with voxels of 0.3 × 0.1 × 0.1 µm, blurred by a Gaussian
    PSF of sigma (2.0, 1.5, 1.5) voxels, with Poisson noise (about 500 photons at the peak)."""
    from .models import make_psf

    rng = _rng(rng)
    psf = make_psf("gaussian", (13, 11, 11), sigma=(2.0, 1.5, 1.5))
    pair = blurred_pair(psf, (40, 128, 128), scene_kind="blobs", noise=0.002,
                        poisson_photons=500.0, shift=(0.0, 0.0, 0.0), rng=rng)
    return {"blurred": pair.blurred, "psf": psf, "truth": {"image": pair.sharp},
            "spacing": (0.3, 0.1, 0.1)}


@dataclass
class FieldBlurredPair:
    """A pair blurred by a Gaussian that changes across the field, with the truth at every
    pixel of ``blurred``: ``sigma`` (the minor axis, the whole width of an isotropic
    blur), ``sigma_major`` (the major axis) and ``angle`` (the major axis's direction, in
    the convention of the ``elliptical_gaussian`` model)."""

    sharp: np.ndarray
    blurred: np.ndarray
    sigma: np.ndarray
    sigma_major: np.ndarray
    angle: np.ndarray
    noise_sigma: float


def _pixel_gaussian_weights(sigma: np.ndarray, radius: int) -> np.ndarray:
    """``(..., 2 radius + 1)`` weights of a unit-sum Gaussian of width ``sigma`` (one per
    entry) integrated over each pixel of offsets ``-radius..radius``."""
    from scipy.special import ndtr

    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)[..., None]
    weights = ndtr((offsets + 0.5) / sigma) - ndtr((offsets - 0.5) / sigma)
    return weights / weights.sum(axis=-1, keepdims=True)


def _elliptical_weights(sigma_minor, sigma_major, angle, radius: int) -> np.ndarray:
    """``(..., K, K)`` unit-sum elliptical Gaussians, one per entry, integrated over each
    pixel: a pixel's box adds a variance of 1/12 per axis, and a Gaussian of covariance
    ``Σ + I/12`` matches the box-integrated one to far below a percent for ``σ >= 1``."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    dy, dx = offsets[:, None], offsets[None, :]
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    major = (sigma_major**2)[..., None, None]
    minor = (sigma_minor**2)[..., None, None]
    # covariance in (y, x): the major axis along (sin a, cos a)
    cyy = major * s * s + minor * c * c + 1 / 12
    cxx = major * c * c + minor * s * s + 1 / 12
    cxy = (major - minor) * s * c
    determinant = cyy * cxx - cxy * cxy
    exponent = (cxx * dy * dy - 2 * cxy * dy * dx + cyy * dx * dx) / determinant
    weights = np.exp(-0.5 * exponent)
    return weights / weights.sum(axis=(-2, -1), keepdims=True)


def field_blurred_pair(shape=(256, 256), sigma_range=(1.2, 3.0), *, astigmatism: float = 0.0,
                       sigma_z: float = 1.5, scene_kind="natural", noise: float = 0.01,
                       rng=0) -> FieldBlurredPair:
    """A pair blurred exactly per pixel by a Gaussian that changes across the field:
    ``blurred(p) = sum_q g_p(p - q) scene(q)``, the scene larger than the frame so light
    enters it from outside. Its width grows linearly from ``sigma_range[0]`` at the
    top-left corner to ``sigma_range[1]`` at the bottom-right one; with ``astigmatism``
    ``a > 0`` (px) it is elongated along the field angle (the direction from the image
    centre), its major axis ``sqrt(sigma² + (a r)²)`` at the relative field radius ``r``
    (1 in the corners): third-order (Seidel) astigmatism, whose second-moment difference
    grows with the square of the field height. ``noise`` is a fraction of the blurred
    image's range, as in :func:`blurred_pair`.

    A 3D ``shape`` ``(P, M, N)`` gives a volume (a ``"blobs"`` or ``"stars"`` scene) whose
    blur is that lateral Gaussian times an axial one of width ``sigma_z`` that does not
    change: the truth arrays are then lateral, ``(M, N)``, the same in every plane. Every
    Gaussian is integrated over each pixel."""
    rng = _rng(rng)
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (rows, cols) or (planes, rows, cols), got {shape!r}")
    rows, cols = shape[-2:]
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    position = (y / max(rows - 1, 1) + x / max(cols - 1, 1)) / 2
    sigma = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * position
    offset_y, offset_x = y - (rows - 1) / 2, x - (cols - 1) / 2
    radius_field = np.hypot(offset_y / max((rows - 1) / 2, 1), offset_x / max((cols - 1) / 2, 1))
    sigma_major = np.sqrt(sigma**2 + (astigmatism * radius_field / np.sqrt(2)) ** 2)
    angle = np.mod(np.arctan2(offset_y, offset_x), np.pi)
    radius = int(np.ceil(4 * float(sigma_major.max())))
    if len(shape) == 2:
        big = scene(scene_kind, (rows + 2 * radius, cols + 2 * radius), rng=rng)
        blurred = _field_blurred_plane(big.astype(np.float64), sigma, sigma_major, angle,
                                       radius, astigmatism)
        sharp = big[radius:radius + rows, radius:radius + cols]
    else:
        depth = int(np.ceil(4 * float(sigma_z)))
        big = scene(scene_kind, (shape[0] + 2 * depth, rows + 2 * radius, cols + 2 * radius),
                    rng=rng)
        # the axial blur does not change across the field: a valid correlation along z
        axial = _pixel_gaussian_weights(np.asarray(sigma_z), depth)
        planes = np.lib.stride_tricks.sliding_window_view(big.astype(np.float64),
                                                          2 * depth + 1, axis=0)
        blurred = np.stack([_field_blurred_plane(plane, sigma, sigma_major, angle, radius,
                                                 astigmatism)
                            for plane in planes @ axial])
        sharp = big[depth:depth + shape[0], radius:radius + rows, radius:radius + cols]
    sigma_noise = noise * float(blurred.max() - blurred.min())
    blurred += rng.normal(0.0, sigma_noise, blurred.shape)
    return FieldBlurredPair(sharp=sharp.astype(np.float32), blurred=blurred.astype(np.float32),
                            sigma=sigma.astype(np.float32),
                            sigma_major=sigma_major.astype(np.float32),
                            angle=angle.astype(np.float32), noise_sigma=sigma_noise)


def _field_blurred_plane(big: np.ndarray, sigma, sigma_major, angle, radius: int,
                         astigmatism: float) -> np.ndarray:
    """One plane of :func:`field_blurred_pair`: ``big`` (the frame plus ``radius`` on
    every side) blurred per pixel by the Gaussian of that pixel, on the frame."""
    rows, cols = sigma.shape
    windows = np.lib.stride_tricks.sliding_window_view(big, (2 * radius + 1,) * 2)
    blurred = np.empty((rows, cols))
    step = 16 if astigmatism == 0 else 4  # rows at a time keep the temporaries small
    for start in range(0, rows, step):
        block = slice(start, start + step)
        if astigmatism == 0:  # an isotropic Gaussian is separable
            weights = _pixel_gaussian_weights(sigma[block], radius)
            blurred[block] = np.einsum("rcij,rci,rcj->rc", windows[block], weights, weights,
                                       optimize=True)
        else:
            weights = _elliptical_weights(sigma[block], sigma_major[block], angle[block],
                                          radius)
            blurred[block] = np.einsum("rcij,rcij->rc", windows[block], weights)
    return blurred
