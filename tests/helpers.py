"""Assertions and markers several test modules share."""

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ebmkit.data.images import FASHION_MNIST_ROOT

FASHION_MNIST_MISSING = "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; CI installs it)"
needs_fashion_mnist = pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).is_dir(), reason=FASHION_MNIST_MISSING)


def assert_one_line_error(result, *needles):
    """A CLI run failed with one line on stderr, no traceback, naming every needle."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_same_learned_energy(one, two, init, rtol=1e-3, n=256):
    """Two trained EnergyModels agree at every level up to an additive constant, within rtol of
    how far training moved the energy from ``init``. Not their raw parameters: a parameter with no
    true gradient (the output bias of a contrastive energy) takes full-size Adam steps on rounding
    noise, which differs between two equivalent computations."""
    import torch

    x = torch.randn(n, *one.shape, generator=torch.Generator().manual_seed(1)) * 2
    for level in range(one.schedule.num_levels):
        t = torch.full((n,), level)
        e_one, e_two, e_init = (m.energy(x, t).detach() for m in (one, two, init))
        e_one, e_two, e_init = (e - e.mean() for e in (e_one, e_two, e_init))
        learned = (e_one - e_init).abs().max()
        assert learned > 0.1, f"level {level}: training barely moved the energy ({learned:.3g})"
        gap = (e_two - e_one).abs().max()
        assert gap <= rtol * learned, f"level {level}: energies differ by {gap:.3g}, learned {learned:.3g}"


def checkpoint_step(run: Path) -> int:
    """The step of the checkpoint in ``run``, -1 while there is none (or it is half written)."""
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def sigkill_after_checkpoint(proc, run: Path, step: int) -> int:
    """kill -9 the training ``proc`` once ``run`` holds a checkpoint of at least ``step``; the
    step of the checkpoint it leaves."""
    deadline = time.time() + 300
    while checkpoint_step(run) < step and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return checkpoint_step(run)


def assert_same_checkpoints(ref: Path, cut: Path) -> dict:
    """The raw weights, EMA and optimizer files of two runs' checkpoints hold bitwise-equal tensors
    under the same names; the optimizer file's tensors are returned."""
    for name in ("model", "ema", "optimizer"):
        a = load_file(str(ref / "checkpoint" / f"{name}.safetensors"))
        b = load_file(str(cut / "checkpoint" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after resume"
    return a
