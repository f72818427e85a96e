"""bench/_docs.py: a benchmark rewrites its own section of docs/benchmarks.md and nothing else."""

from __future__ import annotations

from pathlib import Path

from bench._docs import write_section

DOC = """# Benchmarks

## Vector search

old search

## Batch re-index

intro

### target model: vits

old vits

### target model: dual

old dual

## Service

old service
"""


def test_section_is_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(DOC)
    write_section(doc, "Vector search", "## Vector search\n\nnew search\n")
    text = doc.read_text()
    assert "new search" in text and "old search" not in text
    assert text.index("new search") < text.index("## Batch re-index")
    assert "old vits" in text and "old service" in text


def test_subsection_is_replaced_and_siblings_kept(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(DOC)
    write_section(
        doc, "Batch re-index", "### target model: vits\n\nnew vits\n", "target model: vits"
    )
    text = doc.read_text()
    assert "new vits" in text and "old vits" not in text
    assert "intro" in text and "old dual" in text and "old service" in text
    assert text.index("new vits") < text.index("old dual") < text.index("## Service")


def test_missing_sections_are_appended(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    write_section(
        doc, "Batch re-index", "### target model: baseline\n\nrows\n", "target model: baseline"
    )
    write_section(doc, "Service", "## Service\n\nservice rows\n")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.index("## Batch re-index") < text.index("### target model: baseline")
    assert text.index("rows") < text.index("## Service")
