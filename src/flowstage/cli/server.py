"""`server`: the REST API (`/api/v1`) on uvicorn, on loopback only until API tokens exist."""

from __future__ import annotations

import click

from flowstage.cli.common import project_for
from flowstage.errors import UsageError

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on (loopback only, for now).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
def server_cmd(host: str, port: int) -> None:
    """The REST API at http://HOST:PORT/api/v1 (OpenAPI at /api/v1/openapi.json); SIGTERM or Ctrl-C stops it."""
    if host not in LOOPBACK:
        raise UsageError(
            f"--host {host}: the server listens only on 127.0.0.1, localhost or ::1 for now; "
            "a host other than those needs auth (API tokens), which this server does not have yet"
        )
    import uvicorn

    from flowstage.api.server import create_app

    project = project_for()
    app = create_app(project)
    click.echo(f"flowstage server: project {project.root}, API at http://{host}:{port}/api/v1", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, server_header=False)


COMMANDS = [server_cmd]
