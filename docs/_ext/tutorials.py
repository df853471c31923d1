"""Tutorial pages from ``docs/tutorials/*.py``, with the output of a real run.

At ``builder-inited`` every tutorial script runs once (``python SCRIPT`` in a fresh temporary folder, with
``OMP_NUM_THREADS=1``, at most ``tutorials_timeout`` seconds). Each tutorial becomes the page
``tutorials/generated/<name>``: the module docstring as Markdown (its first heading is the page title), the code
without the docstring, and the captured stdout. A tutorial that fails or times out fails the build with its stderr.

``GPYTORCH_VAE_DOCS_SKIP_TUTORIALS=1`` skips the runs (the pages then say so in place of the output), for fast
iterations on the rest of the site. ``GPYTORCH_VAE_TUTORIAL_OUTPUTS=DIR`` reuses the outputs the test suite kept in
``DIR`` (``tests/test_tutorials.py``) for every tutorial whose source has not changed since (its SHA-256 is kept
beside the output), so that CI runs each tutorial once; the others run here.

``.. tutorials-toctree::`` is a toctree of the tutorial pages, in the order of the "Tutorial N" of their titles.

The generated folder holds its own ``.gitignore`` (``*``), so nothing of it is ever committed.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docutils.statemachine import StringList
from sphinx.directives.other import TocTree
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

SKIP_ENV = "GPYTORCH_VAE_DOCS_SKIP_TUTORIALS"
OUTPUTS_ENV = "GPYTORCH_VAE_TUTORIAL_OUTPUTS"
SOURCE_DIR = "tutorials"
OUTPUT_DIR = "tutorials/generated"


def _tutorials(srcdir: Path) -> list[Path]:
    def order(path: Path):
        first = (ast.get_docstring(ast.parse(path.read_text())) or "").splitlines()[:1]
        match = re.search(r"Tutorial\s+(\d+)", first[0]) if first else None
        return (int(match.group(1)) if match else 10**6, path.stem)

    return sorted((srcdir / SOURCE_DIR).glob("*.py"), key=order)


def _split(path: Path) -> tuple[str, int]:
    """The module docstring (Markdown) and the first line of code after it (1-based)."""
    module = ast.parse(path.read_text())
    docstring = ast.get_docstring(module)
    if not docstring:
        raise ExtensionError(f"tutorial {path.name} has no module docstring (its Markdown text)")
    lines = path.read_text().splitlines()
    first = module.body[0].end_lineno + 1
    while first <= len(lines) and not lines[first - 1].strip():
        first += 1
    return docstring, first


def _run(path: Path, timeout: float) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix=f"tutorial-{path.stem}-") as cwd:
        start = time.perf_counter()
        try:
            result = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                                    timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired as error:
            stderr = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")
            raise ExtensionError(f"tutorial {path.name} ran past {timeout:.0f} s; its stderr:\n{stderr}") from None
    if result.returncode != 0:
        raise ExtensionError(f"tutorial {path.name} failed (exit status {result.returncode}); its stderr:\n"
                             f"{result.stderr}")  # fmt: skip
    logger.info(f"tutorial {path.name}: ran in {time.perf_counter() - start:.1f} s")
    return result.stdout


def _kept_output(path: Path) -> str | None:
    """The output ``tests/test_tutorials.py`` kept for this tutorial's current source, if any."""
    folder = os.environ.get(OUTPUTS_ENV)
    if not folder:
        return None
    output, digest = Path(folder) / f"{path.stem}.txt", Path(folder) / f"{path.stem}.sha256"
    if not (output.is_file() and digest.is_file()):
        return None
    if digest.read_text().strip() != hashlib.sha256(path.read_bytes()).hexdigest():
        return None
    logger.info(f"tutorial {path.name}: the output the test suite kept ({output})")
    return output.read_text()


def _write(path: Path, text: str) -> None:
    """Write only when the content changes, so that Sphinx re-reads only what changed."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _page(path: Path, first_code_line: int, docstring: str, output_note: str) -> str:
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", docstring)), default=0) + 1)
    return "\n".join([
        docstring.strip(),
        "",
        "## Code",
        "",
        f"The whole script: {{download}}`{path.name} <../{path.name}>`.",
        "",
        f"{fence}{{literalinclude}} ../{path.name}",
        ":language: python",
        f":lines: {first_code_line}-",
        fence,
        "",
        "## Output",
        "",
        output_note,
        "",
        f"{fence}{{literalinclude}} {path.stem}.txt",
        ":language: text",
        fence,
        "",
    ])  # fmt: skip


def generate(app) -> None:
    srcdir = Path(app.srcdir)
    outdir = srcdir / OUTPUT_DIR
    outdir.mkdir(parents=True, exist_ok=True)
    _write(outdir / ".gitignore", "*\n")
    skip = os.environ.get(SKIP_ENV, "") not in ("", "0")
    tutorials = _tutorials(srcdir)
    stems = {path.stem for path in tutorials}
    for stale in outdir.glob("*"):
        if stale.suffix in (".md", ".txt") and stale.stem not in stems:
            stale.unlink()
    for path in tutorials:
        docstring, first = _split(path)
        if skip:
            output, note = (
                f"(tutorial not run: {SKIP_ENV} is set)\n",
                f"(Not run for this build: `{SKIP_ENV}` was set.)",
            )
        else:
            output, note = _kept_output(path), "What the script printed when the test suite ran it for this build:"
            if output is None:
                logger.info(f"running tutorial {path.name} ...")
                output, note = (
                    _run(path, app.config.tutorials_timeout),
                    "What the script printed when this page was built:",
                )
        _write(outdir / f"{path.stem}.txt", output)
        _write(outdir / f"{path.stem}.md", _page(path, first, docstring, note))


class TutorialsTocTree(TocTree):
    """A toctree of the generated tutorial pages (no content of its own; the options of ``toctree``)."""

    has_content = False

    def run(self):
        self.content = StringList([f"/{OUTPUT_DIR}/{path.stem}" for path in _tutorials(Path(self.env.srcdir))])
        return super().run()


def setup(app):
    app.add_config_value("tutorials_timeout", 600, "env")
    app.add_directive("tutorials-toctree", TutorialsTocTree)
    app.connect("builder-inited", generate)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
