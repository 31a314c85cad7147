"""docs/deployment.md against the files it describes: its links lead somewhere, the README
links it, and the secrets it tells an admin to make are the ones compose.yaml mounts."""

from __future__ import annotations

import re

from deploy_files import ROOT, compose

PAGE = ROOT / "docs" / "deployment.md"
TEXT = PAGE.read_text(encoding="utf-8")


def test_every_relative_link_leads_to_a_file() -> None:
    links = re.findall(r"\]\((?!https?:)([^)#]+)\)", TEXT)
    assert links
    for link in links:
        assert (PAGE.parent / link).exists(), link


def test_the_readme_links_the_page() -> None:
    assert "(docs/deployment.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_page_makes_every_secret_file_compose_mounts() -> None:
    made = set(re.findall(r"> ([a-z-]+)\n", TEXT))
    for secret in compose()["secrets"].values():
        name = secret["file"].removeprefix("./deploy/compose/secrets/")
        assert name in made, f"docs/deployment.md never makes {name}"
