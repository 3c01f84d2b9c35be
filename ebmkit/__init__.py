"""ebmkit: interchangeable energy-based-model training algorithms on one trainer core."""

# Import order registers every built-in component before a recipe asks for one.
from ebmkit import data, divergences, energies, loggers, networks, samplers, schedules  # noqa: F401
from ebmkit._version import __version__
from ebmkit.api import Recipe
from ebmkit.model import EnergyModel
from ebmkit.recipes import RecipeError

__all__ = ["EnergyModel", "Recipe", "RecipeError", "__version__"]
