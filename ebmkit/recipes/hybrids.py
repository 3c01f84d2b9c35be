"""Hybrid presets: one paper's algorithm with another paper's component, where the declarations
(`ebmkit.compose`) let them assemble and the swap asks a question. docs/recipes/hybrids.md says
which hybrids exist, which assemblies do not and why, and benchmarks/RESULTS.md how they fare.

Each hybrid is its parent preset with the swapped component and the one knob the swap moves:
the Langevin step. Under the constant c rule (c_t = 1/σ̄_0), s_t² = (b²/σ̄_0) σ²_{t+1}; b² is
chosen so that the level-0 step s_0 stays the parent's. Keeping s_t/σ_{t+1} instead (a larger
s_0 on a schedule whose first step σ_1 is larger) made `cdrl_vp` diverge on pinwheel,
swissroll and 25gaussians: the level-0 step is what thin structures bound
(docs/recipes/hybrids.md).
"""

from __future__ import annotations

from ebmkit.recipes.base import Recipe
from ebmkit.recipes.cdrl import cdrl
from ebmkit.recipes.ddaebm import ddaebm
from ebmkit.recipes.drl import drl
from ebmkit.registry import RECIPES, SCHEDULES


def on_schedule(parent: Recipe, schedule: dict, name: str, description: str) -> Recipe:
    """``parent`` (DRL's energy, constant c rule) on another schedule, with b² rescaled so that
    the level-0 Langevin step s_0 = √(b²/σ̄_0) σ_1 is the parent's."""
    if parent.energy.get("c_rule") != "constant":
        raise ValueError(f"on_schedule rescales the drl energy's b² under the constant c rule; "
                         f"'{parent.name}' has energy {parent.energy}")
    old, new = (SCHEDULES.build(s) for s in (parent.schedule, schedule))
    ratio = (new.sigmas_cumprod[0] / old.sigmas_cumprod[0]) * (old.sigmas[1] / new.sigmas[1]) ** 2
    b_square = float(f"{parent.energy['b_square'] * ratio.item():.3g}")
    recipe = parent.override({"description": description, "schedule": schedule, "energy.b_square": b_square})
    return recipe.model_copy(update={"name": name})


def ddaebm_schedule() -> dict:
    """DDAEBM's 2D VP schedule (T = 4, β ∈ [0.01, 4]) with DRL's untethered top level: the top
    EBM models x_{T−1} alone, so generation may start from N(0, I) although this x_T keeps 0.37 x_0."""
    return {**ddaebm().schedule, "untethered_top": True}


@RECIPES.register("drl_vp")
def drl_vp() -> Recipe:
    """DRL on DDAEBM's schedule: 4 levels instead of 6, so generation costs 4 × 30 gradient steps."""
    return on_schedule(drl(), ddaebm_schedule(), "drl_vp",
                       "Hybrid: DRL's Langevin recovery likelihood on DDAEBM's 4-level VP schedule, 2D preset")


@RECIPES.register("cdrl_vp")
def cdrl_vp() -> Recipe:
    """CDRL's initializer and refinement on DDAEBM's schedule: 4 levels instead of 6."""
    return on_schedule(cdrl(), ddaebm_schedule(), "cdrl_vp",
                       "Hybrid: CDRL's cooperative initializer on DDAEBM's 4-level VP schedule, 2D preset")
