"""Noise schedules: the discrete forward processes, level 0 = data, level T ≈ N(0, I)."""

from ebmkit.registry import SCHEDULES
from ebmkit.schedules.base import NoiseSchedule, ScheduleOptions
from ebmkit.schedules.ddpm import DDPMCosineSchedule, DDPMLinearSchedule
from ebmkit.schedules.drl import DRLSchedule
from ebmkit.schedules.logsnr import CosineLogSNRSchedule
from ebmkit.schedules.ve import VEGeometricSchedule
from ebmkit.schedules.vp import VPSchedule

__all__ = [
    "SCHEDULES",
    "NoiseSchedule",
    "ScheduleOptions",
    "DDPMLinearSchedule",
    "DDPMCosineSchedule",
    "DRLSchedule",
    "CosineLogSNRSchedule",
    "VPSchedule",
    "VEGeometricSchedule",
]
