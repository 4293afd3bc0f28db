"""What a maintainer relies on: the licence, the docs the code cites, nothing outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_licence_file_matches_the_package_metadata():
    licence = (ROOT / "LICENSE").read_text()
    declared = re.search(r'^license = \{ text = "([^"]+)" \}', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared is not None and declared.group(1) == "BSD-3-Clause"
    assert licence.startswith("BSD 3-Clause License")


def test_tests_and_code_point_only_inside_the_repository():
    shared = "shared"  # spelled in pieces so this test does not itself name a path outside the repo
    outside = re.compile(rf"/work/|\.\./{shared}|{shared}/design")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("tests", "tui_quantreport", "benchmarks", "sample_models")
        for path in (ROOT / folder).rglob("*.py")
        if path != Path(__file__).resolve() and outside.search(path.read_text())
    ]
    assert offenders == []


def test_cited_docs_exist():
    cited = set()
    for folder in ("tests", "tui_quantreport"):
        for path in (ROOT / folder).rglob("*.py"):
            cited |= set(re.findall(r"docs/[\w./-]+\.md", path.read_text()))
    assert cited, "the tests cite the detector contract"
    assert all((ROOT / doc).is_file() for doc in cited), cited
