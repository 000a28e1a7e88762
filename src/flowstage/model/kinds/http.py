"""The `http:` kind: one HTTP request, its URL's template values percent-encoded."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowstage.model.kinds import KindSpec


class HttpRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    url: str = Field(default="", description="http:// or https:// URL (template values percent-encoded); with base_url, a path")
    base_url: str | None = Field(
        default=None, description="an http(s) URL taken as written (a whole-URL variable); url: is a path joined to it"
    )
    method: str = Field(default="GET", pattern=r"^(?i:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)$")
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict, description="query string parameters")
    json_body: Any = Field(default=None, alias="json", description="a JSON body")
    body: str | None = Field(default=None, description="a text body")
    expect: int | list[int] = Field(default=200, description="the expected status code(s)")

    @model_validator(mode="after")
    def _url(self) -> HttpRequest:
        url, base = self.url, self.base_url
        if base is None:
            if not url.startswith(("http://", "https://")):
                hint = " (a whole-URL variable goes in base_url:, with url: the path)" if url.lstrip().startswith("{") else ""
                raise ValueError(f"url: not an http(s) URL: {url!r}{hint}")
            return self
        if "{{" not in base:
            from urllib.parse import urlsplit

            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"base_url: not an http(s) URL: {base!r}")
            if parts.query or parts.fragment or base.endswith(("?", "#")):
                raise ValueError(f"base_url: must not carry a query or fragment (put them in url: or params:): {base!r}")
        if "://" in url.split("?", 1)[0]:
            raise ValueError(f"url: with base_url:, url: is a path joined to it, not a whole URL: {url!r}")
        return self


class HttpSpec(KindSpec):
    """``http: {url, method, json, headers, expect}``: call an API; `save:` keeps the JSON (or text) answer."""

    kind: ClassVar[str] = "http"
    template_fields: ClassVar[tuple[str, ...]] = ("http",)
    http: HttpRequest
