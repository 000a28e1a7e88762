"""`flowstage schema` describes the files flowstage accepts: every example validates against it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from flowstage.model.loader import load, load_text
from flowstage.model.schema import workflow_schema
from flowstage.model.yamlsource import dump, parse

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "demo" / "workflows").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict:
    return workflow_schema()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_workflow_validates_against_the_schema(path: Path, schema: dict) -> None:
    load(path)  # and flowstage itself accepts it
    jsonschema.validate(parse(path.read_text()).data, schema)


@pytest.mark.parametrize(
    "document",
    [
        {"name": "x", "tasks": [{"name": "a", "shell": "true", "bogus": 1}]},
        {"name": "x", "tasks": [{"name": "a"}]},
        {"name": "x", "tasks": [{"name": "a", "shell": "true", "after": {"b": "sometimes"}}]},
        {"name": "x", "tasks": [{"name": "a", "shell": "true", "timeout": "soon"}]},
        {"name": "x", "tasks": [{"name": "a", "shell": "true"}], "color": "red"},
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(document: dict, schema: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_the_schema_accepts_every_form_of_after_and_durations(schema: dict) -> None:
    for after in ("a", ["a"], {"a": "failure"}):
        doc = {
            "name": "x",
            "tasks": [{"name": "a", "shell": "true"}, {"name": "b", "shell": "true", "after": after, "timeout": 30}],
        }
        jsonschema.validate(doc, schema)


@pytest.mark.parametrize("poke", ["10s", "1m30s", 5, 0.5])
def test_a_sensor_poke_is_a_duration_in_the_schema_as_in_the_loader(poke: object, schema: dict) -> None:
    document = {"name": "x", "tasks": [{"name": "w", "wait_for": {"file": "in/*.csv"}, "poke": poke, "timeout": "1h"}]}
    jsonschema.validate(document, schema)
    from flowstage.model.loader import load_text
    from flowstage.model.yamlsource import dump

    load_text(dump(document))


def test_a_poke_that_is_no_duration_is_refused_by_the_schema(schema: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "tasks": [{"name": "w", "wait_for": {"file": "a"}, "poke": "often"}]}, schema)


@pytest.mark.parametrize("where", ["preferences", "task"])
def test_the_schema_knows_retry_backoff_and_retry_delay_max(where: str, schema: dict) -> None:
    keys = {"retry_delay": "1s", "retry_backoff": 2, "retry_delay_max": "10m"}
    task = {"name": "a", "shell": "true", **(keys if where == "task" else {})}
    document = {"name": "x", "tasks": [task], **({"preferences": keys} if where == "preferences" else {})}
    jsonschema.validate(document, schema)
    load_text(dump(document))
    below_one = {"retry_backoff": 0.5}
    task = {"name": "a", "shell": "true", **(below_one if where == "task" else {})}
    document = {"name": "x", "tasks": [task], **({"preferences": below_one} if where == "preferences" else {})}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
