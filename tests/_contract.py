"""The machinery of the contract suites (``test_contract.py`` for the non-deconvolution
core, ``test_contract_deconvolution.py`` for the deconvolution side, the CLI and the
widgets' checks): hypothesis strategies for awkward arrays and keyword values, and
:func:`holds_contract`, the property every call must satisfy.

The property: a call either returns finite results of the documented shape and dtype, or
raises ``ValueError``/``TypeError`` whose message names one of the function's arguments; and
no input is modified. psfkit's own warnings (``PsfWarning``, ``UndersamplingWarning``) are
documented advice and are ignored; any other warning is an error (pytest's
``filterwarnings = error``). The outcomes are counted per function in :data:`OUTCOMES` and
:data:`SEEN` (``benchmarks/contract_counts.py`` reads them) and printed at the end of each
module that uses :func:`outcome_table` (``pytest -s``).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import inspect
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from psfkit import PsfWarning, UndersamplingWarning

#: Largest number of samples of a drawn array, so that each example stays fast.
MAX_SAMPLES = 4096

DTYPES = ("bool", "uint8", "int16", "float16", "float32", "float64", "complex64", "object",
          "masked")
CONTENTS = ("noise", "blob", "zeros", "constant", "nan", "inf", "-inf")
MAGNITUDES = (1e-30, 1e-6, 1.0, 1e6, 1e30, 1e300, float(np.finfo(np.float64).max))

#: Keyword values that are wrong in kind or in range for almost any numeric option.
BAD_SCALARS = (float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 0, -3, True, "x", None,
               [1.0, 2.0], 2.5)


def contract_settings(examples: int):
    """Hypothesis settings of this suite: a fixed sequence of ``examples`` inputs."""
    # No deadline: a time limit per example is a timed assertion, and one example of
    # fit_kernel_map took 6.4 s (0.45 s on its retry) on two cores shared by other jobs.
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# --------------------------------------------------------------------------- strategies


@st.composite
def shapes(draw, min_dims: int = 1, max_dims: int = 5, min_side: int = 1) -> tuple[int, ...]:
    """A shape of ``min_dims`` to ``max_dims`` axes with at most :data:`MAX_SAMPLES` samples."""
    ndim = draw(st.integers(min_dims, max_dims))
    largest_side = max(min_side, int(MAX_SAMPLES ** (1 / ndim)))
    return tuple(draw(st.integers(min_side, largest_side)) for _ in range(ndim))


def _content(shape, content: str, magnitude: float, seed: int) -> np.ndarray:
    """A float64 array of ``shape`` filled as ``content`` says, scaled to ``magnitude``."""
    rng = np.random.default_rng(seed)
    if content == "zeros":
        return np.zeros(shape)
    if content == "constant":
        return np.full(shape, magnitude)
    if content == "blob":  # a bright spot on a dim background, like a bead
        grid = np.indices(shape, dtype=float)
        centre = np.array(shape, dtype=float).reshape((-1,) + (1,) * len(shape)) / 2
        spot = np.exp(-((grid - centre) ** 2).sum(axis=0) / 4.0)
        with np.errstate(over="ignore"):  # near float64's maximum the peak becomes inf
            return magnitude * (spot + 0.01 * rng.random(shape))
    values = magnitude * rng.random(shape)
    if content in ("nan", "inf", "-inf"):
        values.flat[rng.integers(values.size)] = float(content)
    return values


def _as_dtype(values: np.ndarray, dtype: str, seed: int):
    """``values`` converted to ``dtype`` the way a user's array of that dtype would look."""
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "masked":
            mask = np.random.default_rng(seed).random(values.shape) < 0.2
            return np.ma.masked_array(values, mask=mask)
        if dtype == "bool":
            return values > np.nanmean(np.where(np.isfinite(values), values, 0.0))
        if dtype in ("uint8", "int16"):
            info = np.iinfo(dtype)
            finite = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
            return np.clip(finite, info.min, info.max).astype(dtype)
        return values.astype(dtype)


@st.composite
def arrays(draw, shape=None, min_dims: int = 1, max_dims: int = 5, min_side: int = 1,
           dtypes=DTYPES, contents=CONTENTS, magnitudes=MAGNITUDES):
    """An awkward array: a drawn shape, dtype, content and magnitude."""
    if shape is None:
        shape = draw(shapes(min_dims, max_dims, min_side))
    seed = draw(st.integers(0, 2**16))
    values = _content(shape, draw(st.sampled_from(contents)),
                      draw(st.sampled_from(magnitudes)), seed)
    return _as_dtype(values, draw(st.sampled_from(dtypes)), seed)




def ordinary_or(strategy, ordinary):
    """``ordinary`` (a valid value) half of the time, else a value from ``strategy``, so that
    one bad argument at a time is seen as well as several together."""
    return st.one_of(st.just(ordinary), strategy)


def bad_or(ordinary, *extra):
    """A valid ``ordinary`` keyword value, or one of :data:`BAD_SCALARS` or ``extra``."""
    return ordinary_or(st.sampled_from(BAD_SCALARS + extra), ordinary)




def scaled(array, scale: float):
    """``array * scale`` when it is a float64 array (others are left as they are)."""
    if isinstance(array, np.ndarray) and array.dtype == np.float64:
        with np.errstate(over="ignore"):
            return array * scale
    return array



# --------------------------------------------------------------------------- the property

OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
SEEN: dict[str, set] = collections.defaultdict(set)
#: Per function, how often each error message (up to its first number or quote) was met.
MESSAGES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def outcome_table():
    """Print, after the module, how many distinct inputs each function was given and how
    many gave a finite result or a clear error."""
    yield
    print("\nfunction             distinct  finite  error")
    for function, counts in sorted(OUTCOMES.items()):
        print(f"{function:20s} {len(SEEN[function]):8d} {counts['finite']:7d} "
              f"{counts['error']:6d}")


def _fingerprint(value) -> str:
    """A stable digest of an input, to count distinct calls."""
    digest = hashlib.sha1()
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, np.ndarray):
            digest.update(repr((item.shape, item.dtype.str, np.ma.isMaskedArray(item))).encode())
            digest.update(np.ascontiguousarray(item).tobytes() if item.dtype != object
                          else repr(item.tolist()).encode())
        else:
            digest.update(repr(item).encode())
    return digest.hexdigest()


def _snapshot(value):
    """A deep copy of an input, masked arrays with their masks."""
    return copy.deepcopy(value)


def _assert_unchanged(before, after, path="input"):
    """``after`` equals ``before``: same type, shape, dtype, values (NaN equal to NaN)."""
    if isinstance(before, np.ndarray):
        assert type(after) is type(before) and after.dtype == before.dtype, path
        assert after.shape == before.shape, path
        if np.ma.isMaskedArray(before):
            np.testing.assert_array_equal(np.ma.getmaskarray(after), np.ma.getmaskarray(before))
            before, after = before.data, after.data
        if before.dtype == object:
            assert repr(before.tolist()) == repr(after.tolist()), path
        else:
            np.testing.assert_array_equal(after, before, err_msg=path)
    elif isinstance(before, dict):
        for key in before:
            _assert_unchanged(before[key], after[key], f"{path}[{key!r}]")
    elif isinstance(before, (list, tuple)):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _assert_unchanged(b, a, f"{path}[{i}]")


def _assert_finite(value, path="result", documented_nan=()):
    """Every number in a result (arrays, floats, dataclass fields, dicts) is finite, but
    for the top-level fields ``documented_nan`` that may hold NaN by design."""
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            if field.name not in documented_nan:
                _assert_finite(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _assert_finite(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _assert_finite(item, f"{path}[{i}]")
    elif isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        assert np.isfinite(value).all(), f"{path} is not finite"
    elif isinstance(value, (float, np.floating)):
        assert np.isfinite(value), f"{path} = {value}"


def holds_contract(call, arguments: dict, check_result, *, names=None, function=None,
                   documented_nan=(), written=("out",)):
    """Call ``call(**arguments)`` and assert the contract. ``check_result`` asserts the
    documented shape and dtype; ``names`` are the argument names an error message may name
    (``call``'s parameters by default); ``function`` labels the outcome counts;
    ``documented_nan`` names result fields documented to hold NaN; ``written`` names the
    arguments the call writes its result into (not checked to be unchanged)."""
    function = function or call.__name__
    names = parameter_names(call) if names is None else names
    before = _snapshot({key: value for key, value in arguments.items() if key not in written})
    SEEN[function].add(_fingerprint(tuple(arguments.values())))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PsfWarning)
            warnings.simplefilter("ignore", UndersamplingWarning)
            result = call(**arguments)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert any(name in message for name in names), (
            f"{function}: message names no argument of {sorted(names)}: {message!r}")
        OUTCOMES[function]["error"] += 1
        MESSAGES[function][f"{type(error).__name__}: {message_kind(message)}"] += 1
    else:
        _assert_finite(result, documented_nan=documented_nan)
        check_result(result)
        OUTCOMES[function]["finite"] += 1
    _assert_unchanged(before, {key: arguments[key] for key in before})


def message_kind(message: str) -> str:
    """The start of an error message, up to the first value it quotes (a number, a
    repr, a shape), so that messages of one kind are counted together."""
    return re.split(r"[-\d'\"(\[{]", message, maxsplit=1)[0].strip()


def parameter_names(function) -> set[str]:
    """The names of ``function``'s parameters (what an error message may name)."""
    return set(inspect.signature(function).parameters)


def is_float_array(result, ndim=None, shape=None, dtype=np.float32) -> None:
    """Assert ``result`` is an ndarray of ``dtype``, ``ndim`` axes and ``shape``."""
    assert isinstance(result, np.ndarray), type(result)
    assert result.dtype == dtype, result.dtype
    if ndim is not None:
        assert result.ndim == ndim, result.shape
    if shape is not None:
        assert result.shape == tuple(shape), (result.shape, shape)


def kernel_result(ndim: int):
    """A check that a result's ``kernel`` is a float32 array of ``ndim`` axes."""
    return lambda result: is_float_array(result.kernel, ndim=ndim)
