"""Energy parameterisations E_θ(x, t) (lower = more probable, everywhere in ebmkit)."""

from ebmkit.energies.base import Energy
from ebmkit.energies.residual import ResidualNormEnergy
from ebmkit.energies.scalar import DRLScaledEnergy, ScalarEnergy
from ebmkit.registry import ENERGIES

__all__ = ["ENERGIES", "Energy", "ScalarEnergy", "DRLScaledEnergy", "ResidualNormEnergy"]
