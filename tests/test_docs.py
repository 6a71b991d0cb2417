"""What points into the documentation from the code, the chart and the tests names a page and a section it has.

Comments and messages say where a rule is explained (`docs/models.md "Several models"`); when a page is split or
a section renamed, this fails until they follow. Links inside the pages are checked by `make docs` (strict).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    *(ROOT / "src").rglob("*.py"),
    *(ROOT / "helm").rglob("*.yaml"),
    *(ROOT / "helm").rglob("*.txt"),
    *(ROOT / "tests").rglob("*.py"),
    *(ROOT / "bench").rglob("*.py"),
    *(ROOT / "scripts").rglob("*"),
    *(ROOT / name for name in ("Dockerfile", "Dockerfile.cuda", ".env.example", "Makefile", "mkdocs.yml")),
]
# A page, and after a space the section it means in quotes (a comment may wrap between them).
REFERENCE = re.compile(r'\bdocs/([\w/-]+\.md)(?:\s+#?\s*"([^"\n]+)")?')
README_REFERENCE = re.compile(r'\bREADME(?:\.md)?\s+"([^"\n]+)"')


def sections(page: Path) -> list[str]:
    """A page's headings and bold lead-ins (`**Sessions.**`), as plain text."""
    text = page.read_text()
    found = re.findall(r"^#+ (.+)$", text, flags=re.M) + re.findall(r"^\*\*(.+?)\*\*", text, flags=re.M)
    return [name.replace("`", "") for name in found]


def test_references_to_the_docs_name_pages_and_sections_they_have() -> None:
    wrong = []
    for source in SOURCES:
        if not source.is_file() or source.suffix in {".png", ".json"}:
            continue
        text = source.read_text(errors="replace")
        where = source.relative_to(ROOT)
        for match in REFERENCE.finditer(text):
            page, section = ROOT / "docs" / match[1], match[2]
            if not page.is_file():
                wrong.append(f"{where}: {match[0]!r}: no such page")
            elif section and not any(name.startswith(section) for name in sections(page)):
                wrong.append(f"{where}: {match[0]!r}: the page has no such section")
        for match in README_REFERENCE.finditer(text):
            if not any(name.startswith(match[1]) for name in sections(ROOT / "README.md")):
                wrong.append(f"{where}: {match[0]!r}: the README has no such section (it moved to docs/)")
    assert not wrong, "\n".join(wrong)


def test_the_nav_lists_every_page() -> None:
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*([\w/-]+\.md)\s*$", nav, flags=re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert listed == pages | {"index.md"}  # index.md: the README, served as the front page (scripts/docs_hooks.py)
