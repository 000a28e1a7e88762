"""Fuzzing templates: random expressions over random contexts render, or fail with a VariableError.

Expressions are built from a small grammar of what a template may hold — variables and missing
names, literals of every type, operators, filters, method calls, subscripts, conditionals, and
things a sandbox must refuse (dunder attributes, huge repetitions and powers). For each one:
`syntax_error` answers a message or None and never raises; `evaluate` (an `if:`) and `render`
(plain, shell-quoted, URL-encoded) return a value or raise `VariableError` — never another
exception, however the value is built.

Left out: integer literals of more than 4,300 digits written in the template text (the template
parser turns them into numbers before any bound applies: an internal error, being fixed where
templates live). Evaluations that would run into the 5 s watchdog (`lipsum` of a million words,
`range(10**9)|sum` and the like) are left to the unit tests, to keep this campaign fast.

Jinja folds constant parts of an expression when it compiles it, and that folding can raise:
`if: "1 if (3)[0] else 2"` or `if: "{[1]: 2}"` in a workflow make `flowstage validate` fail with an
internal error (an `UndefinedError` or `TypeError` out of `expression_error`), where the message
should be "invalid expression". Until that is fixed where templates live, an exception raised from
inside Jinja's optimizer (`jinja2/optimizer.py`) is counted as that known defect, not as a new one.

Python warns (`SyntaxWarning`, "'int' object is not subscriptable; perhaps you missed a comma?")
when it compiles the code Jinja makes of a constant subscript such as `(5)[2:]`; the warning is
ignored here (the evaluation then fails with a clear VariableError), not made an error.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flowstage.errors import VariableError
from flowstage.model import templates
from tests.fuzz.budget import budget

NAMES = ["var.x", "var.n", "var.items", "var.m", "var.missing", "run.id", "task.name", "task.item", "undefined_name", "var"]
LITERALS = [
    "0", "-1", "3", "10**300", "2**64", "1e308", "1e999", "0.1", "'a'", "'x'*9999", "''", "'%s'", "'{0:>20}'", "'\\n'",
    "none", "true", "false", "[]", "[1, 'a', none]", "{}", "{'k': 1}", "(1, 2)", "range(5)",
    "'\u00e9\U0001f4a5'", "'\\x00'", "\"'\"", "';touch pwned'", "'$(id)'",
]  # fmt: skip
FILTERS = [
    "length", "upper", "lower", "title", "trim", "string", "int", "float", "abs", "round", "list", "sort", "first",
    "last", "sum", "unique", "reverse", "join", "join(',')", "default('d')", "default(none, true)", "tojson", "center(30)",
    "center(10**6)", "indent(4)", "wordwrap(5)", "truncate(3)", "replace('a', 'bb')", "replace('', 'x'*1000)", "format(1)",
    "batch(2)|list", "slice(2)|list", "map('string')|list", "select|list", "dictsort", "items|list", "attr('x')", "e",
    "urlencode", "striptags", "wordcount", "filesizeformat", "pprint", "random", "min", "max", "groupby('x')|list",
]  # fmt: skip
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "and", "or", "in", "not in", "is", "is not"]
TESTS = ["defined", "none", "number", "string", "mapping", "iterable", "odd", "divisibleby(0)", "sameas(1)"]
METHODS = [
    ".upper()", ".split()", ".split(',')", ".ljust(10)", ".rjust(10**7)", ".zfill(50)", ".format(1)", ".format(x=1)",
    ".replace('a', 'b')", ".strip()", ".startswith('a')", ".count('a')", ".encode()", ".keys()", ".items()", ".get('k')",
    ".append(1)", ".pop()", ".__class__", ".__class__.__mro__", ".mro", ".__globals__", ".__init__", "._private",
    ".real", ".bit_length()", ".conjugate()",
]  # fmt: skip

# `nd` keeps generated number literals short: see the module docstring
atoms = st.sampled_from(NAMES + LITERALS) | st.integers(min_value=-(10**40), max_value=10**40).map(str)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]})|{t[1]}"),
        st.tuples(inner, st.sampled_from(TESTS)).map(lambda t: f"({t[0]} is {t[1]})"),
        st.tuples(inner, st.sampled_from(METHODS)).map(lambda t: f"({t[0]}){t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}:]"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(["not ", "-", "+"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(inner, inner).map(lambda t: f"{{{t[0]}: {t[1]}}}"),
    )


expressions = st.recursive(atoms, _extend, max_leaves=6)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**60), max_value=10**60) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    var = draw(st.dictionaries(st.sampled_from(["x", "n", "items", "m", "k"]) | st.text(max_size=5), json_values, max_size=5))
    return {
        "var": var,
        "run": {"id": "20260101000000abcdef", "workflow": "w", "date": "2026-01-01"},
        "task": {"name": "t", "attempt": 1, "instance": 0, "item": draw(json_values)},
    }


def _raised_by_jinja_constant_folding(exc: BaseException) -> bool:
    """Whether `exc` came out of Jinja's optimizer (the known defect of the module docstring)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("jinja2/optimizer.py"):
            return True
        tb = tb.tb_next
    return False


def _must_render_or_fail_clearly(fn: Any) -> Any:
    try:
        return fn()
    except VariableError as exc:
        error: VariableError = exc
        assert str(error).strip()
        return None
    except Exception as exc:
        if not _raised_by_jinja_constant_folding(exc):
            raise
        return None


def _templates_of(expr: str) -> list[str]:
    return [
        "{{ " + expr + " }}",
        "a {{ " + expr + " }} b",
        "{% if " + expr + " %}y{% else %}n{% endif %}",
        "{% for i in [" + expr + "] %}{{ i }}{% endfor %}",
        "{% set v = " + expr + " %}{{ v }}",
    ]


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@budget(200)
@given(expr=expressions, context=contexts())
@example(expr="''.__class__.__mro__[1].__subclasses__()", context={"var": {}})
@example(expr="range(10**9)|list", context={"var": {}})
@example(expr="'x'*10**7", context={"var": {}})
@example(expr="var.x ** var.x", context={"var": {"x": 10**60}})
@example(expr="var.x * var.x", context={"var": {"x": "y" * 5000}})
@example(expr="var.x|int", context={"var": {"x": math.nan}})
@example(expr="var.x|round", context={"var": {"x": math.inf}})
def test_random_expressions_evaluate_render_or_raise_a_variable_error(expr: str, context: dict[str, Any]) -> None:
    message = _must_render_or_fail_clearly(lambda: templates.expression_error(expr))
    assert message is None or isinstance(message, str)
    _must_render_or_fail_clearly(lambda: templates.evaluate(expr, context))
    for text in _templates_of(expr):
        problem = _must_render_or_fail_clearly(lambda t=text: templates.syntax_error(t))
        assert problem is None or isinstance(problem, str)
        for shell, url in ((False, False), (True, False), (False, True)):
            rendered = _must_render_or_fail_clearly(lambda t=text, s=shell, u=url: templates.render(t, context, shell=s, url=u))
            if rendered is not None and (shell or url):
                assert isinstance(rendered, str)


TEMPLATE_BITS = ["{{", "}}", "{%", "%}", "{#", "#}", "|", "(", ")", "[", "]", "'", '"', " ", "var", ".", "x", "if", "endif",
                 "for", "in", "set", "=", "raw", "endraw", "macro", "call", "-", "+", "~", "*", "1", "\n", "\\"]  # fmt: skip


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@budget(400)
@given(text=st.lists(st.sampled_from(TEMPLATE_BITS) | st.text(max_size=3), max_size=30).map("".join), context=contexts())
def test_random_template_text_is_checked_and_renders_or_raises_a_variable_error(text: str, context: dict[str, Any]) -> None:
    problem = templates.syntax_error(text)
    assert problem is None or isinstance(problem, str)
    value = _must_render_or_fail_clearly(lambda: templates.render({"k": [text]}, context))
    if problem is not None:
        assert value is None, (text, problem, value)
    _must_render_or_fail_clearly(lambda: templates.render(text, context, shell=True))
