"""Recipes: the four papers' algorithms as declarative presets on one trainer core."""

# importing each preset module registers its presets
from ebmkit.recipes import cdrl, ddaebm, drl, dsm, dxmi, energy_matching, hybrids, images, pcd  # noqa: F401
from ebmkit.recipes.base import COMPONENTS, EvalConfig, Recipe, RecipeError, TrainConfig

__all__ = ["Recipe", "RecipeError", "TrainConfig", "EvalConfig", "COMPONENTS"]
