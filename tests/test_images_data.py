"""Image data sets: pixels checked against independent reads of the files, the papers' scale
[−1, 1], seeded draws, and one clear ``DataError`` per bad or missing file. Nothing is
downloaded: Fashion-MNIST comes from the Debian package CI installs, the rest is written here."""

import gzip
import os
import pickle
import pickletools
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ebmkit  # noqa: F401  (registers built-ins)
from ebmkit.data import DATASETS, DataError
from ebmkit.data.images import FASHION_MNIST_ROOT
from ebmkit.registry import ComponentError
from ebmkit.testing import write_fake_cifar10
from helpers import needs_fashion_mnist



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


def test_hflip_defaults():
    assert DATASETS.validate("fashion_mnist")["hflip"] is False
    assert DATASETS.validate("mnist")["hflip"] is False
    assert DATASETS.validate("cifar10")["hflip"] is True
    assert DATASETS.validate({"name": "image_folder", "root": "pics"})["hflip"] is False


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


# -- CIFAR-10, written in the real pickle format ----------------------------------------------
def cifar(root, **options):
    return DATASETS.build({"name": "cifar10", "root": str(root), **options})


def written(folder, name):
    """A batch's b"data" as the writer stored it (plain pickle: these files are our own)."""
    with open(folder / name, "rb") as f:
        return pickle.load(f, encoding="bytes")[b"data"]


def test_fake_cifar10_names_only_the_globals_the_real_files_do(tmp_path):
    folder = write_fake_cifar10(tmp_path, n_train=13, n_test=4)
    assert folder == tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == ["batches.meta", *[f"data_batch_{i}" for i in range(1, 6)], "test_batch"]
    raw = (folder / "data_batch_1").read_bytes()
    ops = list(pickletools.genops(raw))
    assert raw.startswith(b"\x80\x02}q\x00(U\x0bbatch_label")  # protocol 2, a dict, a py2 string key
    names = {op.name for op, _, _ in ops}
    assert "BINSTRING" in names and not names & {"BINBYTES", "SHORT_BINBYTES"}  # bytes as Python 2 wrote str
    assert {arg for op, arg, _ in ops if "GLOBAL" in op.name} == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert sorted(batch) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (3, 3072) and len(batch[b"labels"]) == 3


def test_cifar10_pixels_are_the_rgb_planes_of_each_row(tmp_path):
    folder = write_fake_cifar10(tmp_path, n_train=13, n_test=4)
    train, test = cifar(tmp_path), cifar(tmp_path, split="test")
    assert (len(train), len(test)) == (13, 4) and train.shape == (3, 32, 32) and train.dim == 3072
    raw = np.concatenate([written(folder, f"data_batch_{i}") for i in range(1, 6)])
    c, y, x = np.indices((3, 32, 32))  # "the first 1024 entries contain the red channel values ... row-major"
    assert np.array_equal(train.images.numpy(), raw[:, c * 1024 + y * 32 + x])
    assert train.images[5, 1, 2, 3].item() == raw[5, 1024 + 2 * 32 + 3]
    assert np.array_equal(test.images.numpy().reshape(4, -1), written(folder, "test_batch"))
    assert torch.equal(cifar(folder).images, train.images)  # root: the batches folder itself
    s = draw(cifar(tmp_path, hflip=False), 300, seed=1)
    assert (s.min().item(), s.max().item()) == (-1.0, 1.0) and torch.equal(s, draw(cifar(tmp_path, hflip=False), 300, seed=1))
    idx = torch.randint(0, 13, (300,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(as_uint8(s), train.images[idx])


def test_cifar10_flips_half_the_draws_by_default(tmp_path):
    write_fake_cifar10(tmp_path, n_train=20)
    ds = cifar(tmp_path)
    assert ds.config.hflip
    n = 4000
    got = as_uint8(draw(ds, n, seed=2))
    picked = ds.images[torch.randint(0, 20, (n,), generator=torch.Generator().manual_seed(2))]
    as_is = (got == picked).flatten(1).all(1)
    mirrored = (got == picked.flip(-1)).flatten(1).all(1)
    assert (as_is ^ mirrored).all()  # each draw is its image, or that image mirrored left-right
    assert abs(mirrored.float().mean().item() - 0.5) < 0.04  # sd 0.008 at n = 4000


def test_cifar10_default_root_and_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = write_fake_cifar10(tmp_path / ".cache" / "ebmkit" / "cifar10", n_train=50)
    assert len(DATASETS.build("cifar10")) == 50
    (folder / "data_batch_2").write_bytes(b"broken")  # a limit within the first batch never reads it
    ds = DATASETS.build({"name": "cifar10", "limit": 7})
    assert torch.equal(ds.images.reshape(7, -1), torch.from_numpy(written(folder, "data_batch_1")[:7]))


def test_missing_cifar10_names_the_files_and_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError) as exc:
        DATASETS.build("cifar10")
    message = str(exc.value)
    assert f"'{tmp_path}/.cache/ebmkit/cifar10' lacks data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5; download" in message
    assert "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html" in message and "data.root" in message
    folder = write_fake_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match=f"'{folder}' lacks data_batch_3 \\(the train split needs data_batch_1, "):
        cifar(tmp_path)
    with pytest.raises(DataError, match=f"'{folder}' lacks test_batch; download"):
        cifar(folder, split="test")


class RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda good: good[: len(good) // 2], "is not a readable CIFAR-10 batch (corrupt or truncated?)"),
        (lambda good: b"not a pickle", "is not a readable CIFAR-10 batch"),
        (lambda good: pickle.dumps({b"data": np.zeros((2, 3072), np.float32)}, protocol=2),
         "refuses to unpickle _codecs.encode"),  # a Python 3 protocol-2 pickle spells bytes that way
        (lambda good: pickle.dumps({b"data": np.zeros((2, 1024), np.uint8)}, protocol=4),
         "its b\"data\" should be uint8 N×3072, found an array of shape (2, 1024) and dtype uint8"),
        (lambda good: pickle.dumps([1, 2], protocol=4), "its b\"data\" should be uint8 N×3072, found none"),
    ],
)
def test_bad_cifar10_batches_name_the_file(tmp_path, content, message):
    folder = write_fake_cifar10(tmp_path)
    path = folder / "data_batch_4"
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(DataError) as exc:
        cifar(tmp_path)
    assert f"'{path}'" in str(exc.value) and message in str(exc.value)


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL and STACK_GLOBAL both go through find_class
def test_a_pickle_that_runs_code_is_refused_not_run(tmp_path, protocol):
    folder = write_fake_cifar10(tmp_path)
    marker = tmp_path / "ran"
    (folder / "test_batch").write_bytes(pickle.dumps([RunsAShellCommand(marker)], protocol=protocol))
    pickle.loads(pickle.dumps(RunsAShellCommand(tmp_path / "control")))  # the payload does run when unpickled plainly
    assert (tmp_path / "control").exists()
    with pytest.raises(DataError, match=f"'{folder / 'test_batch'}': refuses to unpickle {os.system.__module__}.system"):
        cifar(tmp_path, split="test")
    assert not marker.exists()


def test_a_batch_as_python_2_pickled_it_loads(tmp_path):
    """py2 strings, numpy's old module name, dtype('u1', 0, 1) with int flags: one 3072-byte image."""
    pixels = bytes(range(256)) * 12
    py2 = (b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b"
           b"\x87Rq\x05(K\x01K\x01M\x00\x0c\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xff"
           b"J\xff\xff\xff\xffK\x00tb\x89T\x00\x0c\x00\x00" + pixels + b"tbU\x06labelsq\x08]q\tK\x03au.")
    folder = write_fake_cifar10(tmp_path, n_train=0, n_test=0)
    (folder / "test_batch").write_bytes(py2)
    ds = cifar(tmp_path, split="test")
    assert ds.images.shape == (1, 3, 32, 32)
    assert ds.images.flatten().tolist() == list(pixels)


# -- image folders ----------------------------------------------------------------------------
def save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, **kw)
    return path


def plain(w, h, rgb):
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3))


def folder(root, **options):
    return DATASETS.build({"name": "image_folder", "root": str(root), **options})


def test_image_folder_loads_sorted_pngs_and_jpegs_of_any_size(tmp_path):
    save(tmp_path / "b.png", plain(32, 32, (10, 200, 30)))
    save(tmp_path / "a.JPEG", plain(40, 32, (200, 20, 40)), quality=95)
    save(tmp_path / "sub" / "c.PNG", plain(64, 48, (0, 0, 255)))
    save(tmp_path / "sub" / "d.jpg", plain(8, 8, (90, 90, 90)))
    save(tmp_path / "skip.gif", plain(32, 32, (1, 2, 3)))
    (tmp_path / "notes.txt").write_text("not a picture")
    ds = folder(tmp_path)
    assert ds.paths == [tmp_path / "a.JPEG", tmp_path / "b.png", tmp_path / "sub" / "c.PNG", tmp_path / "sub" / "d.jpg"]
    assert ds.shape == (3, 32, 32) and ds.images.dtype == torch.uint8 and len(ds) == 4
    assert (ds.images[1].permute(1, 2, 0) == torch.tensor([10, 200, 30], dtype=torch.uint8)).all()  # PNG: exact
    assert (ds.images[2].permute(1, 2, 0) == torch.tensor([0, 0, 255], dtype=torch.uint8)).all()  # 64×48 → 43×32 → 32×32
    assert (ds.images[0].int().permute(1, 2, 0) - torch.tensor([200, 20, 40])).abs().max() <= 3  # JPEG: lossy
    assert (ds.images[3].int() - 90).abs().max() <= 3  # 8×8, upscaled
    x = draw(ds, 200, seed=5)
    assert torch.equal(x, draw(ds, 200, seed=5)) and x.shape == (200, 3, 32, 32) and x.abs().max() <= 1
    idx = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(as_uint8(x), ds.images[idx])  # no flip by default
    assert folder(tmp_path, limit=2).paths == ds.paths[:2]
    assert "n=4" in repr(ds) and "shape=(3, 32, 32)" in repr(ds)


@pytest.mark.parametrize("w, h", [(96, 32), (32, 96)])
def test_image_folder_resizes_the_short_side_and_crops_the_centre(tmp_path, w, h):
    bands = np.zeros((h, w, 3), np.uint8)  # red, green, blue thirds along the long side
    for k in range(3):
        if w > h:
            bands[:, 32 * k : 32 * (k + 1), k] = 255
        else:
            bands[32 * k : 32 * (k + 1), :, k] = 255
    save(tmp_path / "bands.png", bands)
    ds = folder(tmp_path, size=16)
    assert ds.shape == (3, 16, 16)
    got = ds.images[0].permute(1, 2, 0).numpy()
    # short side 32 → 16 halves the long side to 48; its middle 16 are the green band
    inner = got[:, 3:13] if w > h else got[3:13]
    assert (inner == [0, 255, 0]).all()
    box = (16, 0, 32, 16) if w > h else (0, 16, 16, 32)
    resized = Image.fromarray(bands).resize((48, 16) if w > h else (16, 48), Image.Resampling.BICUBIC)
    assert np.array_equal(got, np.asarray(resized.crop(box)))


def test_image_folder_crops_the_box_before_resizing(tmp_path):
    face = np.zeros((218, 178, 3), np.uint8)  # CelebA's aligned size; the box (15, 40, 163, 188) is 148×148
    face[40:188, 15:163] = (200, 100, 50)
    face[40:114, 15:89] = (0, 0, 255)  # the box's top-left quarter
    save(tmp_path / "000001.png", face)
    ds = folder(tmp_path, size=64, crop=(15, 40, 163, 188))
    want = np.asarray(Image.fromarray(face[40:188, 15:163]).resize((64, 64), Image.Resampling.BICUBIC))
    assert np.array_equal(ds.images[0].permute(1, 2, 0).numpy(), want)
    assert (ds.images[0, :, 2, 2] == torch.tensor([0, 0, 255], dtype=torch.uint8)).all()
    assert (ds.images[0, :, 60, 60] == torch.tensor([200, 100, 50], dtype=torch.uint8)).all()  # no black border
    with pytest.raises(DataError, match=r"000001.png' is 178×218; data.crop \(15, 40, 163, 300\) is not a box inside it"):
        folder(tmp_path, size=64, crop=(15, 40, 163, 300))


def test_image_folder_grey_and_colour_conversion(tmp_path):
    save(tmp_path / "colour.png", plain(20, 20, (10, 200, 30)))
    save(tmp_path / "grey.png", np.full((20, 20), 77, np.uint8))
    grey = folder(tmp_path, channels=1, size=20)
    assert grey.shape == (1, 20, 20)
    luma = 0.299 * 10 + 0.587 * 200 + 0.114 * 30  # ITU-R 601-2, PIL's L
    assert (grey.images[0].float() - luma).abs().max() <= 1 and (grey.images[1] == 77).all()
    colour = folder(tmp_path, size=20)
    assert colour.shape == (3, 20, 20) and (colour.images[1] == 77).all()


def test_image_folder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(DataError, match=f"image folder '{tmp_path / 'absent'}' not found"):
        folder(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(DataError, match=f"image folder '{tmp_path}' holds no images: looked for .png, .jpg, .jpeg"):
        folder(tmp_path)
    with pytest.raises(DataError, match="is not a folder"):
        folder(tmp_path / "notes.txt")
    save(tmp_path / "a.png", plain(8, 8, (1, 2, 3)))
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=f"image '{tmp_path / 'b.png'}' cannot be read"):
        folder(tmp_path)
    (tmp_path / "b.png").write_text("not a picture")
    with pytest.raises(DataError, match=f"image '{tmp_path / 'b.png'}' cannot be read"):
        folder(tmp_path)
    assert len(folder(tmp_path, limit=1)) == 1  # the broken file comes after the limit: never opened
    with pytest.raises(ComponentError, match="root"):
        DATASETS.build("image_folder")
    with pytest.raises(ComponentError, match="channels"):
        folder(tmp_path, channels=2)
