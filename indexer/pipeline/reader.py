"""The reader pages keyed items from a source in key order and decodes them in a thread pool.

Decoding (file read, JPEG decode, resize) runs ahead of the consumer in `workers` threads, so
the model never waits for it while the CPU has room; results come back in key order, so a
batch's largest key is a safe resume cursor. A failing item becomes a `Failure`, never an
exception: one bad file must not stop a job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Source(Protocol[T_co]):
    """Pages of (key, item) with key > after, ascending; an empty page means the end."""

    def fetch(self, after: int | None, limit: int) -> Sequence[tuple[int, T_co]]: ...


@dataclass
class Decoded:
    """One decoded item: a preprocessed (C, H, W) tensor per target space, plus metadata."""

    tensors: Mapping[str, torch.Tensor]
    meta: Any = None


@dataclass(frozen=True)
class Failure:
    """An item that could not be decoded; `error` is safe to store and show."""

    key: int
    item: Any
    error: str


@dataclass
class DecodedBatch(Generic[T]):
    """Decoded items in key order; `last_key` covers failures too (the resume cursor)."""

    keys: list[int] = field(default_factory=list)
    items: list[T] = field(default_factory=list)
    metas: list[Any] = field(default_factory=list)
    tensors: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    last_key: int | None = None

    def __len__(self) -> int:
        return len(self.keys) + len(self.failures)

    def stacked(self, space: str) -> torch.Tensor:
        """The (n, C, H, W) batch of one space."""
        return torch.stack(self.tensors[space])

    def add(self, key: int, item: T, result: Decoded | BaseException) -> None:
        """Append one item's decode result (a failure when it is an exception)."""
        self.last_key = key
        if isinstance(result, BaseException):
            self.failures.append(Failure(key, item, describe_error(result)))
            return
        self.keys.append(key)
        self.items.append(item)
        self.metas.append(result.meta)
        for space, tensor in result.tensors.items():
            self.tensors.setdefault(space, []).append(tensor)


def describe_error(exc: BaseException) -> str:
    """A short, storable description: `code: message` for errors that carry a code."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{code}: {message}" if isinstance(code, str) else f"{type(exc).__name__}: {message}"


class Reader(Generic[T]):
    """Iterate `DecodedBatch`es of up to `batch_size` items, decoding `prefetch` batches ahead."""

    def __init__(
        self,
        source: Source[T],
        decode: Callable[[T], Decoded],
        *,
        batch_size: int = 64,
        workers: int = 2,
        after: int | None = None,
        page_size: int = 1_000,
        prefetch: int = 2,
    ) -> None:
        if batch_size <= 0 or workers <= 0 or page_size <= 0:
            raise ValueError("batch_size, workers and page_size must be positive")
        self.source = source
        self.decode = decode
        self.batch_size = batch_size
        self.workers = workers
        self.after = after
        self.page_size = page_size
        self.in_flight = batch_size * (prefetch + 1)

    def _items(self) -> Iterator[tuple[int, T]]:
        after = self.after
        while True:
            page = self.source.fetch(after, self.page_size)
            if not page:
                return
            for key, item in page:
                if after is not None and key <= after:
                    raise ValueError(f"source returned key {key} after {after}: not ascending")
                after = key
                yield key, item

    def __iter__(self) -> Iterator[DecodedBatch[T]]:
        pending: deque[tuple[int, T, Future[Decoded]]] = deque()
        items = self._items()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pipeline-decode") as pool:
            try:
                batch: DecodedBatch[T] = DecodedBatch()
                exhausted = False
                while True:
                    while not exhausted and len(pending) < self.in_flight:
                        nxt = next(items, None)
                        if nxt is None:
                            exhausted = True
                            break
                        pending.append((nxt[0], nxt[1], pool.submit(self.decode, nxt[1])))
                    if not pending:
                        break
                    key, item, fut = pending.popleft()
                    self._collect(batch, key, item, fut)
                    if len(batch) >= self.batch_size:
                        yield batch
                        batch = DecodedBatch()
                if len(batch):
                    yield batch
            finally:
                for _, _, fut in pending:
                    fut.cancel()

    @staticmethod
    def _collect(batch: DecodedBatch[T], key: int, item: T, fut: Future[Decoded]) -> None:
        try:
            decoded: Decoded | BaseException = fut.result()
        except Exception as exc:  # noqa: BLE001 - recorded per item; the job goes on
            decoded = exc
        batch.add(key, item, decoded)


def decode_batch(pairs: Iterable[tuple[int, T]], decode: Callable[[T], Decoded]) -> DecodedBatch[T]:
    """Decode (key, item) pairs in this thread, in the order given (a Ray decode task)."""
    batch: DecodedBatch[T] = DecodedBatch()
    for key, item in pairs:
        try:
            decoded: Decoded | BaseException = decode(item)
        except Exception as exc:  # noqa: BLE001 - recorded per item; the job goes on
            decoded = exc
        batch.add(key, item, decoded)
    return batch
