"""`flowstage.redact`: passwords in URL userinfo and in password-like query values become ``***``.

Percent-encoded passwords are removed from free text both as written in the URL and decoded;
a URL without a secret is left exactly as it is.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstage.redact import Scrubber, mask_strings, mask_url, masked_paths, password_of, scrub, secrets_of

# (url, mask_url(url), password_of(url))
URLS = [
    pytest.param(
        "postgresql+psycopg://app:s3cret@db.example.com:5432/shop",
        "postgresql+psycopg://app:***@db.example.com:5432/shop",
        "s3cret",
        id="userinfo",
    ),
    pytest.param(
        "mysql+pymysql://root:p@ss@127.0.0.1:3306/test",
        "mysql+pymysql://root:***@127.0.0.1:3306/test",
        "p@ss",
        id="at-sign-in-password",
    ),
    pytest.param(
        "postgresql://u:a@b@c@host/db?sslmode=require",
        "postgresql://u:***@host/db?sslmode=require",
        "a@b@c",
        id="several-at-signs-in-password",
    ),
    pytest.param(
        "postgresql://app:p%40ss%2Fw%3Ard@host/db",
        "postgresql://app:***@host/db",
        "p@ss/w:rd",
        id="percent-encoded-password",
    ),
    pytest.param("https://user:tok@api.example.com/v1", "https://user:***@api.example.com/v1", "tok", id="https-userinfo"),
    pytest.param(
        "https://api.example.com/v1/items?password=hunter2",
        "https://api.example.com/v1/items?password=***",
        "hunter2",
        id="query-password-first",
    ),
    pytest.param(
        "https://api.example.com/v1/items?page=2&token=abc123&limit=10",
        "https://api.example.com/v1/items?page=2&token=***&limit=10",
        "abc123",
        id="query-token-in-the-middle",
    ),
    pytest.param(
        "https://api.example.com/x?PASSWORD=Up%26Down",
        "https://api.example.com/x?PASSWORD=***",
        "Up&Down",
        id="query-key-any-case-value-encoded",
    ),
    pytest.param(
        "https://api.example.com/x?api_key=k1&secret=s2",
        "https://api.example.com/x?api_key=***&secret=***",
        "k1",
        id="several-query-secrets",
    ),
    pytest.param("postgresql+psycopg://postgres@127.0.0.1:5432/test", None, None, id="user-without-password"),
    pytest.param("duckdb:///.flowstage/warehouse.duckdb", None, None, id="duckdb-file"),
    pytest.param("sqlite:///shop.db", None, None, id="sqlite-file"),
    pytest.param("https://example.com/a/b?page=2&sort=name#top", None, None, id="plain-http"),
    pytest.param("https://example.com/search?tokens=5&passwords_total=3", None, None, id="secret-like-key-prefixes"),
    pytest.param("mysql+pymysql://root:@127.0.0.1/test", "mysql+pymysql://root:***@127.0.0.1/test", None, id="empty-password"),
]


@pytest.mark.parametrize(("url", "masked", "password"), URLS)
def test_mask_url_and_password_of(url: str, masked: str | None, password: str | None) -> None:
    assert mask_url(url) == (url if masked is None else masked)
    assert password_of(url) == password


@pytest.mark.parametrize(("url", "masked", "password"), URLS)
def test_scrub_of_the_url_itself_equals_mask_url(url: str, masked: str | None, password: str | None) -> None:
    assert scrub(url, [url]) == (url if masked is None else masked)


# (text, urls, scrub(text, urls))
TEXTS = [
    pytest.param(
        'connection failed: password authentication failed for user "app" (password s3cret)',
        ["postgresql://app:s3cret@host/db"],
        'connection failed: password authentication failed for user "app" (password ***)',
        id="bare-password",
    ),
    pytest.param(
        "Access denied for root using p@ss",
        ["mysql+pymysql://root:p@ss@127.0.0.1/test"],
        "Access denied for root using ***",
        id="bare-password-with-at-sign",
    ),
    pytest.param(
        "tried p%40ss%2Fw then p@ss/w",
        ["postgresql://app:p%40ss%2Fw@host/db"],
        "tried *** then ***",
        id="percent-encoded-raw-and-decoded",
    ),
    pytest.param(
        "login pw123 failed, pw rejected",
        ["postgresql://app:pw@host/db?password=pw123"],
        "login *** failed, *** rejected",
        id="longer-secret-of-one-url-first",
    ),
    pytest.param(
        "GET https://api.example.com/x?token=abc123 failed; token abc123 rejected",
        ["https://api.example.com/x?token=abc123"],
        "GET https://api.example.com/x?token=*** failed; token *** rejected",
        id="query-token",
    ),
    pytest.param(
        "value Up&Down or Up%26Down",
        ["https://api.example.com/x?password=Up%26Down"],
        "value *** or ***",
        id="query-password-raw-and-decoded",
    ),
    pytest.param(
        "cannot reach postgresql://other:elsewhere@h2/db",
        [],
        "cannot reach postgresql://other:***@h2/db",
        id="unknown-url-userinfo-still-masked",
    ),
    pytest.param(
        "relation t does not exist at postgresql://postgres@127.0.0.1:5432/test",
        ["postgresql://postgres@127.0.0.1:5432/test", "duckdb:///w.duckdb"],
        "relation t does not exist at postgresql://postgres@127.0.0.1:5432/test",
        id="nothing-secret",
    ),
    pytest.param(
        "both pw1 and pw2 leaked",
        ["postgresql://a:pw1@h/db", "mysql://b:pw2@h/db"],
        "both *** and *** leaked",
        id="several-urls",
    ),
]


@pytest.mark.parametrize(("text", "urls", "expected"), TEXTS)
def test_scrub(text: str, urls: list[str], expected: str) -> None:
    assert scrub(text, urls) == expected


def test_scrub_orders_secrets_across_urls() -> None:
    urls = ["postgresql://a:pw@h/db", "mysql://b:pw123@h/db"]

    assert scrub("login with pw123 failed", urls) == "login with *** failed"


@pytest.mark.parametrize(("text", "urls", "expected"), TEXTS)
def test_a_scrubber_masks_every_line_as_scrub_does(text: str, urls: list[str], expected: str) -> None:
    masker = Scrubber(urls)

    assert masker(text) == expected
    assert masker(text + "\nsecond line: " + text) == expected + "\nsecond line: " + expected


def test_a_scrubber_leaves_a_line_without_secrets_as_it_is() -> None:
    masker = Scrubber(["postgresql://app:pw@h/db", "duckdb:///w.duckdb"])

    for line in ("", "rows: 10", "a=b c=d", "see https://example.com/docs?page=2"):
        assert masker(line) == line


def test_secrets_of_lists_raw_and_decoded_passwords_longest_first() -> None:
    assert secrets_of(["postgresql://a:p%40w@h/db", "mysql://b:pw12345@h/db", "sqlite:///x.db"]) == [
        "pw12345",
        "p%40w",
        "p@w",
    ]


@pytest.mark.parametrize(
    "form",
    [
        pytest.param("p%40ss%20word", id="as-written"),
        pytest.param("p@ss word", id="decoded"),
        pytest.param("p%40ss word", id="re-encoded-but-the-space"),
        pytest.param("p@ss%20word", id="space-encoded-only"),
        pytest.param("p%40ss+word", id="form-encoded"),
        pytest.param("%70%40%73s%20word", id="every-character-encoded"),
    ],
)
def test_a_password_is_masked_plain_percent_encoded_or_decoded(form: str) -> None:
    url = "postgresql+psycopg://user:p%40ss%20word@127.0.0.1:5432/db"
    text = f'unexpected spaces found in "{form}", use percent-encoded spaces'

    assert scrub(text, [url]) == 'unexpected spaces found in "***", use percent-encoded spaces'
    assert Scrubber([url])(f"{form} {form}") == "*** ***"


def test_an_encoded_mask_does_not_reach_into_other_text() -> None:
    masker = Scrubber(["postgresql://app:a%2Fb@h/db"])

    assert masker("a/b a%2fb a%2Fb ab a/c") == "*** *** *** ab a/c"


def test_a_definition_is_masked_string_by_string_and_restored_from_its_original() -> None:
    from flowstage.redact import mask_strings, restore_masked

    original = {
        "name": "w",
        "tasks": [
            {"name": "a", "http": {"url": "https://u:pw1@h/x?token=t0k&page=2", "expect": 200}},
            {"name": "b", "shell": "curl https://h/y?api_key=k3y", "retries": 1},
            {"name": "c", "sql": "SELECT 1 WHERE a = 'x'"},
        ],
    }
    masked = mask_strings(original)

    assert masked["tasks"][0]["http"] == {"url": "https://u:***@h/x?token=***&page=2", "expect": 200}
    assert masked["tasks"][1]["shell"] == "curl https://h/y?api_key=***"
    assert masked["tasks"][2] == original["tasks"][2]
    assert restore_masked(masked, lambda: original) == original
    # a source that lost a credential leaves it masked; data without a mask never asks for the source
    assert restore_masked(masked, lambda: {})["tasks"][0]["http"]["url"] == "https://u:***@h/x?token=***&page=2"
    assert restore_masked({"plain": "x"}, lambda: pytest.fail("asked")) == {"plain": "x"}


def test_a_password_holding_a_percent_sign_is_masked_as_written_and_decoded() -> None:
    masker = Scrubber(["postgresql://app:a%2541z@h/db"])  # the password is a%41z

    assert masker("got a%41z and a%2541z, not aAz-like text") == "got *** and ***, not aAz-like text"


@pytest.mark.parametrize(
    ("value", "paths"),
    [
        ("postgresql://u:***@h/db", ["value"]),
        ("https://h/x?token=***&a=1", ["value"]),
        ("echo *** and a=***", []),
        ("postgresql://u:pw@h/db", []),
        ({"a": [1, mask_url("https://user:pw@host/x")], "b": "plain"}, ["a[1]"]),
        ({"tasks": [{"http": {"url": mask_url("https://h/x?api_key=k")}}]}, ["tasks[0].http.url"]),
    ],
)
def test_masked_paths_names_where_a_masked_password_is(value: object, paths: list[str]) -> None:
    assert masked_paths(value) == paths


@given(st.text(min_size=1).filter(lambda p: "/" not in p and "@" not in p and not any(c.isspace() for c in p)))
def test_a_masked_url_is_always_found_masked_and_never_holds_the_password(password: str) -> None:
    masked = mask_strings({"url": f"postgresql://app:{password}@db/shop"})

    assert masked_paths(masked) == ["url"]
    assert masked["url"] == "postgresql://app:***@db/shop"
