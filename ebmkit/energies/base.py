"""The energy contract: E_θ(x, t) ∈ R per sample, lower = more probable, at every level t."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmkit.compose import Declares
from ebmkit.schedules.base import NoiseSchedule


class Energy(nn.Module, Declares):
    """A parameterisation wrapped around a network (the backbone lives in `ebmkit.networks`).

    ``network_output`` says what the network must return: one scalar per sample ("scalar") or
    a tensor shaped like the data ("data", e.g. the U of E = ½‖x − U(x, t)‖²).
    """

    network_output: str = "scalar"

    def __init__(self, options, *, network: nn.Module, schedule: NoiseSchedule):
        super().__init__()
        self.config, self.network, self.schedule = options, network, schedule

    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_scale(self, t: Tensor) -> Tensor:
        """c_t with network output g = −c_t · E (1 unless the parameterisation rescales).

        Losses written on the network output (DRL's code) multiply the energy by it.
        """
        return torch.ones(t.shape, dtype=torch.float32, device=t.device)
