"""Read YAML 1.2 (and JSON) while keeping the line and column of every node.

PyYAML resolves plain scalars by YAML 1.1 rules (`on`, `yes`, `off` become booleans). We compose
the node tree with libyaml and construct the values ourselves with the YAML 1.2 core schema, so
`on: failed` keeps its key. Every mapping key and sequence item has a position, keyed by its
path (a tuple of keys and indexes), so validation errors can point at ``file:line:col``.

Positions are worked out when first asked for (an error to report), by composing the text again:
a file that validates never pays for them, and a 100,000-task file would otherwise hold a million
of them. A document that is JSON (it starts with ``{`` or ``[``) is read by `json`, many times
faster than libyaml reads flow style; JSON is YAML 1.2, so the values are the same, and whatever
`json` refuses or reads differently (a duplicate key, ``NaN``) goes the YAML way, which reports it.
Both ways run with the garbage collector paused: every object they make lives on as the document,
and a collection pass over a growing tree of a million nodes, again and again, costs more than
the parse itself.
"""

from __future__ import annotations

import gc
import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from flowstage.errors import DefinitionError, Problem

Path = tuple[str | int, ...]

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")

_STR_TAG = "tag:yaml.org,2002:str"
_MAX_NODES = 2_000_000  # an alias bomb must not exhaust memory (100,000 tasks need ~1,000,000)
#: nesting past this is refused while reading: every later walk (validation, templates, the store's
#: JSON) recurses, and Python's stack ends near 1,000 levels. A real workflow nests under 20.
MAX_DEPTH = 200


class _NumberTooLong(ValueError):
    """An integer past Python's digit limit (`sys.get_int_max_str_digits`): it could never be written out.

    Raised where the number is read; `_build` turns it into a problem naming the key (`path`), which
    only a builder keeping paths knows (`node` is where the number is)."""

    def __init__(self, node: yaml.Node | None = None, path: Path = ()) -> None:
        super().__init__(f"number too long (over {_max_digits()} digits)")
        self.node = node
        self.path = path


def _max_digits() -> int:
    return sys.get_int_max_str_digits()


def _checked_int(text: str, base: int) -> int:
    """`int(text, base)`, refusing a number longer than a decimal one Python may convert (whatever its base)."""
    limit = _max_digits()
    try:
        value = int(text, base)
    except ValueError as exc:
        if "digits" in str(exc):  # Python's own limit, not a malformed number
            raise _NumberTooLong from None
        raise
    # a hexadecimal or octal number is read whatever its length, but could not be written in decimal
    if limit and value.bit_length() > limit * 3.3219:
        raise _NumberTooLong
    return value


def resolve_scalar(text: str) -> Any:
    """The value of a plain (unquoted) scalar under the YAML 1.2 core schema."""
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT10.match(text):
        return _checked_int(text, 10)
    if _INT8.match(text):
        return _checked_int(text[2:], 8)
    if _INT16.match(text):
        return _checked_int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


class _Composer(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """libyaml's composer with no implicit resolvers: we resolve plain scalars ourselves."""


_Composer.yaml_implicit_resolvers = {}


class Source:
    """A parsed document: its data and where each path sits in the file (`positions`, worked out on first use)."""

    __slots__ = ("_positions", "_text", "data", "file")

    def __init__(
        self, data: Any, file: str, positions: dict[Path, tuple[int, int]] | None = None, *, text: str | None = None
    ) -> None:
        self.data = data
        self.file = file
        self._positions = positions
        self._text = text

    @property
    def positions(self) -> dict[Path, tuple[int, int]]:
        """(line, column) of every key and item, by path."""
        if self._positions is None:
            self._positions = _positions_of(self._text) if self._text is not None else {}
            self._text = None
        return self._positions

    def __repr__(self) -> str:
        return f"Source({self.file!r})"

    def position(self, path: Path) -> tuple[int | None, int | None]:
        """The (line, column) of `path`, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.positions:
                return self.positions[p]
            if not p:
                return (None, None)
            p = p[:-1]

    def problem(self, path: Path, message: str) -> Problem:
        line, col = self.position(path)
        return Problem(message, self.file, line, col)


class _Builder:
    """Values from composed nodes; with `positions`, the position of every path too."""

    def __init__(self, file: str, *, positions: bool = False) -> None:
        self.file = file
        self.positions: dict[Path, tuple[int, int]] = {}
        self.keep = positions
        self.count = 0

    def fail(self, node: yaml.Node, message: str) -> DefinitionError:
        m = node.start_mark
        return DefinitionError([Problem(message, self.file, m.line + 1, m.column + 1)])

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise self.fail(node, f"document too large (more than {_MAX_NODES} nodes)")
        if self.keep and path not in self.positions:
            self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            if not node.style and node.tag == _STR_TAG:
                try:
                    return resolve_scalar(node.value)
                except _NumberTooLong:
                    raise _NumberTooLong(node, path) from None
            if node.tag in (_STR_TAG, "tag:yaml.org,2002:binary"):
                return node.value
            if node.tag == "tag:yaml.org,2002:int":
                try:
                    return _checked_int(node.value, 0)
                except _NumberTooLong:
                    raise _NumberTooLong(node, path) from None
                except ValueError:
                    raise self.fail(node, f"not an integer: {node.value!r}") from None
            if node.tag == "tag:yaml.org,2002:float":
                try:
                    return float(node.value)
                except ValueError:
                    raise self.fail(node, f"not a number: {node.value!r}") from None
            if node.tag == "tag:yaml.org,2002:bool":
                return node.value.lower() == "true"
            if node.tag == "tag:yaml.org,2002:null":
                return None
            raise self.fail(node, f"unsupported tag {node.tag}")
        if depth >= MAX_DEPTH and isinstance(node, yaml.CollectionNode):
            raise self.fail(node, f"nested too deeply (over {MAX_DEPTH} levels)")
        depth += 1
        if isinstance(node, yaml.SequenceNode):
            if node.tag not in ("tag:yaml.org,2002:seq",):
                raise self.fail(node, f"unsupported tag {node.tag}")
            if not self.keep:
                return [self.build(item, path, depth) for item in node.value]
            return [self.build(item, (*path, i), depth) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag not in ("tag:yaml.org,2002:map",):
                raise self.fail(node, f"unsupported tag {node.tag}")
            out: dict[str, Any] = {}
            merged_keys: set[Any] = set()  # keys that came from a merge (<<): an explicit key overrides them
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or (
                    isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and not key_node.style
                ):
                    merged = self.build(value_node, path, depth)
                    for part in merged if isinstance(merged, list) else [merged]:
                        if not isinstance(part, dict):
                            raise self.fail(value_node, "a merge key (<<) needs a mapping")
                        for k, v in part.items():
                            if k not in out:
                                out[k] = v
                                merged_keys.add(k)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "a mapping key must be a plain value")
                try:
                    key = self.build(key_node, (*path, "\0key") if self.keep else path)
                except _NumberTooLong:
                    key = key_node.value  # a number too long for a value is still a name
                if isinstance(key, bool | int | float) or key is None:
                    key = key_node.value  # keys are names: `on:` and `1:` stay strings
                if key in out and key not in merged_keys:
                    raise self.fail(key_node, f"duplicate key {key!r}")
                merged_keys.discard(key)
                if self.keep:
                    self.positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    out[key] = self.build(value_node, (*path, key), depth)
                else:
                    out[key] = self.build(value_node, path, depth)
            return out
        raise self.fail(node, "unsupported YAML node")


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while a document, or what is built of it, is made (see the module docstring)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _NotPlainJson(Exception):
    """`json` read something YAML reads otherwise, or must refuse with a position: read it as YAML."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _NotPlainJson  # a duplicate key: refused, at its line, by the YAML reader
    return out


def _no_constant(name: str) -> Any:
    raise _NotPlainJson  # NaN, Infinity: JSON extensions; in YAML they are strings


_JSON_DECODE = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant).decode


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` lists and mappings: level by level, never recursing."""
    level = [value]
    for _ in range(limit):
        inner: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            inner.extend([item for item in items if type(item) is dict or type(item) is list])
        if not inner:
            return False
        level = inner
    return True


_JSON_START = re.compile(r"\s*[{\[]")


def _json(text: str) -> Any:
    """The value of a JSON document, or `_NotPlainJson` when the YAML reader must read it."""
    try:
        value = _JSON_DECODE(text)
    except (ValueError, RecursionError):
        raise _NotPlainJson from None
    if (text.count("[") + text.count("{") > MAX_DEPTH) and _deeper_than(value, MAX_DEPTH):
        raise _NotPlainJson  # refused by the YAML reader, at the line and column where it goes too deep
    if _SURROGATE_ESCAPE.search(text):
        try:  # `json` lets a lone surrogate through (a pair it joins): no text may carry one
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _NotPlainJson from None
    return value


#: libyaml's problems (as it says them) in a workflow author's words; the first that matches is said
_YAML_WORDS: tuple[tuple[str, str], ...] = (
    ("tab character", "tab character used for indentation: YAML indents with spaces"),
    ("quoted scalar", "a quoted value is never closed: its closing quote is missing"),
    ("expected '-' indicator", "this line is not indented like the list items above it"),
    (
        "did not find expected key",
        "this line is not indented like the keys above it (or a quoted value goes on after its closing quote)",
    ),
    (
        "mapping values are not allowed",
        "a ':' where no key can start: indent the line like its neighbours, or quote a value holding ': '",
    ),
    ("expected ',' or '}'", "a {...} mapping is not closed: a ',' or '}' is missing"),
    ("expected ',' or ']'", "a [...] list is not closed: a ',' or ']' is missing"),
    ("could not find expected ':'", "a key without ':' (write key: value)"),
    ("undefined alias", "an alias (*name) with no anchor (&name) before it"),
    ("single document", "a second document (---): a file holds one document"),
)


def _yaml_words(exc: yaml.MarkedYAMLError, text: str, mark: Any) -> str:
    """What is wrong at `mark`, said in a workflow author's words when libyaml's are only its own."""
    said = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
    index = getattr(mark, "index", -1) if mark is not None else -1
    found = text[index] if 0 <= index < len(text) else ""
    if found == "\t":
        return _YAML_WORDS[0][1]
    if "cannot start any token" in said and found:
        return f"{found!r} cannot start a value: put the value in quotes"
    return next((words for problem, words in _YAML_WORDS if problem in said), said)


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Composer)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at_end = mark is not None and getattr(mark, "index", -1) >= len(text.rstrip())
        if exc.context_mark is not None and at_end:
            mark = exc.context_mark  # something left open: point where it opened, not at the end of the file
        message = _yaml_words(exc, text, mark)
        if mark is None:
            raise DefinitionError([Problem(f"invalid YAML: {message}", file)]) from None
        raise DefinitionError([Problem(f"invalid YAML: {message}", file, mark.line + 1, mark.column + 1)]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem(f"invalid YAML: {exc}", file)]) from None
    except (ValueError, UnicodeError) as exc:
        raise DefinitionError([Problem(f"invalid YAML: {exc}", file)]) from None


def _key_text(path: Path) -> str:
    """``tasks[0].retries`` for a path, as problems name keys."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _build(node: yaml.Node, builder: _Builder) -> Any:
    try:
        return builder.build(node, ())
    except _NumberTooLong as exc:
        if not builder.keep:  # located and named by a second reading that keeps every path
            return _build(node, _Builder(builder.file, positions=True))
        if exc.node is None:  # raised where no node is known: read again without naming it
            raise DefinitionError([Problem(str(exc), builder.file)]) from None
        raise builder.fail(exc.node, f"{_key_text(exc.path)}: {exc}") from None
    except RecursionError:
        raise DefinitionError([Problem("document nested too deeply", builder.file)]) from None


def _positions_of(text: str) -> dict[Path, tuple[int, int]]:
    """The position of every path of a document `parse` read (composed again: only errors ask)."""
    try:
        with collector_paused():
            node = _compose(text, "<positions>")
            if node is None:
                return {(): (1, 1)}
            builder = _Builder("<positions>", positions=True)
            _build(node, builder)
    except DefinitionError:
        return {}  # the value came through `json` and YAML cannot read it: no positions to give
    return builder.positions


def parse(text: str, file: str = "<input>") -> Source:
    """Parse one YAML 1.2 (or JSON) document; raises DefinitionError with a position."""
    with collector_paused():
        if _JSON_START.match(text):
            try:
                return Source(_json(text), file, text=text)
            except _NotPlainJson:
                pass
        node = _compose(text, file)
        if node is None:
            return Source(None, file, {(): (1, 1)})
        return Source(_build(node, _Builder(file)), file, text=text)


def dump(data: Any) -> str:
    """Write `data` as block-style YAML that `parse` reads back to equal values."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Quote anything the 1.2 or 1.1 resolvers would read as non-string.
        style = None
        if "\x85" in value:  # NEL: folded to a space when read back, unless escaped
            style = '"'
        elif resolve_scalar(value) != value or value.lower() in {"on", "off", "yes", "no", "y", "n"} or "\n" in value:
            style = "|" if "\n" in value and not value.endswith(" ") else '"'
        return dumper.represent_scalar(_STR_TAG, value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
