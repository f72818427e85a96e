"""EmbeddingModel: branches -> per-branch L2 -> concat -> optional head -> L2; one module for
training and serving, so the two can never disagree."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embedder.branches.colour_texture import ColourTextureBranch
from embedder.config import BranchConfig, BundleConfig


class FusionHead(nn.Module):
    """Linear -> BatchNorm1d -> GELU, the learned projection of the reference design."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.proj(x)))


class EmbeddingModel(nn.Module):
    """(n, 3, H, W) in [0, 1] -> (n, dim) unit vectors. A single-backbone baseline and the dual
    model are this same class with a different list of branches."""

    def __init__(self, branches: list[nn.Module], head_dim: int | None = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        concat_dim = sum(int(b.out_dim) for b in branches)
        self.head = FusionHead(concat_dim, head_dim) if head_dim else None
        self.dim = head_dim or concat_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [F.normalize(branch(x).float(), dim=1, eps=1e-8) for branch in self.branches]
        fused = torch.cat(parts, dim=1)
        if self.head is not None:
            fused = self.head(fused)
        return F.normalize(fused.float(), dim=1, eps=1e-8)


def create_branch(cfg: BranchConfig) -> nn.Module:
    """Build one branch from its config (architecture only; weights are loaded separately)."""
    if cfg.kind == "colour_texture":
        return ColourTextureBranch(cfg.params)
    if not cfg.arch:
        raise ValueError(f"branch {cfg.name!r}: a timm branch needs `arch`")
    from embedder.branches.timm_branch import TimmBranch  # timm + torchvision: ~2 s, only here

    return TimmBranch(
        cfg.arch,
        img_size=cfg.img_size,
        mean=cfg.mean,
        std=cfg.std,
        pooling=cfg.pooling,
        model_kwargs=cfg.model_kwargs,
    )


def create_model(config: BundleConfig) -> EmbeddingModel:
    """The same module for training and serving; fills in `config.dim` if it is still 0."""
    model = EmbeddingModel([create_branch(b) for b in config.branches], config.fusion.head_dim)
    if config.dim and config.dim != model.dim:
        raise ValueError(f"config says dim={config.dim} but the model gives {model.dim}")
    config.dim = model.dim
    return model
