"""Backbones: networks that map (x, level) to features or a scalar. Parameterisations live in
`ebmkit.energies`, the way EDM separates preconditioning from the U-Net."""

from ebmkit.networks.embedding import LevelEmbedding, sinusoidal_embedding
from ebmkit.networks.embed_mlp import EmbedMLP
from ebmkit.networks.mlp import TimeMLP
from ebmkit.registry import NETWORKS

__all__ = ["NETWORKS", "LevelEmbedding", "TimeMLP", "EmbedMLP", "sinusoidal_embedding"]
