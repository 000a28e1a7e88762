"""Saving a workflow to its file, keeping what a person wrote there: comments, key order, quoting.

`to_yaml()` writes a workflow afresh, which is right for a new file and wrong for one a person
keeps: their comments and layout would be gone. `save(workflow, path)` edits the existing file in
place instead. It reads the file twice — as the workflow it was (flowstage's own YAML 1.2 reader)
and as a document that keeps its comments (ruamel.yaml's round-trip mode) — and walks the old and
the new workflow side by side, as plain mappings (`Workflow.to_dict()`):

- a key whose value did not change is left alone, however it is spelled (``after: a``,
  ``timeout: 90s``, a flow mapping): its text and its comments stay as they were;
- a changed mapping or list is edited key by key (stages and tasks matched by name), so a task
  whose command changed keeps the comments on its other keys;
- a key no longer set is removed, a new one goes after its neighbour in the workflow's own order,
  and new values are written with the same quoting as `to_yaml()` (YAML 1.2-safe: ``"on"``,
  ``"1e3"``, ``"2026-01-01"``, block text for several lines).

The text so made is read back before it is written: should it not give the workflow saved (a
file spelled in a way this walk does not follow, e.g. with anchors), `to_yaml()` is written instead,
and a warning says the comments could not be kept. So `load(path) == workflow` after every save.
ruamel.yaml is imported here only, when a file is saved.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowstage.errors import DefinitionError

if TYPE_CHECKING:
    from flowstage.model.workflow import Workflow

log = logging.getLogger(__name__)

_MISSING: Any = object()


def save(workflow: Workflow, path: str | Path) -> Path:
    """Write `workflow` to the file at `path`, keeping the file's comments and layout where it exists.

    A new file (or a ``.json`` one) gets the workflow as `to_yaml()` (or JSON) writes it; an
    existing YAML file is edited in place: what did not change keeps its text and its comments.
    The file is replaced whole (written beside it, then renamed), never left half written.

    Args:
        workflow: the workflow to write.
        path: the workflow file, e.g. ``workflows/daily.yaml``.

    Returns:
        The path written.

    Raises:
        DefinitionError: `workflow` is not one `load` would read back (an unknown task in
            `after:`, a cycle ...); the file is left as it was.
    """
    from flowstage.model.loader import check_graph

    problems = check_graph(workflow)
    if problems:
        raise DefinitionError(problems)
    target = Path(path)
    if target.suffix == ".json":
        text = json.dumps(workflow.to_dict(), indent=2, ensure_ascii=False) + "\n"
    elif target.exists():
        from flowstage.files import read_definition

        text = edited(read_definition(target, "workflow file"), workflow, str(target))
    else:
        text = workflow.to_yaml()
    _write(target, text)
    return target


def edited(text: str, workflow: Workflow, file: str = "<input>") -> str:
    """The workflow file `text` changed to say `workflow`, its comments and layout kept where they can be."""
    from flowstage.model.loader import load_text

    try:
        before = load_text(text, file).to_dict()
    except DefinitionError:
        before = None  # not a valid workflow: nothing of it is known to carry over
    after = workflow.to_dict()
    if before is not None and _same(before, after):
        return text
    if before is not None:
        try:
            out = _edit(text, before, after)
        except Exception as exc:  # ruamel.yaml refuses what flowstage's reader takes (e.g. a duplicate merge)
            log.debug("%s: not edited in place: %s", file, exc)
        else:
            try:
                if load_text(out, file) == workflow:
                    return out
            except DefinitionError:
                pass
    log.warning("%s: written anew: its comments and layout could not be kept", file)
    return workflow.to_yaml()


def _write(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the document walk


def _yaml(text: str) -> Any:
    """ruamel.yaml's round-trip reader and writer, set to the indentation `text` uses."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line that was one line
    mapping, sequence, offset = _indents(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    # null as written by flowstage (and by most people), not ruamel's empty value
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    from ruamel.yaml.scalarfloat import ScalarFloat

    for kind in (float, ScalarFloat):  # ruamel's own float text can lose the last digit of a large number
        yaml.representer.add_representer(kind, _float)
    return yaml


def _float(representer: Any, value: float) -> Any:
    """A float as `to_yaml()` writes it: the shortest text that reads back to the same number."""
    if math.isnan(value):
        text = ".nan"
    elif math.isinf(value):
        text = ".inf" if value > 0 else "-.inf"
    else:
        text = repr(float(value)).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


_KEY_LINE = re.compile(r"^( *)[^\s#-][^#]*:\s*(?:#.*)?$")
_ITEM_LINE = re.compile(r"^( *)- +\S")


def _indents(text: str) -> tuple[int, int, int]:
    """How `text` indents: a nested mapping, a sequence's items, and the dash within them.

    ``tasks:`` then ``  - name: a`` is (2, 4, 2); ``tasks:`` then ``- name: a`` is (2, 2, 0).
    """
    mapping = sequence = offset = None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for above, below in itertools.pairwise(lines):
        key = _KEY_LINE.match(above)
        if key is None:
            continue
        depth = len(key.group(1))
        item = _ITEM_LINE.match(below)
        if item is not None and offset is None:
            offset = len(item.group(1)) - depth
            dash = below.lstrip()
            sequence = offset + 1 + (len(dash) - len(dash[1:].lstrip()) - 1)
        elif item is None and mapping is None and len(below) - len(below.lstrip()) > depth:
            mapping = len(below) - len(below.lstrip()) - depth
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    if offset is None or offset < 0:
        offset = 0
    if sequence is None or sequence < offset + 2:
        sequence = offset + 2
    return mapping, sequence, offset


def _edit(text: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    yaml = _yaml(text)
    doc = yaml.load(text)
    doc = _merge(doc, before, after)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _fresh(value: Any) -> Any:
    """`value` as document nodes, quoted as `to_yaml()` quotes it (YAML 1.2-safe)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    from ruamel.yaml import YAML

    from flowstage.model.yamlsource import dump

    reader = YAML(typ="rt")
    reader.preserve_quotes = True
    return reader.load(dump({"v": value}))["v"]


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1 == True == 1.0`` in Python, not in a file)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _merge(node: Any, before: Any, after: Any) -> Any:
    """The node that says `after` where `node` said `before`: `node` itself (edited) where it can be."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if before is not _MISSING and _same(before, after):
        return node
    if isinstance(after, dict) and isinstance(before, dict) and isinstance(node, CommentedMap):
        _merge_map(node, before, after)
        return node
    if isinstance(after, list) and isinstance(before, list) and isinstance(node, CommentedSeq) and len(node) == len(before):
        _merge_seq(node, before, after)
        return node
    return _fresh(after)


def _merge_map(node: Any, before: dict[str, Any], after: dict[str, Any]) -> None:
    kept: Any = None
    for key in list(node):
        if key not in after and key in before:
            _drop(node, key, kept)  # set before, now unset (its default)
        else:  # a key in neither was written at its default value, and still is: it stays as written
            kept = key
    previous: str | None = None
    for key, value in after.items():
        if key in node:
            merged = _merge(node[key], before.get(key, _MISSING), value)
            if merged is not node[key]:
                node[key] = merged  # same place, same comments
        else:
            at = list(node).index(previous) + 1 if previous in node else 0
            node.insert(at, key, _fresh(value))
            if previous in node:
                _hand_on_lines(node, previous, node, key)
        previous = key


def _names(items: list[Any]) -> list[str] | None:
    """The names of a list of named mappings (stages, tasks), or None when it is not one."""
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return names  # type: ignore[return-value]


def _merge_seq(node: Any, before: list[Any], after: list[Any]) -> None:
    old, new = _names(before), _names(after)
    if old is None or new is None:
        for i, value in enumerate(after[: len(before)]):
            merged = _merge(node[i], before[i], value)
            if merged is not node[i]:
                node[i] = merged
        del node[len(after) :]
        node.extend(_fresh(value) for value in after[len(before) :])
        return
    kept = [name for name in old if name in new]
    if kept != [name for name in new if name in old]:  # reordered: rebuilt, each item keeps its own comments
        items = {name: node[i] for i, name in enumerate(old)}
        rebuilt = [
            _merge(items[name], before[old.index(name)], value) if name in items else _fresh(value)
            for name, value in zip(new, after, strict=True)
        ]
        del node[:]
        node.extend(rebuilt)
        return
    for i in reversed(range(len(old))):
        if old[i] not in new:
            _drop(node, i, i - 1 if i > 0 else None)
    for i, (name, value) in enumerate(zip(new, after, strict=True)):
        if name in old:
            merged = _merge(node[i], before[old.index(name)], value)
            if merged is not node[i]:
                node[i] = merged
        else:
            node.insert(i, _fresh(value))
            if i > 0:
                _hand_on_lines(node, i - 1, node, i)


def _slot(container: Any, key: Any) -> tuple[Any, Any]:
    """Where the comment after the value at `key` is kept: the last scalar's place within it."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    value = container[key]
    while isinstance(value, CommentedMap | CommentedSeq) and len(value) and not value.fa.flow_style():
        container, key = value, (next(reversed(value)) if isinstance(value, CommentedMap) else len(value) - 1)
        value = container[key]
    return container, key


def _take_lines(container: Any, key: Any) -> str:
    """The whole-line comments after `key`'s value, taken away (its end-of-line comment stays)."""
    from ruamel.yaml.comments import CommentedMap

    holder, at = _slot(container, key)
    index = 2 if isinstance(holder, CommentedMap) else 0
    entry = holder.ca.items.get(at)
    token = entry[index] if entry is not None else None
    if token is None:
        return ""
    own, newline, lines = token.value.partition("\n")
    if lines:
        if own.strip():
            token.value = own + newline
        else:
            entry[index] = None
    return str(lines)


def _put_lines(container: Any, key: Any, lines: str) -> None:
    """`lines` (whole-line comments) after `key`'s value, in place of those it had."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    _take_lines(container, key)
    if not lines:
        return
    holder, at = _slot(container, key)
    index = 2 if isinstance(holder, CommentedMap) else 0
    slots = holder.ca.items.setdefault(at, [None, None, None, None])
    token = slots[index]
    if token is not None and token.value.strip():  # an end-of-line comment: the lines follow it
        token.value = token.value.rstrip("\n") + "\n" + lines
    else:
        slots[index] = CommentToken("\n" + lines, CommentMark(0))


def _hand_on_lines(container: Any, key: Any, new_container: Any, new_key: Any) -> None:
    """The whole-line comments after `key`'s value go after the value inserted behind it (`new_key`).

    They introduce what came next (or close the file), which now comes after the new value.
    """
    _put_lines(new_container, new_key, _take_lines(container, key))


def _drop(container: Any, key: Any, previous: Any) -> None:
    """Remove `key`; the comments after it (about what follows) go after `previous` instead of
    those that were about `key`."""
    if previous is not None:
        _put_lines(container, previous, _take_lines(container, key))
    del container[key]


__all__ = ["edited", "save"]
