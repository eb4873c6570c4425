"""No source, test, config or page cites the team's private notes, which a reader of the
repository does not have: papers are cited as papers, facts about Flower and Ray point at
docs/design-notes.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("fedsim", "strategies", "clients", "configs", "benchmarks", "tests", "docs",
           "examples")
FILES = ("README.md",)
SUFFIXES = {".py", ".toml", ".md"}
# the private notes' file names, any path into a "reference/" folder, and their bare sections
PRIVATE = re.compile(r"reference/|algorithms\.md|grid-on-ray|flower-1\.41|pfl-baseline"
                     r"|landscape\.md|\u00a7")
# the repository's own reference pages (docs/reference/*.md) may be linked
ALLOWED = re.compile(r"docs/reference/|reference/(config|cli|python)")


def private_citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of ``text`` that cites the private notes."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if PRIVATE.search(ALLOWED.sub("", line))]


def checked_files() -> list[Path]:
    """The tracked (and new, not ignored) .py/.toml/.md files of the scanned folders."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                              "--", *FOLDERS, *FILES], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=60).stdout
        paths = [ROOT / p for p in out.splitlines()]
    except (OSError, subprocess.SubprocessError):  # no git: a source tree without history
        paths = [p for f in FOLDERS if (ROOT / f).is_dir() for p in (ROOT / f).rglob("*")]
        paths += [ROOT / f for f in FILES]
    me = Path(__file__).resolve()
    return sorted(p for p in paths
                  if p.suffix in SUFFIXES and p.is_file() and p.resolve() != me)


def test_the_matcher_finds_private_citations_and_spares_the_reference_pages() -> None:
    text = "\n".join([
        "see reference/flower-1.41.md \u00a79",                    # 1: private
        "algorithms.md 6.2 II",                                    # 2: private
        "(grid-on-ray.md 7 pitfall)",                              # 3: private
        "section \u00a74(e)",                                      # 4: bare section
        "docs/reference/config.md and reference/cli.md",          # allowed
        "(Tang et al., ICASSP 2024, arXiv 2402.09941, Algorithm 1)",  # a paper
        "docs/design-notes.md#message-size-on-the-wire",           # the public notes
        "reference/python-api.md but also pfl-baseline.md",        # 8: private
    ])
    assert [n for n, _ in private_citations(text)] == [1, 2, 3, 4, 8]


def test_the_scan_covers_the_sources_tests_configs_and_pages() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in checked_files()}
    for expected in ("fedsim/cli.py", "strategies/fedlion.py", "configs/quickstart.toml",
                     "docs/design-notes.md", "tests/docs/test_docs.py", "README.md"):
        assert expected in names


def test_no_file_cites_the_private_reference_notes() -> None:
    hits = [f"{path.relative_to(ROOT)}:{n}: {line}" for path in checked_files()
            for n, line in private_citations(path.read_text(encoding="utf-8"))]
    assert not hits, (
        "these lines cite the private reference notes, which readers of the repository do not "
        "have; cite the paper (authors, venue, arXiv id, equation), point at "
        "docs/design-notes.md, or call a fedsim extension one:\n" + "\n".join(hits))


def _slug(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's default ``toc`` slugify)."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


def test_every_cited_design_note_exists() -> None:
    notes = (ROOT / "docs" / "design-notes.md").read_text(encoding="utf-8")
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", notes, re.M)}
    cited = {(path.relative_to(ROOT).as_posix(), a) for path in checked_files()
             for a in re.findall(r"design-notes\.md#([\w-]+)", path.read_text(encoding="utf-8"))}
    assert cited, "nothing cites docs/design-notes.md"
    missing = sorted(f"{path}: #{a}" for path, a in cited if a not in anchors)
    assert not missing, "no such heading in docs/design-notes.md:\n" + "\n".join(missing)
