"""Tests for bench/data/corruptions.py: canonical tuple, seed protocol, byte determinism, agreement with the module."""

import hashlib
import inspect
import threading

import imagecorruptions
import numpy as np
import pytest

from segbench.bench.data.corruptions import SEED_PROTOCOL, condition_seed, corrupt
from segbench.bench.results.axes import (
    CATEGORIES,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    Condition,
    category_of,
    conditions,
)

# From reading imagecorruptions/corruptions.py: these functions call neither numpy.random nor a seed argument.
RANDOM_FREE = (
    "defocus_blur",
    "gaussian_blur",
    "brightness",
    "contrast",
    "saturate",
    "jpeg_compression",
    "zoom_blur",
    "pixelate",
)
RANDOM = tuple(c for c in CORRUPTIONS + EXTRA_CORRUPTIONS if c not in RANDOM_FREE)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from segbench.bench.data.synthetic import draw_scene

    return draw_scene((64, 128), seed=1)[0]


def test_canonical_tuple_and_categories():
    assert CORRUPTIONS == (
        "motion_blur",
        "defocus_blur",
        "glass_blur",
        "gaussian_blur",
        "gaussian_noise",
        "impulse_noise",
        "shot_noise",
        "speckle_noise",
        "brightness",
        "contrast",
        "saturate",
        "jpeg_compression",
        "snow",
        "spatter",
        "fog",
        "frost",
    )
    assert list(CATEGORIES) == ["blur", "noise", "digital", "weather"]
    assert all(len(v) == 4 for v in CATEGORIES.values())
    assert category_of("glass_blur") == "blur" and category_of("frost") == "weather"
    assert category_of("jpeg_compression") == "digital" and category_of("clean") == "clean"
    assert SEVERITIES == (1, 2, 3, 4, 5)
    assert set(CORRUPTIONS + EXTRA_CORRUPTIONS) == set(imagecorruptions.get_corruption_names("all"))
    assert not set(CORRUPTIONS) & set(EXTRA_CORRUPTIONS)


def test_condition_seed_follows_documented_protocol():
    key = f"{SEED_PROTOCOL}/7/frankfurt_000000_000294/fog/3".encode()
    expected = int.from_bytes(hashlib.sha256(key).digest()[:4], "big")
    assert condition_seed("frankfurt_000000_000294", "fog", 3, 7) == expected
    seeds = {
        condition_seed(i, c, s, b)
        for i in ("a_000000_000019", "a_000001_000019")
        for c in ("fog", "frost")
        for s in (1, 2)
        for b in (0, 1)
    }
    assert len(seeds) == 16  # every argument changes the seed
    assert all(0 <= s < 2**32 for s in seeds)


@pytest.mark.parametrize("name", CORRUPTIONS + EXTRA_CORRUPTIONS)
def test_every_corruption_uint8_same_shape_deterministic(image, name):
    for severity in (1, 5):
        a = corrupt(image, name, severity, 123)
        assert a.dtype == np.uint8 and a.shape == image.shape and a.flags.c_contiguous
        np.random.seed(999)  # the caller's global state must not matter
        assert np.array_equal(corrupt(image, name, severity, 123), a)
    assert not np.array_equal(corrupt(image, name, 5, 123), image)


def test_corrupt_restores_global_rng(image):
    np.random.seed(42)
    before = np.random.get_state()[1].copy()
    corrupt(image, "gaussian_noise", 3, 5)
    corrupt(image, "frost", 3, 5)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("name", ("gaussian_noise", "impulse_noise", "glass_blur", "frost", "fog", "motion_blur"))
def test_random_corruptions_depend_on_seed(image, name):
    assert not np.array_equal(corrupt(image, name, 3, 1), corrupt(image, name, 3, 2))


@pytest.mark.parametrize("name", RANDOM_FREE)
def test_random_free_corruptions_equal_direct_module_call(image, name):
    for severity in (1, 3, 5):
        np.random.seed(severity)
        state = np.random.get_state()[1].copy()
        direct = imagecorruptions.corrupt(image.copy(), severity=severity, corruption_name=name)
        assert np.array_equal(np.random.get_state()[1], state), f"{name} drew random numbers"
        assert np.array_equal(corrupt(image, name, severity, 4242), direct)


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_equal_module_under_protocol(image, name):
    seed = condition_seed("x_000000_000019", name, 2, 0)
    kwargs = {"seed": seed} if "seed" in inspect.signature(imagecorruptions.corruption_dict[name]).parameters else {}
    np.random.seed(seed)
    direct = imagecorruptions.corrupt(image.copy(), severity=2, corruption_name=name, **kwargs)
    assert np.array_equal(corrupt(image, name, 2, seed), direct)


def test_order_and_threads_do_not_matter(image):
    images = [image, image[:, ::-1].copy(), image[::-1].copy()]
    jobs = [(i, name) for i in range(3) for name in ("gaussian_noise", "spatter", "snow", "impulse_noise")]

    def run(job):
        i, name = job
        return corrupt(images[i], name, 4, condition_seed(f"img{i}", name, 4, 0))

    forward = {job: run(job) for job in jobs}
    backward = {job: run(job) for job in reversed(jobs)}
    threaded = {}

    def worker(chunk):
        for job in chunk:
            threaded[job] = run(job)

    threads = [threading.Thread(target=worker, args=(jobs[k::3],)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in jobs:
        assert np.array_equal(forward[job], backward[job]) and np.array_equal(forward[job], threaded[job])


def test_corrupt_rejects_bad_input(image):
    with pytest.raises(ValueError, match="unknown corruption 'rain'.*motion_blur.*frost"):
        corrupt(image, "rain", 1, 0)
    for severity in (0, 6, True, 2.0):
        with pytest.raises(ValueError, match="outside 1-5"):
            corrupt(image, "fog", severity, 0)
    with pytest.raises(ValueError, match="under the corruption module's minimum of 32"):
        corrupt(image[:31], "fog", 1, 0)
    with pytest.raises(ValueError, match=r"uint8 RGB image"):
        corrupt(image.astype(np.float32), "fog", 1, 0)
    with pytest.raises(ValueError, match=r"uint8 RGB image"):
        corrupt(image[..., 0], "fog", 1, 0)
    with pytest.raises(ValueError, match="seed"):
        corrupt(image, "fog", 1, 2**32)


def test_condition():
    assert Condition().name == "clean" and Condition().category == "clean" and Condition().is_clean
    c = Condition.parse("gaussian_noise-3")
    assert c == Condition("gaussian_noise", 3) and c.name == "gaussian_noise-3" and c.category == "noise"
    assert Condition.parse("clean") == Condition() and Condition.parse("fog-2").severity == 2
    assert len({Condition("fog", 2), Condition.parse("fog-2")}) == 1
    with pytest.raises(ValueError, match="unknown corruption 'fgo'"):
        Condition.parse("fgo-2")
    with pytest.raises(ValueError, match="outside 1-5"):
        Condition("fog", 6)
    with pytest.raises(ValueError, match="outside 1-5"):
        Condition("fog")
    with pytest.raises(ValueError, match="cannot parse"):
        Condition.parse("fog")
    with pytest.raises(ValueError, match="severity 0"):
        Condition(None, 3)
    with pytest.raises(AttributeError):
        c.severity = 4
    all_conditions = conditions()
    assert len(all_conditions) == 81 and all_conditions[0].is_clean
    assert [c.name for c in conditions(("fog",), (1, 5), clean=False)] == ["fog-1", "fog-5"]


@pytest.mark.parametrize("name", ["brightness", "saturate"])
def test_colour_map_fast_path_is_byte_identical(name):
    from segbench.bench.data.synthetic import draw_scene

    scene, _ = draw_scene((256, 512), seed=3, index=1)  # few distinct colours: the per-colour path (sorting)
    large, _ = draw_scene((768, 1536), seed=3, index=2)  # >= 2**20 pixels: the per-colour path (tables)
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # all distinct: the direct path
    for image in (scene, large, noise):
        for severity in range(1, 6):
            expected = imagecorruptions.corrupt(image, severity=severity, corruption_name=name)
            assert np.array_equal(corrupt(image, name, severity, seed=0), expected)


def test_zoom_blur_fast_path_is_byte_identical():
    from segbench.bench.data.corruptions import ZOOM_FACTORS
    from segbench.bench.data.synthetic import draw_scene

    scene, _ = draw_scene((96, 200), seed=3, index=1)
    noise = np.random.default_rng(1).integers(0, 256, (67, 41, 3), dtype=np.uint8)  # odd sizes, every value
    for image in (scene, noise):
        for severity in range(1, 6):
            expected = imagecorruptions.corrupt(image, severity=severity, corruption_name="zoom_blur")
            assert np.array_equal(corrupt(image, "zoom_blur", severity, seed=0), expected), severity
    # the factors are the module's own: a wrong one would change the output above; here, their number per severity
    assert [len(ZOOM_FACTORS[s]) for s in range(1, 6)] == [12, 16, 11, 13, 11]


def test_warm_up_compiles_glass_blur_in_the_calling_process():
    # In a fresh interpreter (this one may have compiled it already): after warm_up the numba pixel shuffle holds a
    # compiled signature, which forked DataLoader workers inherit; the global random state is left as it was.
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from imagecorruptions import corruptions as c\n"
        "from segbench.bench.data.corruptions import warm_up\n"
        "np.random.seed(5); before = np.random.get_state()[1].copy()\n"
        "assert not c._shuffle_pixels_njit_glass_blur.signatures\n"
        "warm_up('glass_blur', 1)\n"
        "assert c._shuffle_pixels_njit_glass_blur.signatures\n"
        "assert (np.random.get_state()[1] == before).all()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
