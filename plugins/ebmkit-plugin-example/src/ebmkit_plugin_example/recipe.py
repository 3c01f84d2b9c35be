"""`rings_fourier`: the built-in DRL preset on `rings`, with this plugin's sampler and network."""

from ebmkit import Recipe


def rings_fourier() -> Recipe:
    """DRL on rings with Fourier features and annealed Langevin (the plugin example)."""
    return Recipe.from_name("drl").override({
        "name": "rings_fourier",
        "description": "DRL on rings: Fourier-feature MLP, annealed Langevin (ebmkit-plugin-example)",
        "data": "rings",
        "network": {"name": "fourier_mlp", "features": 64, "scale": 0.5, "width": 128, "depth": 2},
        "sampler": {"name": "annealed_langevin", "n_steps": 30, "final_noise_ratio": 0.5,
                    "generate_noise_scale": 0.99},
    })
