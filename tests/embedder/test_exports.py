"""`embedder`'s public names load on first use (PEP 562) and still all resolve."""

from __future__ import annotations

import pytest

import embedder
import embedder.branches


def test_every_public_name_resolves_to_its_definition() -> None:
    for name in embedder.__all__:
        value = getattr(embedder, name)
        assert getattr(value, "__name__", name) == name, name
    assert set(embedder.__all__) <= set(dir(embedder))
    from embedder import Embedder, default_bundle_path  # the form the service uses

    assert Embedder.__module__ == "embedder.embedder"
    assert default_bundle_path().name == "baseline-colour-texture"


def test_branches_load_timm_only_on_request() -> None:
    from embedder.branches import ColourTextureBranch, TimmBranch

    assert TimmBranch.__module__ == "embedder.branches.timm_branch"
    assert ColourTextureBranch.__module__ == "embedder.branches.colour_texture"


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = embedder.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = embedder.branches.no_such_name  # type: ignore[attr-defined]
