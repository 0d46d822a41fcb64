"""Cityscapes-C corruptions (Kamann & Rother), reproducible to the byte.

The 16 corruptions of Cityscapes-C, their four categories and the `Condition` type are defined once, in the results
contract (`bench.results`), which the report reads without torch.

The implementations are those of the ``imagecorruptions`` module (package
``imagecorruptions-imaug``), called through its own ``imagecorruptions.corrupt`` entry point, so an image corrupted here
is the image the published benchmark uses. The module's other corruptions (``zoom_blur``, ``elastic_transform``,
``pixelate``) can be requested by name but are not in the default set.

Seed protocol ``segbench-sha256-v1`` (recorded as :data:`SEED_PROTOCOL` in every run's provenance):

1. One seed per (image id, corruption, severity, base seed)::

       seed = int.from_bytes(sha256(f"segbench-sha256-v1/{base_seed}/{image_id}/{corruption}/{severity}").digest()[:4],
                             "big")

   i.e. the first four bytes of the SHA-256 digest, big-endian, a 32-bit unsigned integer (the range that both
   ``numpy.random.seed`` and numba's ``np.random.seed`` accept). ``image_id`` is the Cityscapes stem, e.g.
   ``frankfurt_000000_000294``. Python's ``hash()`` is never used: it is salted per process.
2. Right before the module is called, numpy's global random state (which the module draws from for the noise, motion
   blur, snow, spatter, fog, frost and elastic corruptions) is set with ``numpy.random.seed(seed)``. The corruptions
   whose function takes a ``seed`` argument (``glass_blur``: numba's generator; ``impulse_noise``: scikit-image's
   ``random_noise``) also get ``seed=seed``.
3. Afterwards the caller's global random state is restored, so :func:`corrupt` has no side effect on it. A lock makes
   the seed-call-restore sequence atomic within a process, so threads cannot interleave draws.

The output therefore depends only on the pixels and on (image id, corruption, severity, base seed): never on the worker
count, the order in which images are visited, the process, or the distributed rank. The byte identity also assumes
the same versions of numpy, scikit-image, OpenCV and imagecorruptions; generated folders record the versions.

The corruptions ``defocus_blur``, ``gaussian_blur``, ``brightness``, ``contrast``, ``saturate``, ``jpeg_compression``
(and the extras ``zoom_blur``, ``pixelate``) draw no random numbers at all. The module requires images of at least
32 x 32 pixels (:data:`MIN_SIZE`).
"""

from __future__ import annotations

import hashlib
import inspect
import threading

import numpy as np

from segbench.bench.results.axes import _check_corruption, _check_severity

SEED_PROTOCOL: str = "segbench-sha256-v1"
"""Versioned name of the seed protocol described in the module docstring; change it whenever the protocol changes."""

MIN_SIZE: int = 32
"""The imagecorruptions module's minimum image height and width in pixels."""

_RNG_LOCK = threading.Lock()


def condition_seed(image_id: str, corruption: str, severity: int, base_seed: int) -> int:
    """Derives the 32-bit seed of one corrupted image (step 1 of the module's seed protocol).

    Args:
        image_id: the image's Cityscapes stem, e.g. ``frankfurt_000000_000294``.
        corruption: corruption name.
        severity: 1-5.
        base_seed: the run's base seed.

    Returns:
        An integer in [0, 2**32).
    """
    _check_corruption(corruption)
    severity = _check_severity(severity)
    key = f"{SEED_PROTOCOL}/{int(base_seed)}/{image_id}/{corruption}/{severity}"
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big")


def _takes_seed(name: str) -> bool:
    import imagecorruptions

    return "seed" in inspect.signature(imagecorruptions.corruption_dict[name]).parameters


COLOUR_MAPS: frozenset[str] = frozenset({"brightness", "saturate"})
"""Corruptions whose output pixel depends on that pixel's colour only (scikit-image's HSV round trip, elementwise)."""


def _corrupt_colours(image: np.ndarray, name: str, severity: int) -> np.ndarray:
    """`brightness` / `saturate` computed once per distinct colour: byte-identical to the module, and much faster.

    These two spend their time in scikit-image's float64 HSV conversion of every pixel, yet are per-pixel colour maps
    built from exactly rounded elementwise operations, so the module's own function applied to the image's distinct
    colours (laid out as a small image) gives each pixel's output exactly. Street scenes hold far fewer distinct
    colours than pixels; when more than half the pixels are distinct, the module runs on the image as is.
    """
    import imagecorruptions

    flat = image.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    if packed.size >= 1 << 20:  # large images: two 2**24 tables beat a sort
        seen = np.zeros(1 << 24, dtype=bool)
        seen[packed] = True
        colours = np.flatnonzero(seen).astype(np.int32)
        inverse = None
    else:
        colours, inverse = np.unique(packed, return_inverse=True)
    n, width = len(colours), 256
    if n > flat.shape[0] // 2:
        return np.ascontiguousarray(imagecorruptions.corrupt(image, severity=severity, corruption_name=name))
    height = max(MIN_SIZE, -(-n // width))
    grid = np.full(height * width, colours[0], dtype=np.int32)
    grid[:n] = colours
    tile = np.stack([(grid >> 16) & 255, (grid >> 8) & 255, grid & 255], axis=-1).astype(np.uint8)
    mapped = imagecorruptions.corrupt(tile.reshape(height, width, 3), severity=severity, corruption_name=name)
    if inverse is None:
        index = np.zeros(1 << 24, dtype=np.int32)
        index[colours] = np.arange(n, dtype=np.int32)
        inverse = index[packed]
    return np.ascontiguousarray(mapped.reshape(-1, 3)[:n][inverse.ravel()].reshape(image.shape))


_ZOOM_RANGES = {1: (1.11, 0.01), 2: (1.16, 0.01), 3: (1.21, 0.02), 4: (1.26, 0.02), 5: (1.31, 0.03)}
ZOOM_FACTORS: dict[int, tuple[float, ...]] = {
    severity: tuple(np.arange(1, stop, step)) for severity, (stop, step) in _ZOOM_RANGES.items()
}
"""`zoom_blur`'s zoom factors per severity, as in imagecorruptions (`np.arange(1, stop, step)`)."""


def _zoom_blur(image: np.ndarray, severity: int) -> np.ndarray:
    """`zoom_blur` with each zoom done per channel: float-identical to the module, about 2x faster.

    The module zooms the centre crop of the (H, W, 3) float32 image with `scipy.ndimage.zoom` factors (z, z, 1) at
    order 1. Along the channel axis a factor of 1 puts every output on an input channel exactly (weights 1 and 0),
    so the 3-D interpolation equals a 2-D zoom of each channel, which reads 4 neighbours instead of 8. The rest
    (crop, sum over the factors, average with the image, clip, cast) follows the module step by step;
    `tests/test_corruptions.py` checks the bytes at every severity.
    """
    from scipy.ndimage import zoom

    x = (image / 255.0).astype(np.float32)
    h, w = x.shape[:2]
    out = np.zeros_like(x)
    for z in ZOOM_FACTORS[severity]:
        ch, cw = int(np.ceil(h / float(z))), int(np.ceil(w / float(z)))
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = x[top : top + ch, left : left + cw]
        layer = np.stack([zoom(crop[:, :, k], (z, z), order=1) for k in range(3)], axis=-1)
        out += layer[:h, :w, :]
    x = (x + out) / (len(ZOOM_FACTORS[severity]) + 1)
    return np.uint8(np.clip(x, 0, 1) * 255)


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Corrupts one image with the imagecorruptions module, deterministically (steps 2-3 of the seed protocol).

    Args:
        image: uint8 array (H, W, 3), RGB, with H, W >= 32.
        name: corruption name (one of :data:`CORRUPTIONS` or :data:`EXTRA_CORRUPTIONS`).
        severity: 1-5.
        seed: the image's seed, usually from :func:`condition_seed`; an integer in [0, 2**32).

    Returns:
        The corrupted image: uint8, same shape as ``image``.

    Raises:
        ValueError: unknown corruption, severity outside 1-5, bad seed, or an image that is not uint8 (H, W, 3) of at
            least 32 x 32 pixels.
    """
    import imagecorruptions

    _check_corruption(name)
    severity = _check_severity(severity)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ValueError(f"seed {seed!r} must be an integer in [0, 2**32); derive it with condition_seed()")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"corrupt() expects a uint8 RGB image of shape (H, W, 3), got {desc}")
    if min(image.shape[:2]) < MIN_SIZE:
        raise ValueError(
            f"image of {image.shape[0]}x{image.shape[1]} px is under the corruption module's minimum of "
            f"{MIN_SIZE} px per side"
        )
    kwargs = {"seed": int(seed)} if _takes_seed(name) else {}
    image = np.ascontiguousarray(image)
    if name in COLOUR_MAPS:
        return _corrupt_colours(image, name, severity)
    if name == "zoom_blur":
        return _zoom_blur(image, severity)  # a fresh, contiguous uint8 array
    with _RNG_LOCK:
        saved = np.random.get_state()
        try:
            np.random.seed(int(seed))
            out = imagecorruptions.corrupt(image, severity=severity, corruption_name=name, **kwargs)
        finally:
            np.random.set_state(saved)
    out = np.asarray(out)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    if out.shape != image.shape:
        raise RuntimeError(f"imagecorruptions {name}@{severity} returned shape {out.shape} for input {image.shape}")
    if out.dtype != np.uint8:  # the module casts with np.uint8(); keep the guarantee if a future version does not
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def warm_up(name: str, severity: int) -> None:
    """Runs a corruption once on a tiny image, so that processes forked afterwards inherit its first-call costs.

    A corruption's first call in a process imports ``imagecorruptions`` (scipy, scikit-image, numba, OpenCV: about
    0.4 s) and, for ``glass_blur``, JIT-compiles its numba pixel shuffle (about 2.4 s per argument signature; severity
    3 has its own). DataLoader workers are forked per cell, so without this every worker of every corrupted cell paid
    those seconds while the model waited for its first batch. The result is discarded; the caller's global random
    state is left as it was (see :func:`corrupt`).
    """
    corrupt(np.zeros((MIN_SIZE, MIN_SIZE, 3), dtype=np.uint8), name, severity, 0)
