"""The docs a newcomer reads: the README's first screen, and every reference the code makes resolving
inside the repository."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_the_readme_opens_with_what_it_is_and_the_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(text.splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen
    assert len(text.splitlines()) <= 130, "the runbook and the logs belong in docs/"


def test_every_contract_section_the_code_cites_is_in_the_repository() -> None:
    contract = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", contract, re.M)}
    cited = 0
    for folder in ("src", "conf", "dags", "jobs", "tests", "scripts", "bench"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix not in (".py", ".yaml") or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            assert "SOURCES" + ".md" not in text, f"{path}: cite docs/contract.md, which the repository holds"
            for first, last in re.findall(r"contract\.md §(\d+)(?:-(\d+))?", text):
                cited += 1
                assert {int(first), int(last or first)} <= sections, f"{path}: §{first}"
    assert cited >= 5


def test_links_between_the_docs_resolve() -> None:
    for page in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name}: {target}"
