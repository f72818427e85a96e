"""Batch pipelines: reader -> mapper -> writer -> runner, with a resumable integer cursor.

Nothing here knows the database: the app hands in a source (pages of keyed items), a decode
function, embed functions and a commit function. `Runner` runs them in this process;
`ray_runner.RayRunner` (optional, needs Ray Data) runs the same decode and the same `Mapper`
on a Ray cluster and commits in the driver through the same writer.
"""

from indexer.pipeline.mapper import EmbeddedBatch, EmbedFn, Mapper
from indexer.pipeline.reader import Decoded, DecodedBatch, Failure, Reader, Source
from indexer.pipeline.runner import RunLoop, Runner, RunResult
from indexer.pipeline.writer import Chunk, ChunkWriter, CommitFn

__all__ = [
    "Chunk",
    "ChunkWriter",
    "CommitFn",
    "Decoded",
    "DecodedBatch",
    "EmbedFn",
    "EmbeddedBatch",
    "Failure",
    "Mapper",
    "Reader",
    "RunLoop",
    "RunResult",
    "Runner",
    "Source",
]
