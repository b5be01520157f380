"""Code comments cite the design and the platform facts in docs/; every citation must land on a
section that exists (a renamed heading or a removed section fails here, not in a reader's head)."""

from __future__ import annotations

import re

from .repo_files import ROOT, repo_files

DESIGN = re.compile(r"docs/design\.md §(\d+)")
FACTS = re.compile(r'docs/platform-facts\.md, "([^"]+)"')
OUTSIDE = re.compile(r"\bDESIGN §\d|\bNOTES\.md|\.\./shared/(DESIGN|NOTES)")


def headings(name: str) -> list[str]:
    return [line.lstrip("#").strip() for line in (ROOT / "docs" / name).read_text().splitlines()
            if line.startswith("#")]


def sources() -> list:
    return [p for p in repo_files("*.py", "*.sh", "Makefile", "Dockerfile*", "*.yaml") if "docs" not in p.parts]


def test_every_citation_names_a_section_that_exists():
    sections = {h.split(".", 1)[0] for h in headings("design.md") if re.match(r"\d+\.", h)}
    facts = headings("platform-facts.md")
    cited = 0
    for path in sources():
        text = path.read_text(errors="replace")
        for number in DESIGN.findall(text):
            cited += 1
            assert number in sections, f"{path.relative_to(ROOT)} cites docs/design.md §{number}"
        for title in FACTS.findall(text):
            cited += 1
            assert any(h.startswith(title) for h in facts), f"{path.relative_to(ROOT)} cites {title!r}"
    assert cited >= 5


def test_no_code_cites_notes_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in sources() if OUTSIDE.search(p.read_text(errors="replace"))]
    assert offenders == []
