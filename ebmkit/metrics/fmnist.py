"""FD-FMNIST: the Fréchet distance of Fashion-MNIST-like images in the feature space of a small
classifier trained on Fashion-MNIST, against the 10k test images.

Inception features (FID) were learned on ImageNet photographs and see 28×28 grey clothes
upsampled to 299×299; a classifier of the data set itself is the usual cheaper and more
telling yardstick there. Its 128-d penultimate layer (before the ReLU, so that no unit is
dead and the covariance has full rank) gives the features; the distance is pytorch-fid's
formula. The weights ship inside the package, trained by a seeded command:

    python -m ebmkit.metrics.fmnist train --out ebmkit/metrics/weights/fmnist_classifier.safetensors

Images are scored as their PNGs would be: ``to_uint8``, then x/127.5 − 1 (the data sets' scale).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmkit.digest import file_sha256
from ebmkit.metrics.frechet import (FeatureStats, MetricError, as_uint8_images, cache_root, cached_stats, feature_stats,
                                    frechet_distance)

WEIGHTS = Path(__file__).parent / "weights" / "fmnist_classifier.safetensors"
FEATURE_DIM = 128
SHAPE = (1, 28, 28)


class FashionClassifier(nn.Module):
    """Three conv blocks (28 → 14 → 7 → 3), a 128-d feature layer, a 10-way head."""

    def __init__(self):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

        self.body = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), nn.Flatten(),
                                  nn.Linear(64 * 3 * 3, FEATURE_DIM))
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(FEATURE_DIM, 10))

    def features(self, x: Tensor) -> Tensor:
        """(n, 1, 28, 28) in [−1, 1] → (n, 128), the features FD-FMNIST compares."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def load_classifier(weights: str | Path = WEIGHTS, device: str | torch.device = "cpu") -> FashionClassifier:
    """The trained classifier in eval mode (safetensors: nothing is unpickled)."""
    from ebmkit.files import load_tensors

    path = Path(weights).expanduser()
    if not path.is_file():
        raise MetricError(f"Fashion-MNIST classifier weights '{path}' not found; the package ships them at "
                          f"'{WEIGHTS}' (python -m ebmkit.metrics.fmnist train --out PATH makes them)")
    net = FashionClassifier()
    try:
        net.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as exc:  # other tensors: another network's weights
        raise MetricError(f"'{path}' is not the Fashion-MNIST classifier's weights: {str(exc).splitlines()[0]}") from None
    return net.eval().to(device)


def read_labels(root: str | Path | None, split: str) -> np.ndarray:
    """The class labels 0..9 of a Fashion-MNIST split, from ``{train,t10k}-labels-idx1-ubyte[.gz]``."""
    from ebmkit.data.images import FASHION_MNIST_ROOT, find_file, read_idx

    folder = Path(root or FASHION_MNIST_ROOT).expanduser()
    stem = ("train" if split == "train" else "t10k") + "-labels-idx1-ubyte"
    path = find_file(folder, stem)
    if path is None:
        raise MetricError(f"Fashion-MNIST labels not found: no {stem}[.gz] in '{folder}' "
                          "(on Debian/Ubuntu: apt-get install dataset-fashion-mnist)")
    labels = read_idx(path)
    if labels.ndim != 1 or labels.max(initial=0) > 9:
        raise MetricError(f"'{path}' holds {labels.shape} values up to {labels.max(initial=0)}, not labels 0..9")
    return labels


def fashion_mnist(split: str, root: str | Path | None = None):
    """The built-in ``fashion_mnist`` data set of one split (uint8 images in ``.images``)."""
    from ebmkit.registry import DATASETS

    spec = {"name": "fashion_mnist", "split": split, **({"root": str(root)} if root else {})}
    return DATASETS.build(spec)


def _scaled(pixels: Tensor) -> Tensor:
    return pixels.to(torch.float32) / 127.5 - 1.0


@torch.no_grad()
def classifier_features(images: Tensor, net: FashionClassifier, batch_size: int = 1000) -> np.ndarray:
    """128-d features (n, 128), float64, of 28×28 grey images in [−1, 1] (or uint8)."""
    pixels = as_uint8_images(images, "FD-FMNIST")
    if tuple(pixels.shape[1:]) != SHAPE:
        raise MetricError(f"FD-FMNIST needs 28×28 grey images (n, 1, 28, 28), got {tuple(images.shape)}")
    device = next(net.parameters()).device
    out = [net.features(_scaled(chunk).to(device)).double().cpu() for chunk in pixels.split(batch_size)]
    return torch.cat(out).numpy()


class FDFMNIST:
    """The classifier, loaded once, scoring images against the test split's statistics
    (cached under ``cache_dir``, default ``cache_root()/fd_fmnist``, keyed by the data spec
    and the weights' sha256)."""

    def __init__(self, weights: str | Path = WEIGHTS, device: str | torch.device = "cpu",
                 cache_dir: str | Path | None = None, root: str | Path | None = None):
        self.weights = Path(weights).expanduser()
        self.net = load_classifier(self.weights, device)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "fd_fmnist"
        self.root = root
        self._reference: FeatureStats | None = None

    @classmethod
    def for_data(cls, data_spec, device: str | torch.device = "cpu") -> "FDFMNIST":
        """The scorer for a model of ``data_spec``: a ``fashion_mnist`` spec's ``root`` also
        locates the test split; any other data scores against the default location."""
        spec = data_spec if isinstance(data_spec, dict) else {"name": data_spec}
        return cls(device=device, root=spec.get("root") if spec["name"] == "fashion_mnist" else None)

    def stats(self, images: Tensor) -> FeatureStats:
        return feature_stats(classifier_features(images, self.net))

    def reference_stats(self) -> FeatureStats:
        """The test split's statistics: read (or computed and cached) once per scorer, so a
        training run's periodic evaluations do not re-read the data set and hash the weights."""
        if self._reference is None:
            test = fashion_mnist("test", self.root)
            key = {"metric": "fd_fmnist", "data": {"name": "fashion_mnist", **test.config.model_dump(mode="json")},
                   "n": len(test), "weights_sha256": file_sha256(self.weights)}
            self._reference = cached_stats(self.cache_dir, key, lambda: self.stats(test.images))
        return self._reference

    def __call__(self, images: Tensor) -> float:
        return frechet_distance(self.stats(images), self.reference_stats())


def fd_fmnist(images: Tensor, **options) -> float:
    """FD-FMNIST of images (n, 1, 28, 28) in [−1, 1]; ``options`` are `FDFMNIST`'s."""
    return FDFMNIST(**options)(images)


@torch.no_grad()
def accuracy(net: FashionClassifier, images: Tensor, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Fraction of uint8 images (n, 1, 28, 28) classified as their label."""
    correct = 0
    for x, y in zip(images.split(batch_size), torch.as_tensor(labels).long().split(batch_size)):
        correct += int((net(_scaled(x)).argmax(1) == y).sum())
    return correct / len(images)


def train(out: str | Path, epochs: int = 5, seed: int = 0, batch_size: int = 128, lr: float = 3e-3,
          root: str | Path | None = None) -> dict:
    """Train on the 60k training images with their labels (Adam, one-cycle learning rate),
    seeded; save safetensors to ``out``; return the test accuracy and the time it took."""
    from safetensors.torch import save_file

    start = time.time()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images, labels = fashion_mnist("train", root).images, torch.as_tensor(read_labels(root, "train")).long()
    if len(images) != len(labels):
        raise MetricError(f"Fashion-MNIST train split: {len(images)} images but {len(labels)} labels")
    net = FashionClassifier()
    steps_per_epoch = len(images) // batch_size
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(images), generator=g)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(net(_scaled(images[idx])), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    net.eval()
    test = fashion_mnist("test", root)
    result = {"test_accuracy": accuracy(net, test.images, read_labels(root, "test")), "seconds": time.time() - start,
              "epochs": epochs, "seed": seed}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {k: str(result[k]) for k in ("test_accuracy", "epochs", "seed")}  # no timing: a seed fixes the file's content
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out), metadata=metadata)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ebmkit.metrics.fmnist",
                                     description="Train the classifier whose features define FD-FMNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on Fashion-MNIST's train split, report test accuracy, save safetensors")
    t.add_argument("--out", default=str(WEIGHTS), help="safetensors file to write (default: the packaged weights)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--root", default=None, help="folder with the Fashion-MNIST IDX files (default: Debian's)")
    args = parser.parse_args(argv)
    result = train(args.out, epochs=args.epochs, seed=args.seed, root=args.root)
    print(f"test accuracy {result['test_accuracy']:.4f} after {args.epochs} epochs in {result['seconds']:.0f} s "
          f"→ {args.out}")


if __name__ == "__main__":
    main()
