"""The mapper embeds each decoded batch in every target vector space (one call per space)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import numpy as np
import torch

from indexer.pipeline.reader import DecodedBatch, Failure

T = TypeVar("T")
EmbedFn = Callable[[torch.Tensor], np.ndarray]


@dataclass
class EmbeddedBatch(Generic[T]):
    """The reader's batch with (n, dim) float32 vectors per space instead of tensors."""

    keys: list[int] = field(default_factory=list)
    items: list[T] = field(default_factory=list)
    metas: list[Any] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    last_key: int | None = None

    def __len__(self) -> int:
        return len(self.keys) + len(self.failures)


class Mapper:
    """Runs `embedders[space]` on the stacked tensors of that space.

    The one mapper of both runners. In-process it is called with a `DecodedBatch`; as a Ray
    Data actor class it is built in the actor with `load` (a picklable factory, so the model
    is loaded there, once, not shipped) and called with column batches (see columns.py),
    which it converts and embeds with the same code.

    A model error is not a per-item failure (every later batch would fail the same way), so
    it propagates and stops the job, which can then be resumed.
    """

    def __init__(
        self,
        embedders: Mapping[str, EmbedFn] | None = None,
        *,
        load: Callable[[], Mapping[str, EmbedFn]] | None = None,
    ) -> None:
        if (embedders is None) == (load is None):
            raise ValueError("give either embedders or load")
        self.embedders = dict(embedders if embedders is not None else load())  # type: ignore[misc]
        if not self.embedders:
            raise ValueError("at least one embed function is needed")

    @overload
    def __call__(self, batch: DecodedBatch[T]) -> EmbeddedBatch[T]: ...
    @overload
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def __call__(self, batch: Any) -> Any:
        if not isinstance(batch, DecodedBatch):  # a Ray Data batch of columns
            from indexer.pipeline import columns

            return columns.embedded_to_columns(self.embed(columns.columns_to_decoded(batch)))
        return self.embed(batch)

    def embed(self, batch: DecodedBatch[T]) -> EmbeddedBatch[T]:
        """Vectors for every decoded item of `batch`, per space; failures pass through."""
        out: EmbeddedBatch[T] = EmbeddedBatch(
            keys=batch.keys,
            items=batch.items,
            metas=batch.metas,
            failures=batch.failures,
            last_key=batch.last_key,
        )
        for space, embed in self.embedders.items():
            if not batch.keys:
                continue
            if space not in batch.tensors:
                raise KeyError(f"decoded batch has no tensors for space {space!r}")
            vectors = np.asarray(embed(batch.stacked(space)), dtype=np.float32)
            if vectors.shape[0] != len(batch.keys):
                raise ValueError(f"{space}: {vectors.shape[0]} vectors for {len(batch.keys)} items")
            out.vectors[space] = vectors
        return out
