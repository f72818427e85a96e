"""Branches: modules that turn a batch of [0, 1] images into one feature vector each.

`TimmBranch` loads on first use (PEP 562): timm pulls in torchvision (about 2 s), which the
weight-free baseline never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedder.branches.colour_texture import ColourTextureBranch

if TYPE_CHECKING:
    from embedder.branches.timm_branch import TimmBranch

__all__ = ["ColourTextureBranch", "TimmBranch"]


def __getattr__(name: str) -> Any:
    if name == "TimmBranch":
        from embedder.branches.timm_branch import TimmBranch

        return TimmBranch
    raise AttributeError(f"module 'embedder.branches' has no attribute {name!r}")
