"""`server`: the REST API (`/api/v1`) on uvicorn; elsewhere than loopback only with auth on."""

from __future__ import annotations

import click

from flowstage.cli.common import project_for
from flowstage.errors import UsageError

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@click.command("server")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="The address to listen on (other than loopback only with auth on)."
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--clock-origin", type=float, default=None, hidden=True)
@click.option("--clock-rate", type=float, default=None, hidden=True)
@click.option("--clock-offset", type=float, default=None, hidden=True)
def server_cmd(host: str, port: int, clock_origin: float | None, clock_rate: float | None, clock_offset: float | None) -> None:
    """The REST API at http://HOST:PORT/api/v1 (OpenAPI at /api/v1/openapi.json); SIGTERM or Ctrl-C stops it."""
    project = project_for()
    if host not in LOOPBACK and not _auth_on(project):
        raise UsageError(
            f"--host {host}: without auth the server listens only on 127.0.0.1, localhost or ::1; "
            "create a token first (flowstage token create --role admin) or set server: {auth: true} in flowstage.yaml"
        )
    from flowstage.api.auth import max_failed_logins
    from flowstage.api.server import orphan_policy

    # a wrong setting is told here, before the server starts (exit 2), never as a failed start-up
    max_failed_logins(project.config)
    orphan_policy(project.config)
    from flowstage.cli.common import store_for

    store_for(project).close()  # an unreachable store is told as such (exit 3), not as a failed start-up
    import uvicorn

    from flowstage.api.server import create_app

    clock = None
    if clock_rate is not None or clock_offset is not None:
        # the scheduler's clock shifted, or running faster than real time: for tests and benchmarks
        import time

        from flowstage.scheduler import ScaledClock

        origin = time.time() if clock_origin is None else clock_origin
        clock = ScaledClock(origin=origin, rate=clock_rate or 1.0, offset=clock_offset or 0.0)
    app = create_app(project, clock=clock)
    _log_to_stderr()
    click.echo(f"flowstage server: project {project.root}, API at http://{host}:{port}/api/v1", err=True)
    _stop_with_success_on_sigterm()
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, server_header=False)


def _stop_with_success_on_sigterm() -> None:
    """A server stopped by SIGTERM exits with status 0: that is how it is meant to stop.

    uvicorn handles SIGTERM itself (it stops taking requests, lets the ones in progress end and
    runs the app's shutdown), then raises the signal again with the handler it found, to end the
    process as that handler would: this one ends it with status 0. The runs the server started
    are in runner processes of their own and go on.
    """
    import signal
    from types import FrameType

    def stopped(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stopped)


def _log_to_stderr() -> None:
    """What the server itself tells (the scheduler's fires, the orphans it dealt with) on stderr, at info, like uvicorn's lines."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger = logging.getLogger("flowstage")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _auth_on(project: object) -> bool:
    from flowstage.api.auth import auth_forced
    from flowstage.cli.common import store_for

    if auth_forced(project.config):  # type: ignore[attr-defined]
        return True
    store = store_for(project)  # type: ignore[arg-type]
    try:
        return bool(store.tokens.list())
    finally:
        store.close()


COMMANDS = [server_cmd]
