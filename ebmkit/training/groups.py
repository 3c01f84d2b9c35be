"""The parameter groups a model trains, each with its optimizer's settings: the one place that
maps the recipe's training options to them. A plan's `Update` names a group; the trainer keeps
one optimizer per group and knows nothing else of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ParameterGroup:
    """name: what updates call it; module: whose parameters it clips and all-reduces;
    torch_groups: the optimizer's parameter groups (an ``lr_scale`` in one multiplies ``lr``)."""

    name: str
    module: nn.Module
    torch_groups: list[dict]
    optimizer: type[torch.optim.Optimizer]
    lr: float
    weight_decay: float
    grad_clip: float | None

    def parameters(self) -> list[nn.Parameter]:
        return list(self.module.parameters())


def parameter_groups(model, train) -> list[ParameterGroup]:
    """The energy's group (Adam at ``train.lr``) and, for a learnable sampler, the sampler's
    (AdamW at ``train.sampler_lr``, CDRL's choice), with their weight decay and clipping."""
    groups = [ParameterGroup("energy", model.energy, [{"params": list(model.energy.parameters())}], torch.optim.Adam,
                             train.lr, train.weight_decay, train.grad_clip)]
    if model.sampler.learnable:
        clip = train.grad_clip if train.sampler_grad_clip is None else train.sampler_grad_clip
        groups.append(ParameterGroup("sampler", model.sampler, model.sampler.optimizer_groups(), torch.optim.AdamW,
                                     train.sampler_lr or train.lr, train.sampler_weight_decay, clip))
    return groups
