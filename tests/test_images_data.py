"""Image data sets: pixels checked against independent reads of the files, the papers' scale
[−1, 1], seeded draws, and one clear ``DataError`` per bad or missing file. Nothing is
downloaded: Fashion-MNIST comes from the Debian package CI installs, the rest is written here."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import ebmkit  # noqa: F401  (registers built-ins)
from ebmkit.data import DATASETS, DataError
from ebmkit.data.images import FASHION_MNIST_ROOT

needs_fashion_mnist = pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT).is_dir(), reason="apt-get install dataset-fashion-mnist (CI installs it)"
)


def draw(ds, n, seed=0):
    return ds.sample(n, generator=torch.Generator().manual_seed(seed))


def as_uint8(x):
    """Draws back to the stored pixels: x/127.5 − 1 is exact in float32 for every byte."""
    return ((x + 1) * 127.5).round().to(torch.uint8)


# -- Fashion-MNIST, the real files ------------------------------------------------------------
@needs_fashion_mnist
def test_fashion_mnist_sizes_scale_and_seeded_draws():
    train = DATASETS.build("fashion_mnist")
    test = DATASETS.build({"name": "fashion_mnist", "split": "test"})
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.shape == test.shape == (1, 28, 28) and train.dim == 784 and train.is_image
    assert train.images.dtype == torch.uint8
    x = draw(test, 512, seed=3)
    assert x.shape == (512, 1, 28, 28) and x.dtype == torch.float32
    assert (x.min().item(), x.max().item()) == (-1.0, 1.0)
    assert torch.equal(x, draw(test, 512, seed=3)) and not torch.equal(x, draw(test, 512, seed=4))
    # no flip by default: each draw is the stored image the same generator's index picks
    idx = torch.randint(0, len(test), (512,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(as_uint8(x), test.images[idx])


@needs_fashion_mnist
def test_fashion_mnist_pixels_match_the_file():
    with gzip.open(Path(FASHION_MNIST_ROOT) / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 0x803 and int.from_bytes(raw[4:8], "big") == 10_000
    first = np.frombuffer(raw, np.uint8, count=784, offset=16).reshape(28, 28)
    ds = DATASETS.build({"name": "fashion_mnist", "split": "test", "limit": 3})
    assert len(ds) == 3
    assert np.array_equal(ds.images[0, 0].numpy(), first)


# -- IDX files written here -------------------------------------------------------------------
def idx_bytes(images: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    return header + images.astype(np.uint8).tobytes()


@pytest.fixture
def idx_root(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (5, 6, 4)), rng.integers(0, 256, (3, 6, 4))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(train))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx_bytes(test))
    return tmp_path, train, test


def test_mnist_reads_plain_and_gzipped_idx(idx_root):
    root, train, test = idx_root
    a = DATASETS.build({"name": "mnist", "root": str(root)})
    b = DATASETS.build({"name": "mnist", "root": str(root), "split": "test", "limit": 2})
    assert a.shape == (1, 6, 4) and len(a) == 5 and len(b) == 2
    assert np.array_equal(a.images[:, 0].numpy(), train) and np.array_equal(b.images[:, 0].numpy(), test[:2])
    assert np.array_equal(as_uint8(draw(a, 50)).numpy()[:, 0], train[
        torch.randint(0, 5, (50,), generator=torch.Generator().manual_seed(0)).numpy()])


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda good: good[:-5], "is truncated: its header says (5, 6, 4) (120 values), it holds 115"),
        (lambda good: good + b"\0", "has bytes past its data: its header says (5, 6, 4) (120 values), it holds 121"),
        (lambda good: good[:9], "is truncated: it ends inside its header (9 bytes, the header of 3 sizes takes 16)"),
        (lambda good: b"\x12\x34" + good[2:], "bad magic number 12340803"),
        (lambda good: good[:2] + b"\x0d" + good[3:], "not an IDX file of unsigned bytes (bad magic number 00000d03)"),
        (lambda good: bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]), "holds an array of shape (2,), not N×H×W images"),
    ],
)
def test_bad_idx_files_name_the_file(idx_root, content, message):
    root = idx_root[0]
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(DataError) as exc:
        DATASETS.build({"name": "mnist", "root": str(root)})
    assert f"'{path}'" in str(exc.value) and message in str(exc.value)


def test_a_broken_gzip_names_the_file(idx_root):
    root = idx_root[0]
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])  # the stream ends early
    with pytest.raises(DataError, match=f"'{path}' cannot be read as an IDX file"):
        DATASETS.build({"name": "mnist", "root": str(root), "split": "test"})


def test_missing_idx_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"MNIST: set data\.root to the folder holding train-images-idx3-ubyte\[\.gz\]"):
        DATASETS.build("mnist")
    with pytest.raises(DataError, match=f"MNIST not found: no t10k-images-idx3-ubyte\\[\\.gz\\] in '{tmp_path}'"):
        DATASETS.build({"name": "mnist", "root": str(tmp_path), "split": "test"})
    with pytest.raises(DataError, match=r"Fashion-MNIST not found: .*apt-get install dataset-fashion-mnist; or set data\.root"):
        DATASETS.build({"name": "fashion_mnist", "root": str(tmp_path)})
