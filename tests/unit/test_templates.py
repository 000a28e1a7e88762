"""Templates: sandboxed Jinja, undefined names as errors, native values, shell quoting (SPEC §2.3, §2.4)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstage.errors import DefinitionError, VariableError
from flowstage.model import templates

CONTEXT: dict[str, Any] = {
    "var": {"x": 1, "regions": ["EU", "US"], "text": "a b", "none": None, "map": {"k": 2}, "flag": False},
    "run": {"id": "r1", "date": "2026-03-01"},
    "task": {"name": "t", "attempt": 1},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ var.regions }}", ["EU", "US"]),
        ("  {{ var.regions }}\n", ["EU", "US"]),
        ("{{ var.x }}", 1),
        ("{{ var.x + 1 }}", 2),
        ("{{ var.map }}", {"k": 2}),
        ("{{ var.map.k }}", 2),
        ("{{ var.none }}", None),
        ("{{ var.flag }}", False),
        ("{{ var.regions | length }}", 2),
        ("n={{ var.x }}", "n=1"),
        ("{{ var.x }}{{ var.x }}", "11"),
        ("{{ run.id }}-{{ task.name }}", "r1-t"),
        ("{% for r in var.regions %}{{ r }},{% endfor %}", "EU,US,"),
        ("no template", "no template"),
        ("{# a comment #}", ""),
    ],
)
def test_single_expression_renders_to_its_native_value_and_text_to_text(template: str, expected: Any) -> None:
    result = templates.render(template, CONTEXT)
    assert result == expected
    assert type(result) is type(expected)


def test_render_walks_lists_and_mappings_and_leaves_other_values_alone() -> None:
    value = {"a": ["{{ var.x }}", 2, None], "b": {"c": "{{ var.text }}"}, "d": 3.5}
    assert templates.render(value, CONTEXT) == {"a": [1, 2, None], "b": {"c": "a b"}, "d": 3.5}


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("{{ var.missing }}", "missing"),
        ("hello {{ var.missing }}", "missing"),
        ("{{ var['missing'] }}", "missing"),
        ("{{ var.map.nope }}", "nope"),
        ("{{ nope }}", "nope"),
        ("{{ nope.x }}", "nope"),
        ("{{ [var.missing] }}", "missing"),
        ('{{ {"k": var.missing} }}', "missing"),
        ("{% if var.missing %}x{% endif %}", "missing"),
    ],
)
def test_undefined_variable_is_an_error_naming_it(template: str, name: str) -> None:
    with pytest.raises(VariableError, match=f"'{name}'") as info:
        templates.render(template, CONTEXT)
    assert template in str(info.value)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, DefinitionError)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ var.__class__ }}",
        "{{ var.x | attr('__class__') }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ var.regions.append('x') }}",
        "{{ var.map.update({'k': 3}) }}",
        "{{ range(10 ** 9) | list }}",
        "x {{ ''.__class__ }}",
    ],
)
def test_sandbox_blocks_attribute_escapes_and_mutation(template: str) -> None:
    with pytest.raises(VariableError):
        templates.render(template, CONTEXT)
    assert CONTEXT["var"]["regions"] == ["EU", "US"]
    assert CONTEXT["var"]["map"] == {"k": 2}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {{ var.text }}", "echo 'a b'"),
        ("echo {{ var.x }}", "echo 1"),
        ("echo {{ var.none }}", "echo ''"),
        ("echo {{ var.flag }}", "echo false"),
        ("{{ var.text }}", "'a b'"),  # a single expression is still text in a shell command
        ("echo {% for r in var.regions %}{{ r }} {% endfor %}", "echo EU US "),
    ],
)
def test_shell_rendering_quotes_every_value(template: str, expected: str) -> None:
    assert templates.render(template, CONTEXT, shell=True) == expected


@pytest.mark.parametrize(
    "hostile",
    ["; rm -rf /", "$(rm -rf /)", "`id`", "a && b", "x' ; echo 'y", '"; echo "', "a\nb", "$HOME", "*", "-rf", "", " "],
)
def test_shell_value_stays_one_word(hostile: str) -> None:
    command = templates.render("rm {{ var.v }}", {"var": {"v": hostile}}, shell=True)
    assert shlex.split(command) == ["rm", hostile]


@settings(max_examples=200, deadline=None, database=None)
@given(value=st.one_of(st.text(), st.integers(), st.floats(allow_nan=False)))
def test_any_shell_value_splits_back_to_exactly_itself(value: Any) -> None:
    command = templates.render("cmd {{ var.v }} end", {"var": {"v": value}}, shell=True)
    assert shlex.split(command) == ["cmd", str(value), "end"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("var.x > 0", True),
        ("var.x > 1", False),
        ("var.none is none", True),
        ("var.regions | length == 2", True),
        ("'EU' in var.regions", True),
        ("var.flag", False),
        ("not var.flag and var.x == 1", True),
    ],
)
def test_evaluate_returns_the_expression_value(expression: str, expected: Any) -> None:
    assert templates.evaluate(expression, CONTEXT) == expected


@pytest.mark.parametrize(
    "expression",
    ["var.missing", "var.missing > 0", "nope", "var.map.nope", "[var.missing]", "''.__class__", "1 / 0", "var.x >"],
)
def test_evaluate_fails_with_a_variable_error_never_a_falsy_value(expression: str) -> None:
    with pytest.raises(VariableError):
        templates.evaluate(expression, CONTEXT)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("plain text", None),
        ("{{ var.x }}", None),
        ("{% for x in y %}{{ x }}{% endfor %}", None),
        ("{{ var.x", "template syntax error"),
        ("{{ var.x }", "template syntax error"),
        ("{% if %}", "template syntax error"),
        ("{% for x in y %}", "template syntax error: {% for %} is never closed: add {% endfor %}"),
        ("{{ var.x | upper | default('') }}", None),
        ("{{ var.x | uper }}", "template syntax error: unknown filter 'uper' (did you mean 'upper'?)"),
        ("{% if var.x is nonee %}{% endif %}", "template syntax error: unknown test 'nonee' (did you mean 'none'?)"),
    ],
)
def test_syntax_error_reports_only_broken_templates(text: str, error: str | None) -> None:
    found = templates.syntax_error(text)
    if error is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(error)


@pytest.mark.parametrize(
    ("expression", "ok"),
    [("var.x > 0", True), ("var.a is not none and var.b", True), ("var.x >", False), ("{{ var.x }}", False), ("a b", False)],
)
def test_expression_error_names_the_bad_expression(expression: str, ok: bool) -> None:
    found = templates.expression_error(expression)
    if ok:
        assert found is None
    else:
        assert found is not None
        assert repr(expression) in found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ x }}", True),
        ("{% if x %}{% endif %}", True),
        ("{# c #}", True),
        ("plain", False),
        (["a", {"b": "{{ x }}"}], True),
        ({"a": [1, 2, "c"]}, False),
        (3, False),
        (None, False),
    ],
)
def test_contains_template_looks_inside_lists_and_mappings(value: Any, expected: bool) -> None:
    assert templates.contains_template(value) is expected


# ----------------------------------------------------------------------------------------- bounds
@pytest.mark.parametrize(
    "template",
    [
        "{{ 9999999 ** 9999999 }}",
        "n={{ 10 ** 5000 }}",
        "{{ (10 ** 3000) * (10 ** 3000) }}",
        "{{ 'x' * 10 ** 9 }}",
        "{{ [1] * 10 ** 9 }}",
        "{{ 'x' | center(10 ** 9) }}",
        "{{ 'x'.center(10 ** 9) }}",
        "{{ 'x'.ljust(10 ** 9) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%1000000000d' | format(1) }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ 'x' | indent(10 ** 9) }}",
        "{{ ('x' * 2000) | replace('', 'y' * 1000) }}",
        "{{ ('x' * 2000).replace('', 'y' * 1000) }}",
        "{% for i in range(100000) %}{{ 'abcdefghijk' }}{% endfor %}",
    ],
)
def test_a_template_that_would_build_a_huge_value_fails_at_once_with_a_clear_error(template: str) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(VariableError, match=r"large|digits"):
        templates.render(template, CONTEXT)
    assert time.monotonic() - started < templates.MAX_SECONDS, "refused before it was built, not after"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 2 ** 64 }}", 2**64),
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ 'x' | center(5) }}", "  x  "),
        ("{{ '%5d' % 42 }}", "   42"),
        ("{{ '{:>4}'.format(7) }}", "   7"),
        ("{{ 'a-b' | replace('-', '+') }}", "a+b"),
        ("{{ var.text * 2 }}", "a ba b"),
    ],
)
def test_ordinary_uses_of_the_bounded_operations_are_unchanged(template: str, expected: Any) -> None:
    assert templates.render(template, CONTEXT) == expected


def test_a_template_that_runs_past_the_time_bound_is_stopped_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(templates, "MAX_SECONDS", 0.3)
    spin = "x{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(VariableError, match=r"took longer than 0\.3s"):
        templates.render(spin, CONTEXT)
    assert time.monotonic() - started < 5
    monkeypatch.setattr(templates, "MAX_SECONDS", 0.01)
    slow = " and ".join(["(range(100000) | map('string') | join | length) > 0"] * 40)  # far longer than 10 ms
    with pytest.raises(VariableError, match="took longer"):
        templates.evaluate(slow, CONTEXT)
    # the thread is not left with a pending stop: it goes on rendering
    assert templates.render("{{ var.x }}", CONTEXT) == 1
    time.sleep(0.5)
    assert templates.render("n={{ var.x }}", CONTEXT) == "n=1"


@pytest.mark.parametrize(
    "template",
    ["{{ " + "(" * 400 + "1" + ")" * 400 + " }}", "{% if true %}" * 400 + "x" + "{% endif %}" * 400],
)
def test_a_template_nested_too_deeply_is_a_clear_error_when_checked_and_when_rendered(template: str) -> None:
    assert templates.syntax_error(template) == templates._TOO_DEEP
    with pytest.raises(VariableError, match="nested too deeply"):
        templates.render(template, CONTEXT)


def test_an_expression_nested_too_deeply_is_a_clear_error() -> None:
    assert templates.expression_error("(" * 400 + "1" + ")" * 400) == templates._TOO_DEEP


# ------------------------------------------------------------------------------------ URL templates

URL_CONTEXT: dict[str, Any] = {
    "var": {"evil": "../../admin?role=admin&x=", "q": "a&b=c#d", "sp": "a b+c", "n": 7, "none": None, "yes": True},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("http://h/items/{{ var.evil }}", "http://h/items/..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D"),
        ("http://h/s?q={{ var.q }}&page=1", "http://h/s?q=a%26b%3Dc%23d&page=1"),
        ("http://h/s?{{ var.q }}=1", "http://h/s?a%26b%3Dc%23d=1"),
        ("http://h/a#{{ var.q }}", "http://h/a#a%26b%3Dc%23d"),
        ("http://h/{{ var.sp }}?v={{ var.sp }}", "http://h/a%20b%2Bc?v=a%20b%2Bc"),
        ("http://h/n/{{ var.n }}/{{ var.none }}/{{ var.yes }}", "http://h/n/7//true"),
        ("http://{{ var.evil }}/x", "http://..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D/x"),
        ("/items/{{ var.evil }}", "/items/..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D"),
        ("{{ var.evil }}", "..%2F..%2Fadmin%3Frole%3Dadmin%26x%3D"),
        ("http://h/../a?x=1&y", "http://h/../a?x=1&y"),  # no template: as written
        ("http://h/{% if var.yes %}on{% endif %}/x", "http://h/on/x"),
    ],
)
def test_url_values_are_encoded_for_the_part_they_land_in(template: str, expected: str) -> None:
    assert templates.render_url(template, URL_CONTEXT) == expected


@pytest.mark.parametrize("template", ["http://h/a/{{ var.v }}/b", "/a/{{ var.v }}{{ var.v }}", "http://h/{{ var.v }}"])
def test_a_url_value_that_makes_a_dot_segment_is_refused(template: str) -> None:
    with pytest.raises(VariableError, match="path segment"):
        templates.render_url(template, {"var": {"v": "."}})


def test_an_undefined_name_in_a_url_is_a_variable_error() -> None:
    with pytest.raises(VariableError, match="undefined variable 'missing'"):
        templates.render_url("http://h/{{ var.missing }}", {"var": {}})


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_any_path_value_arrives_whole_as_one_segment(value: str) -> None:
    from urllib.parse import unquote, urlsplit

    if value in (".", ".."):
        return
    url = templates.render_url("http://h/items/{{ var.v }}/end?k={{ var.v }}", {"var": {"v": value}})
    parts = urlsplit(url)
    segments = parts.path.split("/")
    assert len(segments) == 4
    assert segments[3] == "end"
    assert unquote(segments[2], errors="surrogatepass") == value
    assert parts.fragment == ""
    assert [p.split("=", 1)[0] for p in parts.query.split("&")] == ["k"]


@pytest.mark.parametrize("expr", ["1 if (3)[0] else 2", "{[1]: 2}", "9" * 5000, "x == " + "9" * 5000])
def test_an_expression_jinja_cannot_fold_or_read_is_a_message_never_an_exception(expr: str) -> None:
    message = templates.expression_error(expr)
    assert message is None or message.startswith("invalid expression")


def test_a_template_with_a_number_past_4300_digits_is_a_syntax_error() -> None:
    assert templates.syntax_error("{{ " + "9" * 5000 + " }}") == "template syntax error: a number of more than 4,300 digits"


def test_code_jinja_generates_never_warns_on_stderr(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = "from flowstage.model import templates as t\ntry:\n    t.render('{{ {1: {(5)[2:]: 1}} }}', {})\nexcept Exception as e:\n    print(type(e).__name__)\n"
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, check=False, timeout=60)
    assert done.stdout.strip() == "VariableError", done
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("no template", []),
        ("{{ var.a }}", ["a"]),
        ("{{ var['b'] }} and {{ var.a }} and {{ var.a }}", ["b", "a"]),
        ("{{ var.a | default('x') }}", []),
        ("{% if var.a is defined %}{{ var.a }}{% endif %}", []),
        ("{{ var.get('c') }}", []),
        ("{{ run.id }} {{ task.name }} {{ var }}", []),
        ("{% for r in var.regions %}{{ r }}{% endfor %}", ["regions"]),
        ("{{ var.a ", []),  # a syntax error is reported on its own
    ],
)
def test_variables_used_reads_var_names_from_the_syntax_tree(text: str, names: list[str]) -> None:
    assert templates.variables_used(text) == names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("var.rows > 0", ["rows"]),
        ("var.a is not none", []),
        ("var.a is defined and var.a > 1", []),
        ("var.a > 0 and var['b'] == 'x'", ["a", "b"]),
        ("run.date == '2026-01-01'", []),
        ("var.a >", []),
    ],
)
def test_expression_variables_reads_var_names_of_an_if(expr: str, names: list[str]) -> None:
    assert templates.expression_variables(expr) == names
