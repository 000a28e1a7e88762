"""The `flowstage` command: a click group, the error boundary and the exit codes.

Every `FlowstageError` becomes one clear line on stderr and its exit code (SPEC §5.1); anything
else is an internal error (exit 3) whose traceback is shown only with FLOWSTAGE_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import sys
from typing import Any, NoReturn

import click

from flowstage.errors import DefinitionError, ExitCode, FlowstageError, RunInterrupted
from flowstage.exiting import exit_now


def fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(int(code))


def usage_failed(exc: click.UsageError) -> NoReturn:
    """A usage error as one line (exit 2): what is wrong, and where help is."""
    text = exc.format_message().strip().rstrip(".")
    text = text[:1].lower() + text[1:]
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    fail(f"error: {text}{where}", ExitCode.INVALID_INPUT)


#: each command's module, imported only when the command runs (or help lists it): a run starts light
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("init", "validate", "schema"), "project"),
    **dict.fromkeys(("run", "resume", "cancel"), "run"),
    **dict.fromkeys(("runs", "show", "logs", "graph"), "inspect"),
    "catalog": "catalog",
    **dict.fromkeys(("deploy", "workflows", "versions", "diff", "rollback", "schedule", "scheduler"), "deploy"),
    "server": "server",
    "token": "tokens",
    "notify": "notify",
    "alerts": "alerts",
    "backfill": "backfill",
    "explain": "explain",
}


class FlowstageGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        module = COMMAND_MODULES.get(cmd_name)
        if found is not None or module is None:
            return found
        import importlib

        commands: list[click.Command] = importlib.import_module(f"flowstage.cli.{module}").COMMANDS
        _started()
        return next((c for c in commands if c.name == cmd_name), None)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        return super().main(*args, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `flowstage` alone: the help, as click shows it
        except click.UsageError as exc:
            usage_failed(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            usage_failed(exc)
        except FlowstageError as exc:
            text = str(exc)
            located = isinstance(exc, DefinitionError) and all(p.file for p in exc.problems)
            fail(text if located else f"error: {text}", exc.exit_code)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except (KeyboardInterrupt, BrokenPipeError):
            sys.exit(130)
        except RunInterrupted:
            fail("error: interrupted while stopping; the run can be resumed", ExitCode.RUN_FAILED)
        except Exception as exc:
            if os.environ.get("FLOWSTAGE_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (set FLOWSTAGE_DEBUG=1 for the traceback)", ExitCode.INFRASTRUCTURE
            )


@click.group(cls=FlowstageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowstage")
def cli() -> None:
    """flowstage: ETL workflows of stages and tasks, conditions, variables, resumable runs."""


def _started() -> None:
    """Start-up is over: what it built (modules, classes) lives until exit, so the collector, off
    until now, leaves it out of its walks from here on and runs again for what the command makes."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _report_faults() -> None:
    """A fatal signal (a fault inside a C library, such as SQLite's memory-mapped index of a store
    made read-only mid-write) writes a last word and the Python stack to stderr instead of
    leaving the process dead without a message. `faulthandler` is built into the interpreter: no
    import cost."""
    # no stderr with a file descriptor (closed, or replaced by an embedding host): nothing to write to
    with contextlib.suppress(AttributeError, OSError, RuntimeError, ValueError):
        faulthandler.enable(file=sys.stderr)


def main() -> None:
    """Console entry point."""
    _report_faults()
    # importing builds thousands of long-lived objects and none of them is garbage: collecting
    # meanwhile only walks them again and again
    gc.disable()
    try:
        cli.main(prog_name="flowstage")
    except SystemExit as ended:  # click ends every command this way, its exit code inside
        exit_now(ended.code)
    finally:
        _started()
