"""The documentation runs: README's quick start executes, and every relative link in README and docs/ resolves."""

import re

import pytest

from helpers import ROOT

PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_quick_start_runs():
    pytest.importorskip("torchvision")
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick_start, re.S)
    assert code is not None
    exec(compile(code.group(1), "README.md quick start", "exec"), {})


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_ci_runs_the_readme_commands():
    """README's set-up (install, then the test command) is what .ci/run runs, so the two cannot drift apart."""
    setup = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    install, test = (line.split("#", 1)[0].strip() for line in setup.strip().splitlines())
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.split(" && ")[0].removeprefix("pip") in ci and f"\n{test}\n" in ci
    assert "check:" in (ROOT / "Makefile").read_text()
