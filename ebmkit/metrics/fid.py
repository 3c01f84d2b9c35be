"""FID (Heusel et al. 2017) through pytorch-fid, so that ebmkit's number is the number
``python -m pytorch_fid SAMPLES REFERENCE`` prints for the same pictures.

Generated images are scored as the PNGs `ebmkit sample -o DIR/` writes would be: quantised to
uint8 by ``to_uint8``, scaled to [0, 1] by /255 and grey replicated to three channels (what
pytorch-fid's reader does to a PNG: PIL ``convert('RGB')`` + ``ToTensor``). pytorch-fid's own
``InceptionV3`` (2048-d pool3, its resize and input scaling inside) gives the features, its
``calculate_frechet_distance`` the distance. The reference is a data set by name (statistics
cached on disk), a folder of images (read by pytorch-fid itself) or an .npz of statistics.

Inception weights: pytorch-fid's usual file in torch hub's cache
(``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``, downloaded on first use),
or any file holding a state dict of the same network (``inception_weights=PATH``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor

from ebmkit.digest import file_sha256
from ebmkit.metrics.frechet import (FeatureStats, MetricError, as_uint8_images, cache_root, cached_stats, feature_stats,
                                    frechet_distance, load_stats, quiet_stdout)

FID_DIMS = 2048  # pool3, the features every published FID uses
BATCH_SIZE = 50  # pytorch-fid's default


def default_weights_path() -> Path:
    """Where pytorch-fid's loader (torch hub) keeps ``FID_WEIGHTS_URL``'s file."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(FID_WEIGHTS_URL).path)


@contextlib.contextmanager
def _state_dict_from(path: Path):
    """Make pytorch-fid's ``fid_inception_v3`` take its state dict from ``path`` instead of the
    URL: the architecture and its patches stay pytorch-fid's. Not thread-safe (a module global)."""
    import pytorch_fid.inception as inception

    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *args, **kwargs: torch.load(path, map_location="cpu", weights_only=True)
    try:
        yield
    finally:
        inception.load_state_dict_from_url = original


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_inception(weights: str | Path | None = None, device: str | torch.device = "cpu"):
    """pytorch-fid's ``InceptionV3`` returning pool3 features, in eval mode on ``device``;
    returns (network, path of its weights file)."""
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    blocks = [InceptionV3.BLOCK_INDEX_BY_DIM[FID_DIMS]]
    bad_file = (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MetricError(f"Inception weights '{path}' not found (a state dict of pytorch-fid's FID Inception, "
                              f"e.g. its {default_weights_path().name})")
        try:
            with _state_dict_from(path):
                network = InceptionV3(blocks)
        except bad_file as exc:
            raise MetricError(f"'{path}' is not a state dict of pytorch-fid's FID Inception: {_first_line(exc)}") from None
        return network.eval().to(device), path
    path = default_weights_path()
    try:
        network = InceptionV3(blocks)
    except (URLError, *bad_file) as exc:
        if not path.is_file():  # not in the cache, and the download failed
            reason = getattr(exc, "reason", None) or _first_line(exc)
            raise MetricError(f"FID needs pytorch-fid's Inception weights: '{path}' is missing and downloading "
                              f"{FID_WEIGHTS_URL} failed ({reason}); put that file at '{path}' "
                              "(torch hub's cache: $TORCH_HOME/hub/checkpoints), or pass --inception-weights PATH"
                              ) from None
        raise MetricError(f"'{path}' is not a state dict of pytorch-fid's FID Inception ({_first_line(exc)}); "
                          "delete it to download it again, or pass --inception-weights PATH") from None
    return network.eval().to(device), path


@torch.no_grad()
def inception_features(images: Tensor, network, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """pool3 features (n, 2048), float64, of images in [−1, 1] (or uint8), ``batch_size`` at a
    time in order, as pytorch-fid's ``get_activations`` batches the files of a folder."""
    pixels = as_uint8_images(images, "FID")
    device = next(network.parameters()).device
    out = np.empty((len(pixels), FID_DIMS))
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size].to(torch.float32).div(255)  # ToTensor
        if batch.shape[1] == 1:
            batch = batch.repeat(1, 3, 1, 1)  # PIL convert('RGB') of a grey picture
        out[start : start + len(batch)] = network(batch.to(device))[0].squeeze(3).squeeze(2).cpu().numpy()
    return out


@dataclass
class Reference:
    """What generated images are compared with: ``kind`` is "data", "folder" or "npz"."""

    kind: str
    label: str
    path: Path | None = None
    dataset: Any = None
    spec: dict = field(default_factory=dict)


def _data_spec(text: str):
    from ebmkit.registry import DATASETS

    if text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetricError(f"--ref '{text}' is not valid JSON ({exc})") from None
        return spec if isinstance(spec, dict) else None
    return text if text in DATASETS.names() else None


def resolve_reference(ref: str | dict | Path) -> Reference:
    """Check a reference before any image is generated: an .npz of statistics, a folder of
    images, or a data set spec (a name or a JSON object), which is built here."""
    from pytorch_fid.fid_score import IMAGE_EXTENSIONS

    from ebmkit.registry import DATASETS

    spec = ref if isinstance(ref, dict) else None
    if spec is None:
        text = str(ref)
        path = Path(text).expanduser()
        if text.endswith(".npz"):
            load_stats(path)  # exists and holds mu, sigma
            return Reference("npz", text, path=path)
        if path.is_dir():
            count = sum(1 for p in path.iterdir() if p.suffix[1:].lower() in IMAGE_EXTENSIONS)
            if count < 2:
                raise MetricError(f"--ref folder '{path}' holds {count} images; FID needs at least 2 "
                                  f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
            return Reference("folder", text, path=path)
        spec = _data_spec(text)
        if spec is None:
            raise MetricError(
                f"--ref '{text}' is none of what it takes: a data set name ({', '.join(DATASETS.names())}), "
                "a JSON data spec such as '{\"name\": \"fashion_mnist\", \"split\": \"test\"}', "
                "a folder of images, or an .npz file with mu and sigma (pytorch-fid's statistics)")
    dataset = DATASETS.build(spec)
    images = getattr(dataset, "images", None)
    name = spec if isinstance(spec, str) else spec.get("name")
    if not dataset.is_image or not isinstance(images, Tensor) or images.dtype != torch.uint8:
        raise MetricError(f"--ref data set '{name}' is not a set of images held in memory (its points have shape "
                          f"{dataset.shape}); pass a folder of images or an .npz of statistics instead")
    options = dataset.config.model_dump(mode="json") if hasattr(dataset, "config") else {}
    canonical = {"name": name, **options}
    return Reference("data", json.dumps(canonical, sort_keys=True), dataset=dataset, spec=canonical)


class FID:
    """pytorch-fid's Inception, loaded once, scoring images against references.

    ``cache_dir`` holds data sets' statistics (default ``cache_root()/fid``), keyed by the data
    spec, the number of images and the weights file's sha256.
    """

    def __init__(self, inception_weights: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = BATCH_SIZE, cache_dir: str | Path | None = None):
        if batch_size < 1:
            raise MetricError(f"FID batch_size must be at least 1, got {batch_size}")
        self.network, self.weights_path = load_inception(inception_weights, device)
        self.device, self.batch_size = torch.device(device), batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "fid"

    def stats(self, images: Tensor) -> FeatureStats:
        return feature_stats(inception_features(images, self.network, self.batch_size))

    def reference_stats(self, ref: Reference | str | dict | Path) -> FeatureStats:
        from pytorch_fid.fid_score import compute_statistics_of_path

        ref = ref if isinstance(ref, Reference) else resolve_reference(ref)
        if ref.kind == "npz":
            return load_stats(ref.path)
        if ref.kind == "folder":
            with quiet_stdout():
                mu, sigma = compute_statistics_of_path(str(ref.path), self.network, self.batch_size, FID_DIMS,
                                                       self.device, num_workers=0)
            return FeatureStats(mu, sigma)
        images = ref.dataset.images
        key = {"metric": "fid", "data": ref.spec, "n": len(images), "dims": FID_DIMS,
               "weights_sha256": file_sha256(self.weights_path)}
        return cached_stats(self.cache_dir, key, lambda: self.stats(images))

    def __call__(self, images: Tensor, ref: Reference | str | dict | Path) -> float:
        """FID of ``images`` (n, C, H, W) in [−1, 1] against ``ref``."""
        return frechet_distance(self.stats(images), self.reference_stats(ref))


def fid(images: Tensor, ref: Reference | str | dict | Path, **options) -> float:
    """One FID; ``options`` are `FID`'s (inception_weights, device, batch_size, cache_dir)."""
    return FID(**options)(images, ref)
