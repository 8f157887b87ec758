"""Google Colab: the repository address (defined here once), and the notebooks' badge and setup cell.

The address lives in :data:`REPOSITORY` and in ``pyproject.toml``'s ``[project.urls]`` (a test
checks they agree). Every notebook's "Open in Colab" badge and its first code cell, and the
badge table of the README, are generated from it::

    python -m alhelpers.colab          # rewrite badges and setup cells after changing the address
    python -m alhelpers.colab --check  # exit 1 if any notebook or the README is out of date

The setup cell, in Colab only, clones the repository, installs what Colab lacks and puts the clone
on ``sys.path``: an editable install is only seen by new processes, so without that line the running
kernel could not import ``alhelpers`` until the runtime is restarted. The install is
``scripts/colab_install.py`` in the clone (standard library only: it runs before ``alhelpers`` is
importable): pip as a subprocess, its output captured, with every package Colab has pinned at its
version, so that pip picks versions of our dependencies that fit them; where none fits it changes
as few as it can and the summary names each, with the requirement that forced it. No ``%pip``: its
"you may need to restart the kernel" would contradict the cell. The clone is named
``alhelpers-src``, not ``alhelpers``, so that ``/content`` on ``sys.path`` cannot shadow the package
with an empty namespace package.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from alhelpers.data.paths import REPO_ROOT

#: GitHub ``owner/name`` of the project.
REPOSITORY = "alhelpers/alhelpers"
REPO_URL = f"https://github.com/{REPOSITORY}"
#: Where Colab keeps the clone (``$ALHELPERS_SRC`` overrides it, e.g. in tests).
COLAB_SRC = "/content/alhelpers-src"

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_MARK = "# Setup (Colab only)"

#: Where the setup cell finds the installer, relative to the clone.
INSTALLER = "scripts/colab_install.py"

SETUP_CELL = f"""{SETUP_MARK}: get the project and install what Colab lacks. Colab's own packages
# keep their versions wherever ours can fit them; the summary names any that had to change, and why.
# The package is importable at once, with no restart (the summary would say if one were needed).
# Locally: nothing.
import os
import sys

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:
    REPO_URL = os.environ.get("ALHELPERS_REPO_URL", "{REPO_URL}.git")
    SRC = os.environ.get("ALHELPERS_SRC", "{COLAB_SRC}")
    if not os.path.isdir(SRC):
        !git clone -q --depth 1 $REPO_URL $SRC
    import runpy

    runpy.run_path(f"{{SRC}}/{INSTALLER}")["install"](SRC)  # pip, quietly; prints a summary
    sys.path.insert(0, SRC)  # this kernel imports the clone; the editable install serves new ones
    import importlib

    importlib.invalidate_caches()  # see the packages pip just added"""

_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook}"


def badge(notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook)})"


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def synced(nb: dict, name: str) -> dict:
    """The notebook with its badge and setup cell as generated from :data:`REPOSITORY`."""
    cells = nb["cells"]
    head = _source(cells[0])
    if not _BADGE_RE.search(head):
        raise ValueError(f"{name}: its first cell has no 'Open In Colab' badge to update")
    cells[0]["source"] = _lines(_BADGE_RE.sub(badge(name).replace("\\", "\\\\"), head))
    setup = [c for c in cells if c["cell_type"] == "code" and _source(c).startswith(SETUP_MARK)]
    if len(setup) != 1:
        raise ValueError(f"{name}: expected one code cell starting with {SETUP_MARK!r}, found {len(setup)}")
    setup[0]["source"] = _lines(SETUP_CELL)
    return nb


README_START, README_END = "<!-- colab-badges:start -->", "<!-- colab-badges:end -->"


def readme_badges(names: list[str]) -> str:
    rows = [f"| `{n}` | {badge(n)} |" for n in names]
    return "\n".join([README_START, "| notebook | open |", "|---|---|", *rows, README_END])


def sync(root: Path = REPO_ROOT, *, check: bool = False) -> list[Path]:
    """Rewrite (or, with ``check``, only list) the notebooks and README that are out of date."""
    stale = []
    names = sorted(p.name for p in (root / "notebooks").glob("*.ipynb"))
    for name in names:
        path = root / "notebooks" / name
        text = path.read_text()
        new = json.dumps(synced(json.loads(text), name), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    readme = root / "README.md"
    text = readme.read_text()
    if README_START in text:
        new = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: readme_badges(names),
                     text, flags=re.S)
        if new != text:
            stale.append(readme)
            if not check:
                readme.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alhelpers.colab", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = p.parse_args(argv)
    stale = sync(check=args.check)
    for path in stale:
        print(("out of date: " if args.check else "updated: ") + str(path.relative_to(REPO_ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
