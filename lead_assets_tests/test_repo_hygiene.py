import subprocess

from lead_assets_tests import repo_hygiene


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_a_file_a_run_adds_is_named_and_what_was_there_or_is_tooling_is_not(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("*.db\nmlruns/\n")
    (tmp_path / "old.txt").write_text("before the run")
    _git(tmp_path, "add", ".gitignore")
    before = repo_hygiene.untracked(tmp_path)
    (tmp_path / "mlflow.db").write_bytes(b"sqlite")  # ignored by .gitignore, still left behind
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("x")
    (tmp_path / ".pytest_cache").mkdir()
    (tmp_path / ".pytest_cache" / "v").write_text("x")
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")
    assert repo_hygiene.left_behind(before, repo_hygiene.untracked(tmp_path)) == ["mlflow.db", "mlruns/0/meta.yaml"]


def test_outside_git_nothing_is_claimed(tmp_path):
    assert repo_hygiene.untracked(tmp_path / "missing") is None
    assert repo_hygiene.left_behind(None, {"a"}) == []
