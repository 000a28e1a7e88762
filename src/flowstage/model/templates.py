"""Jinja2 templates in a sandbox, with undefined names as errors.

`{{ var.x }}`, `{{ run.id }}`, `{{ task.name }}` ... A string that is exactly one expression
(``"{{ var.regions }}"``) renders to the expression's native value (a list stays a list); any
other string renders to text. In shell commands every expression's value is shell-quoted, so a
variable can never inject a command.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flowstage.errors import VariableError

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


def has_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _shell_finalize(value: Any) -> str:
    if value is None:
        return "''"
    if isinstance(value, bool):
        return "true" if value else "false"
    return shlex.quote(str(value))


def _url_finalize(value: Any) -> str:
    from urllib.parse import quote

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return quote(str(value), safe="")


@lru_cache(maxsize=4)
def _environment(finalize: str) -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize={"shell": _shell_finalize, "url": _url_finalize}.get(finalize),
    )


def environment(shell: bool = False, url: bool = False) -> SandboxedEnvironment:
    """The sandbox; with `shell` every value is shell-quoted, with `url` percent-encoded."""
    return _environment("shell" if shell else "url" if url else "")


def syntax_error(text: str) -> str | None:
    """A message if `text` is not a valid template, else None."""
    if not has_template(text):
        return None
    from jinja2 import TemplateSyntaxError

    try:
        environment().parse(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None


def expression_error(expr: str) -> str | None:
    """A message if `expr` is not a valid expression (as in `if:`), else None."""
    from jinja2 import TemplateSyntaxError

    try:
        environment().compile_expression(expr)
    except TemplateSyntaxError as exc:
        return f"invalid expression {expr!r}: {exc.message}"
    return None


def _fail(exc: Exception, source: str) -> VariableError:
    from jinja2 import UndefinedError

    if isinstance(exc, UndefinedError):
        text = str(exc.message or exc)
        m = re.search(r"has no attribute '([^']+)'", text)
        if m and "dict object" in text:
            return VariableError(f"undefined variable '{m.group(1)}' in {source!r}")
        return VariableError(f"{text} in {source!r}")
    return VariableError(f"cannot render {source!r}: {type(exc).__name__}: {exc}")


def _defined(value: Any) -> Any:
    """`value`, once checked for undefined names, also inside lists and mappings (`[var.missing]`)."""
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        str(value)  # raises for StrictUndefined
    elif isinstance(value, list | tuple):
        for item in value:
            _defined(item)
    elif isinstance(value, dict):
        for item in value.values():
            _defined(item)
    return value


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    """The value of a Jinja expression (an `if:`)."""
    try:
        return _defined(environment().compile_expression(expr, undefined_to_none=False)(**context))
    except Exception as exc:
        raise _fail(exc, expr) from None


def render(value: Any, context: dict[str, Any], *, shell: bool = False, url: bool = False) -> Any:
    """Render every template string inside `value` (strings, lists, mappings).

    `shell`: values are shell-quoted; `url`: values are percent-encoded (a URL's parts).
    """
    if isinstance(value, str):
        if not has_template(value):
            return value
        try:
            if not shell and not url:
                m = _SINGLE.match(value)
                if m:
                    return _defined(environment().compile_expression(m.group("expr"), undefined_to_none=False)(**context))
            return environment(shell, url).from_string(value).render(**context)
        except Exception as exc:
            raise _fail(exc, value) from None
    if isinstance(value, list):
        return [render(v, context, shell=shell, url=url) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, shell=shell, url=url) for k, v in value.items()}
    return value


def contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return has_template(value)
    if isinstance(value, list):
        return any(contains_template(v) for v in value)
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    return False
