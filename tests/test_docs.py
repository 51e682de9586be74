"""Citations in the code point inside the repository.

Code, tests, benchmarks and workflow files cite the project's own documents as
``docs/<name>.md §N`` (a numbered section) or ``docs/<name>.md F<n>`` (a numbered flaw of the
published code in ``docs/model.md``). Every such citation must name a document that exists and a
section or flaw that it defines, and nothing may cite documents kept outside the repository.
``tests/fixtures/reference`` is exempt: it is data made outside this repository with the
published code and is kept as it was delivered.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("avfmae", "tests", "benchmarks", "workflow")
EXEMPT = (Path("tests/fixtures/reference"),)
SUFFIXES = {".py", ".smk", ".md", ".yaml", ".yml", ".json", ".jsonl", ".sh", ".toml", ""}

# Documents outside the repository that code must no longer cite (spelled in pieces so that this
# file does not cite them itself).
OUTSIDE = re.compile(r"\b" + "SP" + r"EC\b|\b" + "DES" + r"IGN\b|\.\./" + "shared" + r"\b")

_ID = r"\d+(?:\.\d+)*"
_REF = rf"(?:§{_ID}(?:\s*[–-]\s*§?{_ID})?|F\d+)"
# ``docs/model.md §5.4–5.5, §6.4, F12`` in code; ``[`model.md` §7](model.md)`` between docs
CITATION = re.compile(
    rf"(?:docs/|`)(?P<doc>[\w-]+)\.md`?(?P<refs>(?:\s*,?\s*(?:and\s+)?{_REF})+)")
SECTION_HEADING = re.compile(rf"^#{{2,6}}\s+(?P<id>{_ID})\s", re.MULTILINE)
FLAW_ITEM = re.compile(r"^\s*[-*]\s+\*\*(?P<id>F\d+)\b", re.MULTILINE)


def defined_ids(markdown: str) -> set[str]:
    """Section numbers (``3``, ``3.2``) of the numbered headings and flaw ids (``F12``) of the
    bold list items of a document."""
    sections = {m["id"] for m in SECTION_HEADING.finditer(markdown)}
    flaws = {m["id"] for m in FLAW_ITEM.finditer(markdown)}
    return sections | flaws


def cited_ids(refs: str) -> list[str]:
    """``§5.4–5.5, §6.4, F12`` → ``["5.4", "5.5", "6.4", "F12"]``."""
    return re.findall(rf"F\d+|{_ID}", refs)


def bad_citations(text: str, docs: dict[str, set[str]]) -> list[str]:
    """Citations in ``text`` of a missing document or of an id the document does not define;
    ``docs`` maps a document name (``model``) to its defined ids."""
    bad = []
    for m in CITATION.finditer(text):
        doc = m["doc"]
        if doc not in docs:
            bad.append(f"{m.group(0).strip()}: no docs/{doc}.md")
            continue
        missing = [i for i in cited_ids(m["refs"]) if i not in docs[doc]]
        if missing:
            bad.append(f"{m.group(0).strip()}: docs/{doc}.md defines no {', '.join(missing)}")
    return bad


def repo_docs() -> dict[str, set[str]]:
    return {p.stem: defined_ids(p.read_text()) for p in (ROOT / "docs").glob("*.md")}


def scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if (path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in rel.parts
                    and not any(rel.is_relative_to(e) for e in EXEMPT)):
                files.append(path)
    return files


def test_no_citation_of_documents_outside_the_repository():
    found = []
    for path in scanned_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "cite docs/model.md or docs/design.md instead:\n" + "\n".join(found)


def test_every_citation_names_an_existing_section_or_flaw():
    docs = repo_docs()
    assert {"model", "design"} <= set(docs)
    bad, count = [], 0
    texts = [*scanned_files(), ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in texts:
        text = path.read_text(errors="replace")
        count += len(CITATION.findall(text))
        bad += [f"{path.relative_to(ROOT)}: {b}" for b in bad_citations(text, docs)]
    assert count > 50  # the scan sees the code's citations
    assert not bad, "\n".join(bad)


def test_model_flaws_are_numbered_without_gaps():
    ids = defined_ids((ROOT / "docs" / "model.md").read_text())
    flaws = sorted(int(i[1:]) for i in ids if i.startswith("F"))
    assert flaws == list(range(1, len(flaws) + 1)) and len(flaws) == 23


SAMPLE_DOC = """# title
## 1 Inputs
### 1.2 Sampling
## 10 Flaws
- **F1 — lost lines.** text
- **F2 — order.** text
"""


@pytest.mark.parametrize("cite, ok", [
    ("§1", True), ("§1.2", True), ("F2", True), ("§1.2, F1", True), ("§1–1.2", True),
    ("§1.3", False), ("§2", False), ("F3", False), ("§1.2, F7", False), ("§1–1.4", False),
])
def test_the_checker_finds_a_bad_citation(cite, ok):
    docs = {"model": defined_ids(SAMPLE_DOC)}
    assert defined_ids(SAMPLE_DOC) == {"1", "1.2", "10", "F1", "F2"}
    name = "model"
    text = f'"""Something (docs/{name}.md {cite})."""\n'
    assert (bad_citations(text, docs) == []) is ok


def test_the_checker_finds_a_missing_document_and_an_outside_citation(tmp_path):
    name = "nosuch"
    assert bad_citations(f"# see docs/{name}.md §1\n", {"model": {"1"}})
    outside = "# (" + "SP" + "EC §12 item 3)\n"
    assert OUTSIDE.search(outside)
    assert not OUTSIDE.search("class DatasetSpec:  # a registry spec\n")
