"""MkDocs hooks (mkdocs.yml `hooks:`): the README is the site's front page, and links that leave docs/ are checked.

The pages are written to read well on GitHub too, where a link to `../src/...` opens the file. In the site such a
link would lead nowhere, and MkDocs does not check it: here every link out of docs/ must name a file or folder of
the repository (else the build fails, `strict: true`), and it becomes a link to that file on `repo_url` when
mkdocs.yml sets one, or plain text when it does not.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = get_plugin_logger(__name__)

# [text](target) and ![alt](target), the target without spaces or parentheses; fenced code is skipped.
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def _outside_code(markdown: str, rewrite: Any) -> str:
    """Apply `rewrite` to the text between fenced code blocks (a link's text may span lines)."""
    out: list[str] = []
    prose: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if FENCE.match(line.lstrip()):
            if not fenced and prose:
                out.append(rewrite("\n".join(prose)))
                prose = []
            fenced = not fenced
            out.append(line)
        elif fenced:
            out.append(line)
        else:
            prose.append(line)
    if prose:
        out.append(rewrite("\n".join(prose)))
    return "\n".join(out)


def readme_as_front_page(readme: str) -> str:
    """README.md, read from docs/: its links into docs/ lose that prefix, its other relative links gain `../`."""

    def relink(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            bang, label, target = match.groups()
            if target.startswith("docs/"):
                target = target.removeprefix("docs/")
            elif not re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", target):
                target = "../" + target
            return f"{bang}[{label}]({target})"

        return LINK.sub(one, text)

    return _outside_code(readme, relink)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    readme = Path(config.config_file_path).parent / "README.md"
    files.append(File.generated(config, "index.md", content=readme_as_front_page(readme.read_text())))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs_dir = Path(config.docs_dir)
    root = Path(config.config_file_path).parent
    repo_url = (config.repo_url or "").rstrip("/")
    ref = config.extra.get("source_ref", "main")

    def relink(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            bang, label, target = match.groups()
            if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", target):
                return match.group(0)
            path, _, fragment = target.partition("#")
            inside = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), path))
            if not inside.startswith("../"):
                return match.group(0)  # a page or image of the site: MkDocs checks those itself
            resolved = (docs_dir / inside).resolve()
            try:
                in_repo = resolved.relative_to(root.resolve()).as_posix()
            except ValueError:
                log.warning("%s links to %s, outside the repository", page.file.src_uri, target)
                return match.group(0)
            if not resolved.exists():
                log.warning("%s links to %s, which is not in the repository", page.file.src_uri, in_repo)
                return match.group(0)
            if bang:
                log.warning("%s shows the image %s from outside docs/: move it under docs/", page.file.src_uri, in_repo)
                return match.group(0)
            if not repo_url:
                return label
            kind = "tree" if resolved.is_dir() else "blob"
            return f"[{label}]({repo_url}/{kind}/{ref}/{in_repo}{'#' + fragment if fragment else ''})"

        return LINK.sub(one, text)

    return _outside_code(markdown, relink)
