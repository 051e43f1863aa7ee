"""What a test run leaves in the repository: files git does not track that were not there before.

The tests write into temporary folders; a file that appears in the tree (a tracking store, a data
home, run artifacts) is one a developer would commit by accident, as a stray ``mlflow.db`` once was.
"""

import subprocess
from pathlib import Path

# Made by installing and by running pytest itself, not by a test.
TOOLING = (".venv/", ".pytest_cache/", "lead_assets.egg-info/")


def untracked(root: Path) -> set[str] | None:
    """Every path under ``root`` that git does not track, ignored ones included; None outside git."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored", "-z"],
                             cwd=root, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {entry[3:] for entry in out.split("\0") if entry[:2] in ("??", "!!")}
    return {p for p in paths if not p.startswith(TOOLING) and "__pycache__/" not in p and not p.endswith(".pyc")}


def left_behind(before: set[str] | None, after: set[str] | None) -> list[str]:
    """The paths a run added, sorted; nothing when either snapshot could not be taken."""
    if before is None or after is None:
        return []
    return sorted(after - before)
