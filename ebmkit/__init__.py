"""ebmkit: interchangeable energy-based-model training algorithms on one trainer core."""

from importlib.metadata import PackageNotFoundError, version

# Import order registers every built-in component before a recipe asks for one.
from ebmkit import data, divergences, energies, networks, samplers, schedules  # noqa: F401
from ebmkit.model import EnergyModel
from ebmkit.recipes import Recipe, RecipeError

try:
    __version__ = version("torch-ebmkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["EnergyModel", "Recipe", "RecipeError", "__version__"]
