"""The input contract of the deconvolution side, checked on awkward inputs drawn by hypothesis.

The same property as ``test_contract.py`` (``_contract.holds_contract``): a call either
returns finite results of the documented shape and dtype, or raises
``ValueError``/``TypeError`` whose message names one of its arguments, and no input is
modified. In scope: :func:`psfkit.deconvolve` (every method and keyword),
:func:`psfkit.frames.deconvolve_frames` and :func:`psfkit.frames.map_frames`,
:func:`psfkit.deconvolve_chunked` (chunks, depth, sample, plan, out, on local schedulers),
the argument checks of ``psfkit deconvolve`` (in-process :func:`psfkit.cli.main`: a bad
argument is exit code 2 and one line on stderr, never a traceback or a file) and the
widgets' input checks that are plain functions.

The images are small (at most a few thousand samples) and the iteration counts low, so that
the whole module runs in well under a minute; hypothesis runs derandomized, so every run
tries the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import tempfile
import types

import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

from _contract import (  # noqa: F401 (outcome_table is an autouse fixture)
    BAD_SCALARS,
    MAGNITUDES,
    MESSAGES,
    OUTCOMES,
    SEEN,
    arrays,
    contract_settings,
    holds_contract,
    is_float_array,
    message_kind,
    outcome_table,
    parameter_names,
    scaled,
)
from psfkit import convolve, deconvolve, deconvolve_chunked, make_psf
from psfkit.chunked import plan_chunked
from psfkit.cli import main
from psfkit.deconvolution import DEFAULT_TUNING, METHODS
from psfkit.frames import FramesRun, deconvolve_frames, map_frames

PSF_2D = make_psf("gaussian", (5, 5), sigma=1.0)
PSF_3D = make_psf("gaussian", (3, 5, 5), sigma=1.0)

#: The shapes of the valid scenes: small, so that an automatic run takes milliseconds.
SCENE_SHAPES = {2: (24, 24), 3: (6, 16, 16)}


def blurred_scene(shape, psf, seed: int, noise: float = 0.01) -> np.ndarray:
    """A random scene of ``shape`` blurred by ``psf``, with a little Gaussian noise."""
    rng = np.random.default_rng(seed)
    return convolve(rng.random(shape), psf) + noise * rng.standard_normal(shape)


@st.composite
def usually(draw, ordinary, unusual):
    """A value of the strategy ``ordinary`` three times in four, else one of ``unusual``:
    most calls then reach the computation, and each refusal is still seen often."""
    return draw(unusual if draw(st.integers(0, 3)) == 3 else ordinary)


@st.composite
def bad_psfs(draw, ndim: int):
    """A PSF that cannot be used with a ``ndim``-D image: zero, negative, larger than the
    image, of another dimensionality, or awkward (NaN, object, masked...)."""
    image_shape = SCENE_SHAPES[ndim]
    return draw(st.one_of(
        st.just(np.zeros((5,) * ndim)),
        st.just(-np.ones((5,) * ndim)),
        st.just(np.ones(tuple(n + 2 for n in image_shape))),
        st.just(PSF_3D if ndim == 2 else PSF_2D),
        st.just(np.ones((1,) * ndim)),  # a delta: valid
        arrays(min_dims=1, max_dims=4),
    ))


@st.composite
def images_and_psfs(draw):
    """A blurred 2D or 3D scene and its PSF, each made awkward half of the time, the scene
    rescaled to an extreme magnitude some of the time."""
    ndim = draw(st.sampled_from((2, 3)))
    psf = PSF_2D if ndim == 2 else PSF_3D
    image = blurred_scene(SCENE_SHAPES[ndim], psf, draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        image = scaled(image, draw(st.sampled_from(MAGNITUDES)))
    image = draw(usually(st.just(image), arrays(min_dims=1, max_dims=5)))
    return image, draw(usually(st.just(psf), bad_psfs(ndim)))


def stop_at_once(step, total, current):
    """A callback that stops the run after its first step."""
    return False


def keep_going(step, total, current):
    """A callback that lets the run go on (returns None, which is not False)."""


CALLBACKS = (None, stop_at_once, keep_going)

#: Keyword values of deconvolve: valid ones first, then bad ones (BAD_SCALARS are added).
DECONVOLVE_KEYWORDS = dict(
    iterations=(None, 3, 5.0, 10**12),
    regularization=("auto", 1e-3, 1e6, 1e7, 1e300, "nope"),
    smoothing=("auto", 1e-3, 1e300),
    acceleration=("geometric", "biggs_andrews", "nope"),
    acceleration_steps=(None, [0.5] * 3, [100.0] * 5, [], ["x"], [float("nan")]),
    regularization_schedule=(None, [0.01] * 3, [1e300], [], ["x"], [float("nan")]),
    background=(None, 0.0, 0.1, 1e300),
    read_noise=(None, 0.01, 1e-30),
    gain=(None, 0.0, 1e-3, 1e30),
    callback=(*CALLBACKS, 5),
    tuning=(DEFAULT_TUNING, {}),
)


@st.composite
def keyword_values(draw, keywords: dict, most_varied: int = 3):
    """A dict with a value for every keyword of ``keywords``: its first (ordinary) value,
    but for up to ``most_varied`` drawn keywords one of their other values or of
    :data:`BAD_SCALARS`. Most calls so vary one or two keywords (the others valid), and
    some vary none, so that the valid paths are run as well as each refusal."""
    values = {name: options[0] for name, options in keywords.items()}
    varied = draw(st.lists(st.sampled_from(sorted(keywords)), max_size=most_varied,
                           unique=True))
    for name in varied:
        values[name] = draw(st.sampled_from(tuple(keywords[name][1:]) + BAD_SCALARS))
    return values


def methods():
    """Every method of deconvolve, or a bad one."""
    return usually(st.sampled_from(METHODS), st.sampled_from((*BAD_SCALARS, "nope")))


def deconvolved_like(image, return_info: bool = False):
    """A check that a result is a float32 image of ``image``'s shape (with its info)."""
    def check(result):
        if return_info:
            result, info = result
            assert info.method in METHODS, info.method
        is_float_array(result, shape=np.shape(image))
    return check


@contract_settings(examples=400)
@given(pair=images_and_psfs(), method=methods(), keywords=keyword_values(DECONVOLVE_KEYWORDS),
       return_info=st.booleans())
def test_deconvolve_returns_a_finite_image_or_names_the_bad_argument(pair, method, keywords,
                                                                      return_info):
    image, psf = pair
    holds_contract(deconvolve, dict(image=image, psf=psf, method=method, **keywords,
                                    return_info=return_info),
                   deconvolved_like(image, return_info))


@st.composite
def stacks(draw):
    """A stack of 2D frames (time or channels on one or two leading axes) whose first frame
    may be all zero or constant, or (half of the time) an awkward array or a list."""
    seed = draw(st.integers(0, 2**16))
    leading = draw(st.sampled_from(((3,), (2, 2))))
    frames = [blurred_scene((16, 16), PSF_2D, seed + i) for i in range(int(np.prod(leading)))]
    first = draw(st.sampled_from(("signal", "zeros", "constant")))
    if first != "signal":
        frames[0] = np.zeros_like(frames[0]) + (first == "constant")
    stack = np.stack(frames).reshape((*leading, 16, 16))
    return draw(st.one_of(st.just(stack), arrays(min_dims=1, max_dims=5),
                          st.just(stack.tolist())))


def outputs_for(shape):
    """Valid and invalid ``out`` arrays for a result of ``shape``."""
    return (None, np.zeros(shape, np.float32), np.zeros(shape, np.int16),
            np.zeros((3, 3), np.float32), [0.0])


FRAMES_KEYWORDS = dict(
    psf=(PSF_2D, PSF_3D, np.zeros((5, 5)), np.ones((17, 17))),
    method=("wiener", "richardson_lucy", "auto", "nope"),
    iterations=(3, 10**12), regularization=("auto", 1e-2), background=(None, 0.0),
    callback=(*CALLBACKS, 5), in_blocks=(None, False, True),
)


@contract_settings(examples=150)
@given(data=st.data(), stack=stacks(), keywords=keyword_values(FRAMES_KEYWORDS))
def test_deconvolve_frames_returns_finite_frames_or_names_the_bad_argument(data, stack,
                                                                           keywords):
    out = data.draw(usually(st.none(), st.sampled_from(outputs_for(np.shape(stack)))),
                    label="out")

    def check(run):
        assert isinstance(run, FramesRun)
        is_float_array(run.result, shape=np.shape(stack))
        assert out is None or run.result is out

    holds_contract(deconvolve_frames, dict(stack=stack, out=out, **keywords), check,
                   names={"stack", "psf", "out", "callback", "in_blocks", "method",
                          "iterations", "regularization", "background", "image",
                          "frame", "sample"})


def doubled_frame(frame, callback):
    """A frame function for map_frames: the frame times two, its report the frame's sum; a
    frame that is not finite in float32 is refused, as psfkit's functions refuse it."""
    with np.errstate(over="ignore"):
        frame = np.asarray(frame, dtype=np.float32)
    if not np.isfinite(frame).all():
        raise ValueError("stack holds a frame that is not finite in float32")
    return 2 * frame, float(frame.sum(dtype=np.float64))


def wrong_shape(frame, callback):
    """A frame function that returns one value instead of a frame."""
    return np.zeros(1), None


MAP_KEYWORDS = dict(
    function=(doubled_frame, wrong_shape, 5), spatial_ndim=(2, 1, 3, 0, 6, 2.0),
    callback=(*CALLBACKS, 5), steps_per_frame=(1, 10, 0, 1.5),
)


@contract_settings(examples=300)
@given(data=st.data(), stack=arrays(min_dims=2, max_dims=5, dtypes=("uint8", "float32"),
                                    contents=("noise", "zeros", "constant")),
       keywords=keyword_values(MAP_KEYWORDS))
def test_map_frames_returns_every_frame_or_names_the_bad_argument(data, stack, keywords):
    out = data.draw(usually(st.none(), st.sampled_from(outputs_for(np.shape(stack)))),
                    label="out")

    def check(run):
        assert isinstance(run, FramesRun)
        is_float_array(run.result, shape=np.shape(stack),
                       dtype=np.float32 if out is None else out.dtype)
        if run.complete:
            np.testing.assert_array_equal(run.result, 2 * np.asarray(stack, np.float32))

    holds_contract(map_frames, dict(stack=stack, out=out, **keywords), check)


CHUNKED_KEYWORDS = dict(
    psf=(PSF_2D, PSF_3D, np.zeros((5, 5)), np.ones((33, 33))),
    method=("wiener", "richardson_lucy", "auto", "nope"),
    plan=(None, "x", "plan"),
    chunks=(None, 16, (16, 16), "auto", 0, (0, 16), "x", (16.0, 16), (16,), (16, 16, 16)),
    depth=(None, 2, 100, (2, 2, 2)),
    sample=(None, (slice(0, 16), slice(0, 16)), "x", (slice(0, 0), slice(0, 0)),
            (slice(0, 4), slice(0, 4), slice(0, 4), slice(0, 4)), (0, 0)),
    scheduler=(None, "synchronous", "threads", "nope"),
    callback=(*CALLBACKS, 5),
    iterations=(3, 10**12),
    regularization=("auto", 1e-2, float("nan")),
)


@st.composite
def chunked_images(draw):
    """A 2D scene, a stack of scenes whose first frame is all zero (issue #17's silent data
    loss), or an awkward array."""
    seed = draw(st.integers(0, 2**16))
    scene = blurred_scene((32, 32), PSF_2D, seed)
    stack = np.stack([0 * scene, scene, scene])
    return draw(st.one_of(st.sampled_from((scene, stack)), arrays(min_dims=1, max_dims=4)))


@contract_settings(examples=200)
@given(data=st.data(), image=chunked_images(), keywords=keyword_values(CHUNKED_KEYWORDS),
       compute=st.booleans())
def test_deconvolve_chunked_returns_a_finite_image_or_names_the_bad_argument(
        data, image, keywords, compute):
    out = data.draw(usually(st.none(), st.sampled_from(outputs_for(np.shape(image)))),
                    label="out")
    if isinstance(keywords["plan"], str) and keywords["plan"] == "plan":  # for another image
        keywords["plan"] = plan_chunked(np.ones((8, 8)) + np.eye(8), PSF_2D, "wiener",
                                        regularization=1e-2)

    def check(result):
        is_float_array(result, shape=np.shape(image),
                       dtype=np.float32 if out is None or not compute else out.dtype)
        assert out is None or not compute or result is out

    def call(**arguments):  # a lazy result's errors come when it is computed
        result = deconvolve_chunked(**arguments)
        return result if compute else result.compute()

    holds_contract(call, dict(image=image, out=out, compute=compute, **keywords), check,
                   names=parameter_names(deconvolve_chunked), function="deconvolve_chunked")


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def tiff_folder():
    """A folder with a valid image, PSF and stack TIFF, a broken TIFF and a subfolder."""
    with tempfile.TemporaryDirectory() as folder:
        image = blurred_scene((24, 24), PSF_2D, 0)
        tifffile.imwrite(os.path.join(folder, "image.tif"), image.astype(np.float32))
        tifffile.imwrite(os.path.join(folder, "stack.tif"),
                         np.stack([0 * image, image]).astype(np.float32))
        tifffile.imwrite(os.path.join(folder, "psf.tif"), PSF_2D)
        tifffile.imwrite(os.path.join(folder, "big_psf.tif"), np.ones((31, 31), np.float32))
        with open(os.path.join(folder, "broken.tif"), "wb") as broken:
            broken.write(b"II*\x00 not a tiff")
        os.mkdir(os.path.join(folder, "folder"))
        yield folder


#: Option values of ``psfkit deconvolve``: the first is the ordinary one (None: left out).
CLI_OPTIONS = {
    "--method": (None, "wiener", "richardson_lucy", "nope", ""),
    "--iterations": ("3", "0", "-1", "nan", "1e12", "1000000000000", "x", "5.0"),
    "--regularization": (None, "1e-2", "nan", "inf", "-1", "x", "1e300", "auto"),
    "--background": (None, "nan", "inf", "0", "x", "1e300"),
    "--memory-limit": (None, "0", "-1", "nan", "inf", "2"),
    "--chunks": (None, "auto", "0", "16,16", "x", "16,0", "16,16,16", "16.5"),
    "--depth": (None, "-1", "x", "2", "1000"),
    "--scheduler": (None, "synchronous", "nope"),
}
CLI_FILES = {
    "image": ("image.tif", "stack.tif", "missing.tif", "broken.tif", "folder"),
    "psf": ("psf.tif", "big_psf.tif", "image.tif", "missing.tif", "broken.tif"),
    "output": ("new", "folder", "image.tif", "missing/out.tif"),
}

_output_names = itertools.count()


def run_cli(argv) -> tuple[int, str]:
    """``psfkit`` run in this process: its exit code and what it wrote to stderr."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse exits on bad arguments
            code = exit_.code
    return code, stderr.getvalue()


@contract_settings(examples=200)
@given(options=keyword_values(CLI_OPTIONS),
       files=keyword_values(CLI_FILES, most_varied=1), quiet=st.booleans())
def test_the_cli_writes_a_finite_tiff_or_exits_2_with_one_line(tiff_folder, options, files,
                                                               quiet):
    def at(name):
        return os.path.join(tiff_folder, str(name))

    image, psf, output = files["image"], files["psf"], files["output"]

    if output == "new":
        output = f"out{next(_output_names)}.tif"
    argv = ["deconvolve", at(image), "--psf", at(psf), "-o", at(output)]
    for option, value in options.items():
        if value is not None and not isinstance(value, str):
            value = repr(value)  # a bad scalar, as a user might type it
        if value is not None:
            argv += [option, value]
    argv += ["-q"] if quiet else []
    existed = os.path.exists(at(output))
    SEEN["cli deconvolve"].add(tuple(argv[1:]))
    code, stderr = run_cli(argv)
    assert code in (0, 2), (code, stderr)
    if code == 0:
        written_path = at(output)
        if os.path.isdir(written_path):  # -o FOLDER: the output is written into it
            names = [name for name in os.listdir(written_path) if name.endswith(".tif")]
            assert len(names) == 1, names
            written_path = os.path.join(written_path, names[0])
        written = tifffile.imread(written_path)
        is_float_array(written, shape=tifffile.imread(at(image)).shape)
        assert np.isfinite(written).all()
        os.remove(written_path)
        os.remove(written_path + ".json")
        OUTCOMES["cli deconvolve"]["finite"] += 1
    else:
        # one error line; before it, at most the line saying which voxel size was assumed
        lines = [line for line in stderr.strip().splitlines() if "give no voxel size" not in line]
        assert len(lines) == 1 and lines[0].startswith("psfkit deconvolve: error: "), stderr
        assert existed or not os.path.exists(at(output)), "an output was left behind"
        OUTCOMES["cli deconvolve"]["error"] += 1
        reason = lines[0].split("error: ", 1)[1].replace("--", "")  # "argument iterations: ..."
        MESSAGES["cli deconvolve"][message_kind(reason)] += 1
    leftovers = [name for name in os.listdir(tiff_folder) if name.startswith(".")]
    assert not leftovers, leftovers


# --------------------------------------------------------------------------- widgets

napari_widget = pytest.importorskip("psfkit._napari._deconvolve_widget")
napari_common = pytest.importorskip("psfkit._napari._common")


MODEL_KEYWORDS = dict(model=("gaussian", "airy", "disk", "nope"),
                      size=(2.0, 1e300, 1e-30, 1e6, 500.0), axial_size=(0.0, 1.5, 1e300))


@contract_settings(examples=200)
@given(keywords=keyword_values(MODEL_KEYWORDS, most_varied=2))
def test_the_model_psf_is_finite_or_says_what_is_wrong(keywords):
    axial_size = keywords["axial_size"]
    def check(result):
        is_float_array(result, ndim=3 if axial_size else 2)
        assert abs(float(result.sum(dtype=np.float64)) - 1) < 1e-4

    holds_contract(napari_widget.model_psf, keywords, check,
                   names={"model", "size", "axial", "PSF"})


@contract_settings(examples=100)
@given(text=st.one_of(st.sampled_from(("auto", "", " Auto ", "1e-3", "0", "nan", "inf", "-inf",
                                       "-1", "x", "1e300", "1e6", "0x10", "1_000")),
                      st.text(max_size=8)))
def test_the_regularization_field_gives_a_usable_value_or_says_what_is_wrong(text):
    def check(result):
        assert result == "auto" or (isinstance(result, float) and 0 <= result < np.inf)

    holds_contract(napari_widget._regularization_value, dict(text=text), check,
                   names={"Regularization"})


def fake_layer(data, rgb: bool = False, name: str = "layer"):
    """What the widgets' checks read of an Image layer: its name, data and rgb flag."""
    return types.SimpleNamespace(name=name, data=data, rgb=rgb, multiscale=False)


@contract_settings(examples=300)
@given(data=usually(st.builds(lambda seed: blurred_scene((16, 16), PSF_2D, seed),
                              st.integers(0, 2**16)),
                    arrays(min_dims=1, max_dims=5)), rgb=st.booleans(),
       spatial_ndim=st.sampled_from((2, 3)), check=st.sampled_from(("image", "array")))
def test_a_layer_check_returns_a_usable_array_or_says_what_is_wrong(data, rgb, spatial_ndim,
                                                                    check):
    layer = fake_layer(data, rgb)

    def usable(result):
        array = np.asarray(result)
        assert np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)
        assert not np.ma.isMaskedArray(result) and array.size > 0

    if check == "image":
        holds_contract(napari_widget._check_image_layer,
                       dict(layer=layer, spatial_ndim=spatial_ndim), usable,
                       names={"layer"}, function="widget image layer check")
    else:
        holds_contract(napari_common.layer_array, dict(layer=layer, role="image"), usable,
                       names={"layer"}, function="widget layer_array")
