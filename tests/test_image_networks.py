"""The image networks (U-Net, ResNet) and how components build networks for image data."""

import pytest
import torch

from ebmkit.networks import build_network
from ebmkit.registry import NETWORKS, ComponentError

SHAPE = (1, 28, 28)
UNET = {"name": "unet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [14],
        "latent_embedding_dim": 32, "mapping_layers": 1}
RESNET = {"name": "resnet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "embedding_dim": 32,
          "temb_dim": 64}
DIM = 28 * 28


def levels(n, t):
    return torch.full((n,), t, dtype=torch.long)


def randomise(net):
    """Zero-initialised output layers hide what the body computes; give every weight a value.
    Eval mode: dropout off, spectral norm's power iteration frozen, so calls are comparable."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return net.eval()


def test_unet_keeps_the_image_shape_and_starts_at_zero():
    torch.manual_seed(0)
    net = build_network(UNET, shape=SHAPE, num_levels=4, out_dim=DIM)
    x = torch.randn(3, *SHAPE)
    out = net(x, levels(3, 2))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # the output conv starts at zero (E = ½‖x‖² under residual_norm)


def test_unet_is_level_and_latent_conditioned():
    net = randomise(build_network(UNET, shape=SHAPE, num_levels=4, out_dim=DIM, cond_dim=8))
    x, z = torch.randn(2, *SHAPE), torch.randn(2, 8)
    base = net(x, levels(2, 1), z)
    assert not torch.allclose(base, net(x, levels(2, 3), z))
    assert not torch.allclose(base, net(x, levels(2, 1), torch.randn(2, 8)))
    assert torch.equal(base, net(x, levels(2, 1), z))
    with pytest.raises(ValueError, match="latent-conditioned"):
        net(x, levels(2, 1))


def test_unet_attention_sits_at_the_asked_resolutions():
    net = build_network({**UNET, "attn_resolutions": [14]}, shape=SHAPE, num_levels=4, out_dim=DIM)
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
             for m in net.modules() if type(m).__name__ == "Attention"]
    net(torch.randn(1, *SHAPE), levels(1, 0))
    for h in hooks:
        h.remove()
    assert set(sizes) == {14}  # the 14×14 level (down and up paths) and the middle
    assert len(sizes) == 1 + 2 + 1


def test_unet_tanh_output_is_bounded():
    net = randomise(build_network({**UNET, "output": "tanh"}, shape=SHAPE, num_levels=4, out_dim=DIM))
    out = net(10 * torch.randn(2, *SHAPE), levels(2, 0))
    assert out.abs().max() <= 1 and out.abs().max() > 0.1


def test_unet_says_what_it_cannot_do():
    with pytest.raises(ComponentError, match="image data"):
        build_network(UNET, shape=(2,), num_levels=4, out_dim=2)
    with pytest.raises(ComponentError, match="data's shape"):
        build_network(UNET, shape=SHAPE, num_levels=4, out_dim=1)
    with pytest.raises(ComponentError, match="cannot be halved"):
        build_network({**UNET, "channel_mult": [1, 1, 1, 1]}, shape=SHAPE, num_levels=4, out_dim=DIM)


def test_resnet_gives_one_energy_per_image_and_depends_on_the_level():
    net = randomise(build_network(RESNET, shape=SHAPE, num_levels=6, out_dim=1))
    x = torch.randn(4, *SHAPE)
    e = net(x, levels(4, 0))
    assert e.shape == (4,)
    assert not torch.allclose(e, net(x, levels(4, 5)))
    # images are independent in the batch: one image's energy does not see the others
    assert torch.allclose(net(x[:1], levels(1, 0)), e[:1], atol=1e-5)


def test_resnet_temb_head_is_the_level_weighted_pixel_sum():
    """DRL's head: g = Σ_c w_c(t) Σ_hw relu(h)_chw — linear in the summed features."""
    net = randomise(build_network({**RESNET, "spectral_norm": False}, shape=SHAPE, num_levels=6, out_dim=1))
    captured = {}
    net.blocks[-1].register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    x, t = torch.randn(2, *SHAPE), levels(2, 3)
    g = net(x, t)
    temb = net.temb(net.level_embedding(t))
    w = net.head(torch.nn.functional.leaky_relu(temb, 0.2))
    assert torch.allclose(g, (captured["h"].relu().sum((2, 3)) * w).sum(1), rtol=1e-5)


def test_resnet_spectral_norm_bounds_every_conv():
    torch.manual_seed(0)
    net = build_network(RESNET, shape=SHAPE, num_levels=6, out_dim=1)
    x, t = torch.randn(8, *SHAPE), torch.randint(0, 6, (8,))
    for _ in range(30):
        net(x, t)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 2 + 1  # input, two per block, one shortcut
    for conv in convs:  # torch's convention: the spectral norm of the weight reshaped to (out, in·k·k)
        assert torch.linalg.matrix_norm(conv.weight.detach().flatten(1), 2) == pytest.approx(1.0, abs=0.02)


def test_resnet_linear_head_gives_vectors_and_temb_head_refuses_them():
    net = build_network({**RESNET, "head": "linear"}, shape=(2, 28, 28), num_levels=4, out_dim=16)
    assert net(torch.randn(3, 2, 28, 28), levels(3, 1)).shape == (3, 16)
    with pytest.raises(ComponentError, match="head 'temb' gives one scalar"):
        build_network(RESNET, shape=SHAPE, num_levels=4, out_dim=16)


@pytest.mark.parametrize("activation, smooth", [("lrelu", False), ("silu", True)])
def test_resnet_silu_gives_a_smooth_gradient_field_and_lrelu_a_piecewise_constant_one(activation, smooth):
    """The leaky-ReLU net is piecewise linear, so its Hessian-vector product is exactly 0 (∇ₓE is
    piecewise constant); SiLU's is not."""
    net = randomise(build_network({**RESNET, "head": "linear", "spectral_norm": False, "activation": activation},
                                  shape=SHAPE, num_levels=1, out_dim=1))
    x = torch.randn(1, *SHAPE, requires_grad=True)
    v = torch.randn_like(x)
    (g,) = torch.autograd.grad(net(x, levels(1, 0)).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x, allow_unused=True, materialize_grads=True)
    assert (hv.abs().max() > 1e-6) == smooth
    if activation == "silu":  # every nonlinearity replaced: the features are SiLU's, not ReLU's
        captured = {}
        net.blocks[-1].register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
        e = net(x, levels(1, 0))
        torch.testing.assert_close(e, net.head(torch.nn.functional.silu(captured["h"]).sum((2, 3))).squeeze(1))


def test_a_vector_network_on_images_names_the_image_networks():
    with pytest.raises(ComponentError, match="'mlp' does not take shape=.*use one of: unet, resnet"):
        build_network({"name": "mlp"}, shape=SHAPE, num_levels=4, out_dim=1)


def test_mlps_take_a_latent_by_concatenation():
    torch.manual_seed(0)
    for spec in ({"name": "mlp", "width": 16, "depth": 1}, {"name": "embed_mlp"}):
        net = NETWORKS.build(spec, dim=2, num_levels=4, out_dim=2, cond_dim=3)
        x, z = torch.randn(5, 2), torch.randn(5, 3)
        assert net(x, levels(5, 1), z).shape == (5, 2)
        first = net.inp if hasattr(net, "inp") else net.x_net[0]
        assert first.in_features == 2 + 3
