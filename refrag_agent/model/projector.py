"""The projector: one chunk vector from the encoder -> one decoder input embedding."""

from __future__ import annotations

import torch
from torch import nn

from refrag_agent.model.config import ProjectorConfig


class Projector(nn.Module):
    """2-layer MLP, encoder width -> decoder hidden size (REFRAG's phi)."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        self.fc1 = nn.Linear(config.in_dim, config.hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.hidden_dim, config.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (..., in_dim) -> (..., out_dim)
        return self.fc2(self.act(self.fc1(x)))
