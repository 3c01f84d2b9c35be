"""Level embeddings and the time-conditioned MLP."""

import math

import pytest
import torch

from ebmkit.networks import LevelEmbedding, sinusoidal_embedding
from ebmkit.registry import NETWORKS


def test_sinusoidal_embedding_by_hand():
    t = torch.tensor([0.0, 3.0, 500.0])
    emb = sinusoidal_embedding(t, 8)
    freqs = [10_000 ** (-k / 3) for k in range(4)]
    for i, ti in enumerate(t.tolist()):
        want = [math.sin(ti * f) for f in freqs] + [math.cos(ti * f) for f in freqs]
        assert torch.allclose(emb[i], torch.tensor(want), atol=1e-5)


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_mlp_is_level_conditioned(kind):
    torch.manual_seed(0)
    net = NETWORKS.build({"name": "mlp", "width": 32, "depth": 2, "embedding": kind}, dim=2, num_levels=6)
    x = torch.randn(5, 2)
    out0, out3 = net(x, torch.zeros(5, dtype=torch.long)), net(x, torch.full((5,), 3))
    assert out0.shape == (5,)
    assert not torch.allclose(out0, out3)  # the level changes the output
    assert torch.equal(net(x, torch.full((5,), 3)), out3)


def test_learned_embedding_has_a_row_per_level():
    emb = LevelEmbedding(6, 4, "learned")
    assert emb.table.weight.shape == (7, 4)
    with pytest.raises(ValueError, match="sinusoidal' or 'learned"):
        LevelEmbedding(6, 4, "fourier")


def test_spectral_norm_bounds_every_linear_layer():
    torch.manual_seed(0)
    net = NETWORKS.build({"name": "mlp", "width": 32, "depth": 2, "spectral_norm": True}, dim=2, num_levels=6)
    x, t = torch.randn(64, 2), torch.randint(0, 6, (64,))
    for _ in range(30):  # one power iteration per training-mode forward
        net(x, t)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 + 2 * 2 + 1 + 1  # temb (2), blocks (2 each), input, head
    for layer in linears:
        assert torch.linalg.matrix_norm(layer.weight.detach(), 2) == pytest.approx(1.0, abs=0.02)


def test_ema_copy_tracks_spectral_norm_buffers(tmp_path):
    from ebmkit import Recipe
    from ebmkit.training import Trainer

    recipe = Recipe.from_name("drl").override({
        "network.width": 16, "network.depth": 1, "network.spectral_norm": True, "sampler.n_steps": 2,
        "train.batch_size": 32, "train.steps": 5,
    })
    fresh = Trainer(recipe, tmp_path / "unused", progress=False)
    fresh._setup()  # same seed: the initial power-iteration vectors
    initial = fresh.model.state_dict()
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.fit()
    ema = trainer.ema.module.state_dict()
    u_keys = [k for k in initial if k.endswith("_u") and initial[k].numel() > 1]  # a 1-vector is ±1
    assert u_keys
    for key in u_keys:  # averaged like the weights; a stale copy would keep the initial ones
        assert not torch.equal(ema[key], initial[key]), key
