"""The README and docs/ pages: short README, links that resolve, every page reachable, examples that run.

The README's ```python blocks run in order in one fresh interpreter, as a reader would paste them; a block
whose first line is ``# needs a CUDA GPU`` is skipped (at most two may be).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
CUDA_ONLY = "# needs a CUDA GPU"
MAX_SKIPPED_BLOCKS = 2
# Words about how the project was made, not about the package.
BANNED_PHRASES = ("new-user trial", "the issue", "device tool", "session")

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
CODE = re.compile(r"^```.*?^```[ \t]*$|`[^`\n]*`", re.S | re.M)  # fenced blocks and inline code: no links


def pages() -> list:
    """README.md and every docs/*.md."""
    return [README, *sorted(DOCS.glob("*.md"))]


def relative_links(path: Path) -> list:
    """(target, resolved path) of every relative link or image in a Markdown file."""
    links = []
    for target in LINK.findall(CODE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL (http:, mailto:, ...) or an anchor on the same page
        file_part = target.split("#", 1)[0]
        links.append((target, (path.parent / file_part).resolve()))
    return links


def python_blocks(text: str) -> tuple:
    """(blocks to run, number skipped) of the ```python blocks in ``text``, in order."""
    run, skipped = [], 0
    for block in PYTHON_BLOCK.findall(text):
        if block.lstrip().startswith(CUDA_ONLY):
            skipped += 1
        else:
            run.append(block)
    return run, skipped


def test_readme_is_short():
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_README_LINES, f"README.md has {n_lines} lines; at most {MAX_README_LINES}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = [target for target, resolved in relative_links(page) if not resolved.exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"


def test_every_docs_page_is_linked_from_readme():
    linked = {resolved for _, resolved in relative_links(README)}
    missing = [p.relative_to(ROOT).as_posix() for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md does not link to: {missing}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_about_how_the_project_was_made(page):
    text = " ".join(page.read_text(encoding="utf-8").replace("`", "").split()).lower()  # across line breaks
    found = [phrase for phrase in BANNED_PHRASES if phrase in text]
    assert not found, f"{page.relative_to(ROOT)} contains {found}"


def test_readme_python_examples_run(tmp_path):
    blocks, skipped = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    assert skipped <= MAX_SKIPPED_BLOCKS, f"{skipped} README blocks are skipped as CUDA-only"
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the README's python examples took over 120 s: keep them small")
    assert done.returncode == 0, (f"the README's python examples failed (exit {done.returncode}):\n"
                                  f"{done.stderr[-4000:]}")
