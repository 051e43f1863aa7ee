"""The launcher's contract with Dagster's private APIs holds for the pinned Dagster, and a break is named."""

from lead_assets import dagster_private


def test_the_installed_dagster_keeps_every_private_api_the_launcher_uses():
    assert dagster_private.contract_problems() == []


def test_a_moved_or_changed_private_api_is_named(monkeypatch):
    import dagster

    monkeypatch.setattr(dagster, "__version__", "1.14.0")
    monkeypatch.setitem(dagster_private.CONTRACT, ("dagster._cli.api", "_execute_run_command_body"), ("run_id",))
    monkeypatch.setitem(dagster_private.CONTRACT, ("dagster._core.nowhere", "gone"), None)
    problems = dagster_private.contract_problems()
    assert any("dagster 1.14.0 is installed" in p and "1.13.27" in p for p in problems)
    assert any("_execute_run_command_body now takes" in p for p in problems)
    assert any("dagster._core.nowhere.gone is gone" in p for p in problems)


def test_the_launcher_imports_dagster_internals_only_through_the_contract_module():
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / "lead_assets" / "launcher.py"
    private = [node.module for node in ast.walk(ast.parse(source.read_text()))
               if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dagster._")]
    assert private == []
