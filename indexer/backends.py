"""Open a VectorIndex by backend name, and Milvus generations (one collection per model).

``open_index("faiss", dim=...)`` is the in-process FAISS index (its generations stay the
snapshot files of indexer/snapshot.py). ``open_index("milvus", uri=..., model_id=..., dim=...)``
is that model's Milvus collection; the URI is a ``.db`` file path (Milvus Lite, one process
per file: tests and single-process use) or ``http(s)://host:port`` (a server, shared by
several workers and hosts).

Generations on Milvus: each embedding model gets its own collection, named
``<prefix>_<model slug, 16 chars>_<8 hex of the model id's SHA-1>`` (the hash keeps two models
with the same 16-character prefix apart), so a new model may have a new dimension. The alias
``<prefix>_current`` names the active one; a re-index fills the new model's collection while
searches go through the old one, then :meth:`MilvusGenerations.activate` moves the alias in one
``alter_alias`` call (atomic on the server: every search sees the old or the new collection).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pymilvus import MilvusClient

from indexer.faiss_index import FaissIndex
from indexer.milvus_index import MilvusIndex
from indexer.vector_index import VectorIndex

Backend = Literal["faiss", "milvus"]
DEFAULT_PREFIX = "endoseek"
_SERVER = re.compile(r"^(https?|tcp)://", re.IGNORECASE)


def is_lite_uri(uri: str) -> bool:
    """True when `uri` names a Milvus Lite file (anything that is not a server address)."""
    return not _SERVER.match(uri) and not uri.startswith("unix:")


def connect(
    uri: str, *, token: str = "", ca_pem_path: str | None = None, timeout: float = 30.0
) -> MilvusClient:
    """A client for a Milvus Lite file (``*.db``) or server (``http(s)://host:port``).

    ``https://`` turns TLS on; ``ca_pem_path`` names a CA/server certificate to trust
    (a private CA). ``token`` is ``user:password`` or an API key.
    """
    if is_lite_uri(uri):
        path = Path(uri).expanduser().resolve()
        if path.suffix != ".db":
            raise ValueError(f"a Milvus Lite URI must be a file path ending in .db, got {uri!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return MilvusClient(uri=str(path), timeout=timeout)
    kw: dict[str, Any] = {"token": token, "timeout": timeout}
    if ca_pem_path:
        kw.update(secure=True, server_pem_path=ca_pem_path)
    return MilvusClient(uri=uri, **kw)


def close(client: MilvusClient, uri: str) -> None:
    """Close a client; for Milvus Lite also stop this process's server for the file, so
    another process may open it (Lite allows one process per file)."""
    client.close()
    if is_lite_uri(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(Path(uri).expanduser().resolve()))


def collection_name(model_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The Milvus collection that holds `model_id`'s vectors (valid Milvus name)."""
    slug = re.sub(r"[^0-9A-Za-z_]", "_", model_id)[:16]
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:8]
    return f"{prefix}_{slug}_{digest}"


@dataclass
class MilvusGenerations:
    """One collection per model behind the alias ``<prefix>_current``."""

    client: MilvusClient
    prefix: str = DEFAULT_PREFIX
    index_kw: dict[str, Any] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return f"{self.prefix}_current"

    def collection(self, model_id: str) -> str:
        return collection_name(model_id, self.prefix)

    def open(self, model_id: str, dim: int | None = None) -> MilvusIndex:
        """The model's collection as an index (created when `dim` is given and it is missing)."""
        return MilvusIndex(
            self.client, self.collection(model_id), dim, description=model_id, **self.index_kw
        )

    def current(self) -> MilvusIndex:
        """The active collection, through the alias. Reads and writes follow later flips, but
        the dimension is read once: open it again after :meth:`activate` changed models."""
        return MilvusIndex(self.client, self.alias, **self.index_kw)

    def active_collection(self) -> str | None:
        """The collection the alias points at, or None before the first activation."""
        if self.alias not in self.client.list_aliases().get("aliases", []):
            return None
        return str(self.client.describe_alias(self.alias)["collection_name"])

    def is_active(self, model_id: str) -> bool:
        """Whether searches through the alias reach `model_id`'s collection."""
        return self.active_collection() == self.collection(model_id)

    def activate(self, model_id: str) -> None:
        """Point the alias at `model_id`'s collection (which must exist), atomically."""
        target = self.collection(model_id)
        if not self.client.has_collection(target):
            raise LookupError(f"no Milvus collection for model {model_id!r} ({target})")
        if self.alias in self.client.list_aliases().get("aliases", []):
            self.client.alter_alias(target, self.alias)
        else:
            self.client.create_alias(target, self.alias)

    def drop(self, model_id: str) -> None:
        """Drop a model's collection (refused while the alias points at it)."""
        target = self.collection(model_id)
        if not self.client.has_collection(target):
            return
        if self.alias in self.client.list_aliases(target).get("aliases", []):
            raise ValueError(f"{target} is the active collection ({self.alias}); flip first")
        self.client.drop_collection(target)


def open_index(
    backend: Backend,
    *,
    dim: int,
    model_id: str = "",
    uri: str = "",
    token: str = "",
    ca_pem_path: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    client: MilvusClient | None = None,
    **kw: Any,
) -> VectorIndex:
    """A VectorIndex of the named backend; `kw` are the backend's own index options.

    faiss: ``FaissIndex(dim, **kw)`` (empty; the service loads snapshots itself).
    milvus: the collection of `model_id` at `uri` (created when missing); pass ``client`` to
    share one connection between several indexes.
    """
    if backend == "faiss":
        return FaissIndex(dim, **kw)
    if backend == "milvus":
        if not model_id:
            raise ValueError("the milvus backend needs the model_id (one collection per model)")
        if client is None:
            if not uri:
                raise ValueError("the milvus backend needs a URI (a .db file or http(s)://...)")
            client = connect(uri, token=token, ca_pem_path=ca_pem_path)
        return MilvusGenerations(client, prefix, kw).open(model_id, dim)
    raise ValueError(f"unknown vector backend {backend!r} (faiss or milvus)")
