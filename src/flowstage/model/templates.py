"""Jinja2 templates in a sandbox, with undefined names as errors.

`{{ var.x }}`, `{{ run.id }}`, `{{ task.name }}` ... A string that is exactly one expression
(``"{{ var.regions }}"``) renders to the expression's native value (a list stays a list); any
other string renders to text. In shell commands every expression's value is shell-quoted, so a
variable can never inject a command; in an http task's URL (`render_url`) every value is
percent-encoded for the part of the URL it lands in, so it can never add a path segment or a query
parameter.
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


#: bounds of one evaluation: a template is a few values put together, never a computation
MAX_SECONDS = 5.0
MAX_TEXT = 1 << 20  # characters of a rendered string, and of any string or list made on the way
MAX_INT_BITS = 14_300  # about 4,300 decimal digits, the most Python turns into text
MAX_WIDTH = 10_000  # a padding or field width
_WIDTH = re.compile(r"%[-+ #0]*(\d+)|\{[^{}]*:[^{}]*?(\d+)[^{}]*\}")


class TemplateTimeout(BaseException):
    """Raised in a thread whose evaluation outlived `MAX_SECONDS` (never caught by template code)."""


def _too_large(what: str) -> VariableError:
    return VariableError(f"{what}: a template may not build a value this large")


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _too_large("a number of more than 4,300 digits")
    if isinstance(value, str | bytes | list | tuple) and len(value) > MAX_TEXT:
        raise _too_large(f"a value of {len(value):,} items")
    return value


def _check_widths(fmt: Any) -> None:
    if isinstance(fmt, str):
        for m in _WIDTH.finditer(fmt):
            width = m.group(1) or m.group(2)
            if width and int(width) > MAX_WIDTH:
                raise _too_large(f"a field width of {int(width):,}")


def _bounded_binop(operator: str, left: Any, right: Any) -> Any:
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (left, right))
    if operator == "**" and numbers and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise _too_large(f"{left} ** {right}")
    elif operator == "*" and isinstance(left, int | str | list | tuple) and isinstance(right, int | str | list | tuple):
        if numbers and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _too_large("a product of more than 4,300 digits")
        else:
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and not isinstance(seq, int) and len(seq) * max(times, 0) > MAX_TEXT:
                raise _too_large(f"a sequence repeated {times:,} times")
    elif operator == "%" and isinstance(left, str):
        _check_widths(left)
    import operator as ops

    table = {"**": ops.pow, "*": ops.mul, "%": ops.mod, "+": ops.add}
    return _check_size(table[operator](left, right))


#: str methods whose integer argument is a width
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _bounded_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name in _WIDTH_METHODS and any(isinstance(a, int) and a > MAX_WIDTH for a in (*args, *kwargs.values())):
            raise _too_large(f"a width over {MAX_WIDTH:,}")
        if name == "replace" and len(args) >= 2:
            _check_replacement(owner, args[0], args[1])


def _check_replacement(text: Any, old: Any, new: Any) -> None:
    strings = isinstance(text, str) and isinstance(old, str) and isinstance(new, str)
    if strings and (text.count(old) + 1) * len(new) + len(text) > MAX_TEXT:
        raise _too_large("a replacement")


def _bounded_filters(filters: dict[str, Any]) -> None:
    """Width and size checks before the filters that could build a huge string from a small one."""

    def width_checked(fn: Any, positions: tuple[int, ...], names: tuple[str, ...]) -> Any:
        def checked(*args: Any, **kwargs: Any) -> Any:
            widths = [args[i] for i in positions if i < len(args)] + [kwargs[n] for n in names if n in kwargs]
            if any(isinstance(w, int) and w > MAX_WIDTH for w in widths):
                raise _too_large(f"a width over {MAX_WIDTH:,}")
            return _check_size(fn(*args, **kwargs))

        return checked

    filters["center"] = width_checked(filters["center"], (1,), ("width",))
    filters["indent"] = width_checked(filters["indent"], (1,), ("width",))
    filters["wordwrap"] = width_checked(filters["wordwrap"], (2,), ("width",))
    original_format, original_replace = filters["format"], filters["replace"]

    def format_checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_widths(value)
        return _check_size(original_format(value, *args, **kwargs))

    def replace_checked(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        _check_replacement(s, old, new)
        return original_replace(eval_ctx, s, old, new, count)

    format_checked.__dict__.update(original_format.__dict__)
    replace_checked.__dict__.update(original_replace.__dict__)  # keeps jinja's pass_eval_context mark
    filters["format"] = format_checked
    filters["replace"] = replace_checked


@lru_cache(maxsize=4)
def _environment(finalize: str) -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """The sandbox, with the operators and calls that could build a huge value bounded."""

        intercepted_binops = frozenset({"**", "*", "%", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            return _bounded_binop(operator, left, right)

        def wrap_str_format(self, value: Any) -> Any:
            owner = getattr(value, "__self__", None)
            if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
                _check_widths(owner)
            return super().wrap_str_format(value)

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            _bounded_call(obj, args, kwargs)
            return _check_size(super().call(context, obj, *args, **kwargs))

    import warnings

    # code Jinja generates from a template may draw Python's SyntaxWarning (`(5)[2:]`): the template's
    # error comes when it runs, never a warning on the command's stderr
    warnings.filterwarnings("ignore", category=SyntaxWarning, module="<template>")
    env = BoundedSandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize={"shell": _shell_finalize, "url": _url_finalize, "url_mark": _url_mark}.get(finalize),
    )
    _bounded_filters(env.filters)
    return env


class _Watchdog:
    """Stops an evaluation that outlives `MAX_SECONDS`: one daemon thread for the whole process,
    started with the first evaluation, raises `TemplateTimeout` in the thread that runs it.

    A loop inside a template cannot be bounded by counting (Jinja compiles it to Python), so the
    time is; what a single operation could cost is bounded beforehand (`BoundedSandbox`).
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None

    def watch(self) -> int:
        import threading
        import time

        ident = threading.get_ident()
        with self._lock:
            self._deadlines[ident] = time.monotonic() + MAX_SECONDS
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="flowstage-template-watchdog", daemon=True)
                self._thread.start()
        return ident

    def unwatch(self, ident: int) -> None:
        with self._lock:
            self._deadlines.pop(ident, None)
            if ident in self._fired:  # fired as the evaluation ended: what is still pending is cleared
                self._fired.discard(ident)
                _async_raise(ident, None)

    def _loop(self) -> None:
        import time

        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                for ident, deadline in list(self._deadlines.items()):
                    if deadline <= now and ident not in self._fired:
                        self._fired.add(ident)
                        _async_raise(ident, TemplateTimeout)


def _async_raise(ident: int, exc: type[BaseException] | None) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None)


_watchdog = _Watchdog()


def _bounded(fn: Any, source: str) -> Any:
    """`fn()` within `MAX_SECONDS`; its value checked for size."""
    try:
        ident = _watchdog.watch()
        try:
            return _check_size(fn())
        finally:
            _watchdog.unwatch(ident)
    except TemplateTimeout:
        raise VariableError(f"{source!r} took longer than {MAX_SECONDS:g}s to evaluate (a template is not a program)") from None


def environment(shell: bool = False, url: bool = False) -> SandboxedEnvironment:
    """The sandbox; with `shell` every value is shell-quoted, with `url` percent-encoded."""
    return _environment("shell" if shell else "url" if url else "")


_TOO_DEEP = "template nested too deeply: a template puts values together, it is not a program"


#: a value rendered into a URL, marked by its UTF-8 bytes in hex between two NULs until it is encoded
_URL_MARK = re.compile("\x00([0-9a-f]*)\x00")
_SCHEME_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


def _url_mark(value: Any) -> str:
    text = "" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)
    return "\x00" + text.encode("utf-8", "surrogatepass").hex() + "\x00"


def _encoded(part: str, safe: str = "") -> tuple[str, bool]:
    """`part` with each marked value percent-encoded (only unreserved characters and `safe` kept)."""
    from urllib.parse import quote

    found = False

    def encode(m: re.Match[str]) -> str:
        nonlocal found
        found = True
        return quote(bytes.fromhex(m.group(1)), safe=safe)

    return _URL_MARK.sub(encode, part), found


def render_url(template: str, context: dict[str, Any]) -> str:
    """Render a URL template, each value percent-encoded for the part of the URL it lands in.

    The literal text of the template decides the URL's shape (scheme, host, path segments, query
    keys and values, fragment); a value cannot change it: in a path segment it cannot add ``/``,
    ``?`` or ``#``, nor be a ``.`` or ``..`` segment; in a query key or value it cannot add ``&``,
    ``=`` or ``#``. A template without a scheme is a path (joined to an http task's `base_url:`).

    Raises:
        VariableError: a name is undefined, or a value would make a ``.``/``..`` path segment.
    """
    from urllib.parse import unquote

    if not has_template(template):
        return template
    if "\x00" in template:
        raise VariableError(f"a URL template cannot hold a NUL character: {template!r}")
    try:
        compiled = _environment("url_mark").from_string(template)
        marked: str = _bounded(lambda: _render_text(compiled, context), template)
    except VariableError:
        raise
    except Exception as exc:
        raise _fail(exc, template) from None
    head = _SCHEME_AUTHORITY.match(marked)
    authority = head.group(0) if head else ""
    rest = marked[len(authority) :]
    rest, hash_, fragment = rest.partition("#")
    path, mark, query = rest.partition("?")
    segments = []
    for segment in path.split("/"):
        encoded, valued = _encoded(segment)
        if valued and unquote(encoded) in (".", ".."):
            raise VariableError(f"a value rendered into {template!r} makes a {unquote(encoded)!r} path segment")
        segments.append(encoded)
    pairs = []
    for pair in query.split("&") if mark else []:
        key, eq, value = pair.partition("=")
        pairs.append(_encoded(key)[0] + eq + _encoded(value)[0])
    return _encoded(authority, safe=":[]")[0] + "/".join(segments) + mark + "&".join(pairs) + hash_ + _encoded(fragment)[0]


def syntax_error(text: str) -> str | None:
    """A message if `text` is not a valid template, else None."""
    if not has_template(text):
        return None
    from jinja2 import TemplateSyntaxError

    try:
        tree = environment().parse(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {_syntax_words(str(exc.message), expression=False)}"
    except RecursionError:
        return _TOO_DEEP
    except ValueError as exc:  # a number literal past 4,300 digits
        return f"template syntax error: {_number_message(exc)}"
    unknown = _unknown_filters(tree)
    return f"template syntax error: {unknown}" if unknown else None


def _syntax_words(said: str, *, expression: bool) -> str:
    """Jinja's syntax error in the words of a template author (its own words when none fit)."""
    m = re.search(r"looking for the following tags: (.+?)\. The innermost block that needs to be closed is '(\w+)'", said)
    if m:
        return f"{{% {m.group(2)} %}} is never closed: add {{% end{m.group(2)} %}}"
    if "end of template" in said:
        return "the expression ends where a value is expected" if expression else "{{ is never closed: add }}"
    if said == "chunk after expression":
        return "something follows the expression: compare with == (not =), join conditions with and / or"
    m = re.match(r"""unexpected char (['"])(.)\1 at (\d+)""", said)
    if m:
        char, at = m.group(2), int(m.group(3)) + 1
        if char in "'\"":
            return f"the quote at character {at} is never closed"
        hint = {"&": ": write and", "!": ": write not (or != to compare)", "$": ""}.get(char, "")
        return f"{char!r} (character {at}) cannot be used in an expression{hint}"
    m = re.match(r"No (filter|test) named '([^']+)'", said)
    if m:
        import difflib

        known = environment().filters if m.group(1) == "filter" else environment().tests
        close = difflib.get_close_matches(m.group(2), sorted(known), n=1)
        return f"unknown {m.group(1)} '{m.group(2)}'" + (f" (did you mean '{close[0]}'?)" if close else "")
    if said == "unexpected '}'":
        return "a single } : close the expression with }}"
    m = re.match(r"expected token 'end of print statement', got '(.+)'", said)
    if m:
        return f"{m.group(1)!r} follows the value inside {{{{ }}}}: one expression each (join text with ~)"
    return said


def _unknown_filters(tree: Any) -> str | None:
    """A filter or test the sandbox does not have (Jinja finds it only when the template runs)."""
    import difflib

    from jinja2 import nodes

    env = environment()
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in known:
            what = "filter" if isinstance(node, nodes.Filter) else "test"
            close = difflib.get_close_matches(node.name, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return f"unknown {what} '{node.name}'{hint}"
    return None


def _number_message(exc: Exception) -> str:
    return "a number of more than 4,300 digits" if "digits" in str(exc) else str(exc)


def expression_error(expr: str) -> str | None:
    """A message if `expr` is not a valid expression (as in `if:`), else None."""
    from jinja2 import TemplateSyntaxError

    if "{{" in expr or "{%" in expr:
        return f"invalid expression {expr!r}: if: is an expression without braces (write var.x, not {{{{ var.x }}}})"
    try:
        environment().compile_expression(expr)
    except TemplateSyntaxError as exc:
        return f"invalid expression {expr!r}: {_syntax_words(str(exc.message), expression=True)}"
    except RecursionError:
        return _TOO_DEEP
    except Exception as exc:  # a constant part that fails as Jinja folds it (`(3)[0]`, `{[1]: 2}`), a huge number
        return f"invalid expression {expr!r}: {_number_message(exc)}"
    return None


def _fail(exc: Exception, source: str) -> VariableError:
    from jinja2 import UndefinedError

    if isinstance(exc, UndefinedError):
        text = str(exc.message or exc)
        m = re.search(r"has no attribute '([^']+)'", text)
        if m and "dict object" in text:
            return VariableError(f"undefined variable '{m.group(1)}' in {source!r}")
        return VariableError(f"{text} in {source!r}")
    if isinstance(exc, RecursionError):
        return VariableError(f"{_TOO_DEEP} ({source[:60]!r}...)")
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
        return _defined(_bounded(lambda: environment().compile_expression(expr, undefined_to_none=False)(**context), expr))
    except VariableError:
        raise
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
                    expr = environment().compile_expression(m.group("expr"), undefined_to_none=False)
                    return _defined(_bounded(lambda: expr(**context), value))
            template = environment(shell, url).from_string(value)
            return _bounded(lambda: _render_text(template, context), value)
        except VariableError:
            raise
        except Exception as exc:
            raise _fail(exc, value) from None
    if isinstance(value, list):
        return [render(v, context, shell=shell, url=url) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, shell=shell, url=url) for k, v in value.items()}
    return value


def _render_text(template: Any, context: dict[str, Any]) -> str:
    """The template's text, stopped as soon as it grows past `MAX_TEXT`."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(**context):
        size += len(chunk)
        if size > MAX_TEXT:
            raise _too_large(f"a text of more than {MAX_TEXT:,} characters")
        parts.append(chunk)
    return "".join(parts)


def contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return has_template(value)
    if isinstance(value, list):
        return any(contains_template(v) for v in value)
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    return False


#: tests and filters that make a missing variable no error: `var.x is defined`, `var.x | default(1)`
_GUARDS = frozenset({"defined", "undefined", "default", "d"})


def variables_used(text: str) -> list[str]:
    """The variables a template reads (`{{ var.x }}`, `{{ var['x'] }}`), each once, in order.

    A read guarded by `is defined` or `| default(...)` is left out: it cannot fail a run. A text
    that does not parse reads none (its syntax error is reported on its own).
    """
    if "var" not in text or not has_template(text):
        return []
    from jinja2 import TemplateSyntaxError

    try:
        tree = environment().parse(text)
    except (TemplateSyntaxError, RecursionError, ValueError):
        return []
    return _var_reads(tree)


def expression_variables(expr: str) -> list[str]:
    """The variables an expression (an `if:`) reads, as `variables_used` finds them in a template."""
    from jinja2 import TemplateSyntaxError
    from jinja2.parser import Parser

    if "var" not in expr:
        return []
    try:
        tree = Parser(environment(), expr, state="variable").parse_expression()
    except (TemplateSyntaxError, RecursionError, ValueError):
        return []
    return _var_reads(tree)


def _var_reads(tree: Any) -> list[str]:
    from jinja2 import nodes

    def name_of(node: Any) -> str | None:
        if not (isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name)):
            return None
        if node.node.name != "var":
            return None
        if isinstance(node, nodes.Getattr):
            return str(node.attr)
        return node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None

    # a name guarded anywhere (`var.x is defined and var.x > 1`) is guarded everywhere; an undefined
    # value is no error to `is none` either; `var.get("x")` is a method, not a variable
    guarded: set[str | None] = set()
    methods: set[int] = set()
    reads: list[Any] = []
    for node in tree.find_all((nodes.Test, nodes.Filter, nodes.Call, nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Test | nodes.Filter):
            if node.name in _GUARDS or node.name == "none":
                guarded.add(name_of(node.node))
        elif isinstance(node, nodes.Call):
            methods.add(id(node.node))
        else:
            reads.append(node)
    found: dict[str, None] = {}
    for node in reads:
        name = name_of(node)
        if name is not None and name not in guarded and id(node) not in methods:
            found[name] = None
    return list(found)
