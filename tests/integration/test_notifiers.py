"""Notifiers against real receivers: an HTTP server, an SMTP server (aiosmtpd), a program; retries, masking, config, CLI."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from flowstage.errors import DefinitionError
from flowstage.notifiers import Delivery, Notification, NotifierError, deliver, notifiers_from_config
from flowstage.notifiers.text import slack_text
from flowstage.notifiers.webhook import encode
from tests.conftest import Project

HOOK_SECRET = "hook-secret-9f3a"
URL_TOKEN = "urltoken-77c1"
URL_PASSWORD = "urlpass-51d0"
SMTP_PASSWORD = "smtp-pass-2b8e"
SECRETS = (HOOK_SECRET, URL_TOKEN, URL_PASSWORD, SMTP_PASSWORD)

FAILED = Notification(
    body={
        "workflow": "campaign_launch",
        "run_id": "r-42",
        "status": "failed",
        "task": "load_orders",
        "alert": {"on": "failed", "notify": ["ops"]},
        "value": "failed",
    },
    failed_tasks=(("load_orders", "duplicate key <id> & more"),),
    run_url="http://127.0.0.1:8080/runs/r-42",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _closed_port() -> int:
    return _free_port()  # nothing listens on it once the probe socket is closed


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into: {text}"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpSink:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"ok"


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    with serving_sink() as sink:
        yield sink


@contextlib.contextmanager
def serving_sink() -> Iterator[HttpSink]:
    """An HTTP server on loopback recording every POST and answering `status`."""
    sink = HttpSink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sink.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, data))
            self.send_response(sink.status)
            self.send_header("Content-Length", str(len(sink.answer)))
            self.end_headers()
            self.wfile.write(sink.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class SmtpSink:
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode():
            self.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback, accepting LOGIN/PLAIN with SMTP_PASSWORD."""
    sink = SmtpSink(_free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, authenticator=sink, auth_require_tls=False)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def one(config: dict[str, Any], name: str = "ops", **kwargs: Any) -> Any:
    return notifiers_from_config({"notifiers": config}, **kwargs)[name]


class Waits:
    """An injected sleep: records each wait, sleeps not at all."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_webhook_posts_the_body_as_json_signed_with_hmac_of_the_exact_bytes(http_sink: HttpSink) -> None:
    notifier = one(
        {
            "ops": {
                "webhook": {
                    "url": f"{http_sink.url}/hook?token={URL_TOKEN}",
                    "secret": HOOK_SECRET,
                    "headers": {"X-Team": "data"},
                }
            }
        }
    )
    assert deliver(notifier, FAILED) == Delivery("ops", "delivered", 1, None)
    (got,) = http_sink.received
    assert got.path == f"/hook?token={URL_TOKEN}"
    assert json.loads(got.body) == FAILED.body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-team"] == "data"
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["x-flowstage-signature"], expected)
    assert HOOK_SECRET.encode() not in got.body


def test_webhook_without_secret_is_not_signed_and_folded_repeats_are_in_the_body(http_sink: HttpSink) -> None:
    body = {**FAILED.body, "repeats": 4}
    assert deliver(one({"ops": {"webhook": f"{http_sink.url}/h"}}), Notification(body)).status == "delivered"
    (got,) = http_sink.received
    assert json.loads(got.body) == body
    assert "x-flowstage-signature" not in got.headers


def test_webhook_answering_non_2xx_fails_three_times_and_no_secret_reaches_the_error_or_the_log(
    http_sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    http_sink.status = 500
    # a receiver that echoes the request's URL back must not bring its token into the message
    http_sink.answer = f"cannot handle /hook?token={URL_TOKEN} for user:{URL_PASSWORD}".encode()
    url = f"http://user:{URL_PASSWORD}@{http_sink.url.removeprefix('http://')}/hook?token={URL_TOKEN}"
    notifier = one({"ops": {"webhook": {"url": url, "secret": HOOK_SECRET, "headers": {"Authorization": f"Bearer {URL_TOKEN}"}}}})
    waits = Waits()
    with caplog.at_level(logging.WARNING, logger="flowstage.notifiers"):
        delivery = deliver(notifier, FAILED, sleep=waits)
    assert delivery.status == "failed"
    assert delivery.tries == 3
    assert len(http_sink.received) == 3
    assert delivery.error is not None
    assert "HTTP 500" in delivery.error
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3
    assert_no_secret(delivery.error, caplog.text, *(r.getMessage() for r in caplog.records))


def test_slack_posts_one_readable_line_linking_the_run(http_sink: HttpSink) -> None:
    notifier = one({"chat": {"slack": {"url": f"{http_sink.url}/services/T0/B0/{URL_TOKEN}"}}}, "chat")
    assert deliver(notifier, FAILED).status == "delivered"
    (got,) = http_sink.received
    assert json.loads(got.body) == {"text": slack_text(FAILED)}
    text = json.loads(got.body)["text"]
    assert "<http://127.0.0.1:8080/runs/r-42|run r-42>" in text
    assert "campaign_launch" in text
    assert "duplicate key &lt;id&gt; &amp; more" in text


def test_slack_url_token_never_appears_in_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    notifier = one({"chat": {"slack": f"http://127.0.0.1:{_closed_port()}/services/T0/B0/{URL_TOKEN}"}}, "chat")
    with caplog.at_level(logging.WARNING, logger="flowstage.notifiers"):
        delivery = deliver(notifier, FAILED, sleep=Waits())
    assert delivery.status == "failed"
    assert delivery.error is not None
    assert_no_secret(delivery.error, caplog.text)


def test_email_sends_text_and_html_parts_to_every_recipient(smtp_sink: SmtpSink) -> None:
    notifier = one(
        {
            "team": {
                "email": {
                    "to": ["data@example.com", "ops@example.com"],
                    "smtp": f"smtp://127.0.0.1:{smtp_sink.port}",
                    "from": "flowstage@example.com",
                    "user": "robot",
                    "password": SMTP_PASSWORD,
                }
            }
        },
        "team",
    )
    assert deliver(notifier, FAILED).status == "delivered"
    assert smtp_sink.logins == ["robot"]
    ((sender, recipients, msg),) = smtp_sink.messages
    assert sender == "flowstage@example.com"
    assert recipients == ["data@example.com", "ops@example.com"]
    assert msg["Subject"] == "[flowstage] campaign_launch r-42 failed"
    assert msg["To"] == "data@example.com, ops@example.com"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "load_orders: duplicate key <id> & more" in text.get_content()
    assert "http://127.0.0.1:8080/runs/r-42" in text.get_content()
    assert "duplicate key &lt;id&gt; &amp; more" in html.get_content()
    assert "<id>" not in html.get_content()
    assert SMTP_PASSWORD not in msg.as_string()


def test_email_refused_login_fails_without_quoting_the_password(smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    url = f"smtp://robot:{SMTP_PASSWORD}x@127.0.0.1:{smtp_sink.port}"  # the URL's password, a wrong one
    notifier = one({"team": {"email": {"to": ["data@example.com"], "smtp": url}}}, "team")
    with caplog.at_level(logging.WARNING, logger="flowstage.notifiers"):
        delivery = deliver(notifier, FAILED, sleep=Waits())
    assert delivery.status == "failed"
    assert delivery.tries == 3
    assert delivery.error is not None
    assert "SMTPAuthenticationError" in delivery.error
    assert smtp_sink.messages == []
    assert_no_secret(delivery.error, caplog.text)


def test_command_gets_the_body_as_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    script = "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"
    notifier = one({"page": {"command": [sys.executable, "-c", script, str(out)]}}, "page")
    assert deliver(notifier, FAILED).status == "delivered"
    assert out.read_bytes() == encode(FAILED.body)
    assert json.loads(out.read_bytes()) == FAILED.body


def test_command_line_is_split_without_a_shell_and_runs_in_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "write.py").write_text("import sys; open('got.json', 'wb').write(sys.stdin.buffer.read())\n")
    notifier = one({"page": {"command": f"'{sys.executable}' write.py ; touch pwned"}}, "page", root=tmp_path)
    assert notifier.argv == (sys.executable, "write.py", ";", "touch", "pwned")
    assert deliver(notifier, FAILED).status == "delivered"
    assert json.loads((tmp_path / "got.json").read_bytes()) == FAILED.body
    assert not (tmp_path / "pwned").exists()  # `;` was an argument, not a shell's separator


def test_command_failing_reports_its_last_stderr_line_masked(caplog: pytest.LogCaptureFixture) -> None:
    script = (
        f"import sys; print('first line', file=sys.stderr); print('denied for token {URL_TOKEN}', file=sys.stderr); sys.exit(4)"
    )
    notifier = one(
        {"page": {"command": [sys.executable, "-c", script, f"https://x:{URL_PASSWORD}@h/?token={URL_TOKEN}"]}}, "page"
    )
    with caplog.at_level(logging.WARNING, logger="flowstage.notifiers"):
        delivery = deliver(notifier, FAILED, sleep=Waits())
    assert delivery.status == "failed"
    assert delivery.error is not None
    assert "exit code 4: denied for token ***" in delivery.error
    assert "first line" not in delivery.error
    assert_no_secret(delivery.error, caplog.text)


def test_a_notifier_that_is_down_fails_after_three_tries_waiting_with_backoff_within_ten_seconds() -> None:
    notifier = one({"ops": {"webhook": f"http://127.0.0.1:{_closed_port()}/hook"}})
    waits = Waits()
    delivery = deliver(notifier, FAILED, sleep=waits)
    assert delivery.status == "failed"
    assert delivery.tries == 3
    assert delivery.error is not None
    assert "ConnectError" in delivery.error
    assert waits.waits == [0.5, 1.5]
    assert sum(waits.waits) <= 10


def test_no_try_starts_after_the_deadline() -> None:
    now = [0.0]

    class Slow:
        name, kind = "slow", "test"

        def send(self, notification: Notification) -> None:
            now[0] += 6.0  # each try takes 6 s
            raise NotifierError("timed out")

    def sleep(seconds: float) -> None:
        now[0] += seconds

    delivery = deliver(Slow(), FAILED, sleep=sleep, clock=lambda: now[0])
    assert delivery == Delivery("slow", "failed", 2, "timed out")
    assert now[0] <= 10 + 6


def test_deliver_never_raises_and_masks_an_unexpected_error() -> None:
    class Broken:
        name, kind = "broken", "test"

        def send(self, notification: Notification) -> None:
            raise RuntimeError(f"cannot reach https://u:{URL_PASSWORD}@example.com")

    delivery = deliver(Broken(), FAILED, sleep=Waits())
    assert delivery.status == "failed"
    assert delivery.error == "RuntimeError: cannot reach https://u:***@example.com"


def test_an_unknown_kind_is_refused_with_did_you_mean_and_its_key_path() -> None:
    with pytest.raises(DefinitionError) as caught:
        notifiers_from_config({"notifiers": {"ops": {"webhok": "http://127.0.0.1:9/h"}}})
    assert str(caught.value).startswith("flowstage.yaml: notifiers.ops.webhok: unknown notifier kind 'webhok'")
    assert "(did you mean 'webhook'?)" in str(caught.value)


def test_an_email_without_to_is_refused_at_its_key_path_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "flowstage.yaml"
    config.write_text(
        f"notifiers:\n  ok: {{slack: 'https://hooks.example.com/{URL_TOKEN}'}}\n  team:\n    email: {{smtp: 'smtp://u:{SMTP_PASSWORD}@127.0.0.1:25'}}\n"
    )
    from flowstage.app.registry import notifiers_for
    from flowstage.settings import load_project

    with pytest.raises(DefinitionError) as caught:
        notifiers_for(load_project(root=tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{config}:4:")
    assert "notifiers.team.email.to: `to:` is required" in message
    assert_no_secret(message)


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"email": {"to": ["a@example.com"], "smtp": f"ftp://u:{SMTP_PASSWORD}@h"}}, "notifiers.n.email.smtp"),
        ({"webhook": f"ftp://u:{URL_PASSWORD}@h/?token={URL_TOKEN}"}, "notifiers.n.webhook"),
        ({"webhook": {"url": "http://h/", "secret": HOOK_SECRET, "sign": True}}, "notifiers.n.webhook.sign"),
        ({"webhook": "http://h/", "slack": "http://h/"}, "notifiers.n"),
        ({"command": []}, "notifiers.n.command"),
        ({"email": {"to": "nobody", "smtp": "smtp://h"}}, "notifiers.n.email.to"),
    ],
)
def test_wrong_settings_are_refused_at_their_key_path_without_quoting_a_secret(entry: dict[str, Any], where: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        notifiers_from_config({"notifiers": {"n": entry}})
    assert f"flowstage.yaml: {where}: " in str(caught.value)
    assert_no_secret(str(caught.value))


def test_notify_test_over_the_cli(project: Project, http_sink: HttpSink) -> None:
    down = f"http://127.0.0.1:{_closed_port()}/hook?token={URL_TOKEN}"
    project.write(
        "flowstage.yaml",
        f"""
        notifiers:
          ops: {{webhook: {{url: "{http_sink.url}/hook", secret: "${{HOOK_SECRET}}"}}}}
          down: {{webhook: "{down}"}}
        """,
    )
    env = project.env(HOOK_SECRET=HOOK_SECRET)

    ok = project.cli("notify", "test", "ops", env=env)
    assert ok.code == 0, ok.err
    assert ok.out.splitlines() == ["try 1: delivered", "delivered (webhook ops)"]
    (got,) = http_sink.received
    body = json.loads(got.body)
    assert body["workflow"] == "sample"
    assert body["status"] == "failed"
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["x-flowstage-signature"], expected)

    failed = project.cli("notify", "test", "down", env=env)
    assert failed.code == 3, failed.err
    assert [line.split(":")[0] for line in failed.out.splitlines()] == ["try 1", "try 2", "try 3"]
    assert "failed after 3 tries: webhook down: POST" in failed.err
    assert_no_secret(failed.out, failed.err)

    unknown = project.cli("notify", "test", "opz", env=env)
    assert unknown.code == 2
    assert "no notifier 'opz' (did you mean 'ops'?)" in unknown.err
