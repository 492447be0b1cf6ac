"""README.md is a front door (at most 150 lines) and its links, and those of docs/, lead somewhere: every relative
link names a file of the repository and every #anchor a heading of that file (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces → -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a "# comment" in a code block is no heading
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/ (at most 150)"
    text = "\n".join(lines)
    for page in ("docs/faults.md", "docs/claims.md", "docs/data.md", "docs/measurements.md"):
        assert f"({page}" in text, f"README.md does not link {page}"


def test_slug_matches_github():
    assert slug("Did pretraining learn? The sanity measurements and the augmentation policy") == (
        "did-pretraining-learn-the-sanity-measurements-and-the-augmentation-policy"
    )
    assert slug("The fine-tune recipe (learning curves, measured)") == "the-fine-tune-recipe-learning-curves-measured"
    assert slug("`make reproduce` (default profile)") == "make-reproduce-default-profile"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_lead_somewhere(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert broken == [], f"{page.name}: " + "; ".join(broken)
