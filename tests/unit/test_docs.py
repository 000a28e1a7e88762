"""Docs are checked artifacts: every CLI command and every task kind is documented in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from flowstage.cli.main import COMMAND_MODULES, cli
from flowstage.model.kinds import BUILTIN_SPECS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_every_cli_command_is_documented(command: str) -> None:
    assert f"`flowstage {command}" in README


def test_every_command_module_is_listed_and_every_listed_command_loads() -> None:
    import importlib
    import pkgutil

    import flowstage.cli

    defined = {}
    for info in pkgutil.iter_modules(flowstage.cli.__path__):
        module = importlib.import_module(f"flowstage.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            defined[command.name] = info.name
    assert defined == COMMAND_MODULES
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(defined)
    assert all(cli.get_command(ctx, name) is not None for name in defined)


@pytest.mark.parametrize("kind", sorted(BUILTIN_SPECS))
def test_every_task_kind_is_documented(kind: str) -> None:
    assert f"| `{kind}:` |" in README


def test_readme_quickstart_starts_with_make_run_and_make_test() -> None:
    quickstart = README.split("## Quickstart", 1)[1]
    assert quickstart.index("make run") < quickstart.index("make test") < quickstart.index("### A short tour")


def test_readme_has_no_unfilled_benchmark_figures() -> None:
    assert "BENCH_" not in README


def test_every_flowstage_yaml_key_is_documented() -> None:
    from flowstage.settings import _KEYS, _SERVER_KEYS, _SPARK_KEYS

    settings = README.split("## Project settings", 1)[1].split("\n## ", 1)[0]
    for key in _KEYS:
        assert f"`{key}:`" in settings, f"flowstage.yaml's {key}: is not in the README's Project settings"
    for key in _SERVER_KEYS:
        assert f"`{key}`" in README or f"{key}:" in README, f"server: {{{key}}} is not documented"
    for key in _SPARK_KEYS:
        assert f"`{key}:`" in README, f"spark: {{{key}}} is not documented"
