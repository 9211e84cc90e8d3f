"""Typed configuration of CTR training (pure pydantic: no torch import here)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TrainConfig(BaseModel):
    """CTR training settings (filled in by the TorchRec training issue)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = "data/encoded"
    vocab: str = "data/vocab"
    seed: int = 0
