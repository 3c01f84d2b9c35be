"""The public `Recipe`: the configuration of `ebmkit.recipes` with the two methods that reach up
into training and the Hub, defined here, above both, so that no layer imports one above it."""

from __future__ import annotations

from pathlib import Path

from ebmkit import recipes
from ebmkit.model import EnergyModel
from ebmkit.training import Trainer


class Recipe(recipes.Recipe):
    """One EBM training algorithm as data (`ebmkit.recipes.Recipe`), which trains itself:
    ``Recipe.from_name("drl").override({"train.steps": 500}).fit()``."""

    def fit(self, out: str | Path | None = None, *, progress: bool = True, overwrite: bool = False) -> EnergyModel:
        """Train and return the :class:`~ebmkit.model.EnergyModel` (EMA weights)."""
        return Trainer(self, out, overwrite=overwrite, progress=progress).fit()

    @staticmethod
    def from_pretrained(repo_id_or_path: str | Path, revision: str | None = None,
                        token: str | bool | None = None) -> EnergyModel:
        """The trained :class:`~ebmkit.model.EnergyModel` of a Hub repo or a local folder, as
        `fit` would have returned it (see `EnergyModel.from_pretrained`)."""
        return EnergyModel.from_pretrained(repo_id_or_path, revision=revision, token=token)
