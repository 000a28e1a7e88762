"""A missing database driver is named with the extra of flowstage that installs it."""

from __future__ import annotations

import pytest

from flowstage.connections import driver_hint


@pytest.mark.parametrize(
    ("module", "hint"),
    [
        ("psycopg", "; install it with pip install 'flowstage[postgres]'"),
        ("psycopg2.extras", "; install it with pip install 'flowstage[postgres]'"),
        ("pymysql", "; install it with pip install 'flowstage[mysql]'"),
        ("cx_Oracle", ""),
        (None, ""),
    ],
)
def test_the_hint_names_the_extra(module: str | None, hint: str) -> None:
    assert driver_hint(module) == hint
