"""README's links resolve (the docs site's own links are checked by `mkdocs build --strict`)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_links_point_at_files_that_exist():
    targets = [t.split("#")[0] for t in LINK.findall((ROOT / "README.md").read_text())
               if not t.startswith(("http://", "https://", "#"))]
    assert "docs/explore.md" in targets and "docs/images/explore.png" in targets
    assert [t for t in targets if not (ROOT / t).exists()] == []

