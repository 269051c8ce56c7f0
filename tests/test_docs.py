"""The documentation stays true: generated pages are current, links resolve, the README stays short."""

from __future__ import annotations

import re

from mmw import config_docs
from mmw.processing.captions import NEURAL_CAPTIONS_DOC
from tests.conftest import ROOT, project_sources


def test_configuration_page_is_generated_from_the_config_models() -> None:
    """docs/configuration.md is what `python -m mmw.config_docs --write` renders (rerun it after a change)."""
    assert config_docs.DOC_PATH.read_text(encoding="utf-8") == config_docs.render()


def test_every_setting_is_documented() -> None:
    table = [line for line in config_docs.render().splitlines() if line.startswith("| `")]
    assert len(table) >= 55
    assert all(not line.rstrip().endswith("|  |") for line in table), "a setting without a docstring"
    assert "| `server.http_port` | an integer | `8000` |" in config_docs.render()


def test_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    for page in ("README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))):
        text = (ROOT / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not target.startswith("http"):
                assert ((ROOT / page).parent / target).exists(), f"{page}: broken link to {target}"


def test_messages_point_at_pages_that_exist() -> None:
    assert (ROOT / NEURAL_CAPTIONS_DOC).is_file()
    sources = project_sources()
    assert not [str(p.relative_to(ROOT)) for p in sources if "README.md#" in p.read_text(encoding="utf-8")
                and p.name != "test_docs.py"]
