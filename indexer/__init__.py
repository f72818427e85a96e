"""Vector indexes (FAISS CPU/GPU, Milvus) and FAISS snapshots; batch pipelines live beside them."""

from indexer.faiss_index import FaissIndex
from indexer.filters import IdFilter
from indexer.placement import PlacementError, faiss_gpu_count, resolve_device
from indexer.snapshot import load_snapshot, save_snapshot
from indexer.vector_index import PAD_ID, PAD_SCORE, VectorIndex

__all__ = [
    "PAD_ID",
    "PAD_SCORE",
    "FaissIndex",
    "IdFilter",
    "PlacementError",
    "VectorIndex",
    "faiss_gpu_count",
    "load_snapshot",
    "resolve_device",
    "save_snapshot",
]
