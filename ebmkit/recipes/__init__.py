"""Recipes: the four papers' algorithms as declarative presets on one trainer core."""

from ebmkit.recipes import cdrl, ddaebm, drl, dsm, dxmi, hybrids, images, pcd  # noqa: F401  (registers the presets)
from ebmkit.recipes.base import COMPONENTS, EvalConfig, Recipe, RecipeError, TrainConfig

__all__ = ["Recipe", "RecipeError", "TrainConfig", "EvalConfig", "COMPONENTS"]
