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
