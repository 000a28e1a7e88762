"""The campaign example of examples/demo, end to end, on SQLite, PostgreSQL and MariaDB.

The example's own files (shop_setup and campaign_launch workflows, the shop SQL, tasks/cms.py) are
copied into a fresh project at test time, so the tests follow the example as it is shipped. The
`shop` connection points at each backend in turn; the campaigns table is then read back directly
with SQLAlchemy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Project, Result
from tests.records import record_of, tasks_of

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
EXAMPLE_FILES = ["workflows/shop_setup.yaml", "workflows/campaign_launch.yaml", "sql/shop_setup.sql", "tasks/cms.py"]
AFTER_FIND = ["bootstrap_tables", "update_banners", "mark_published", "mark_failed"]


class Shop:
    """The example copied into `project`, its `shop` connection on one backend."""

    def __init__(self, project: Project, url: str, env: dict[str, str]) -> None:
        self.project = project
        self.url = url
        self.env = env

    def run(self, *args: str) -> Result:
        return self.project.cli("run", *args, env=self.env)

    def campaigns(self) -> dict[int, dict[str, Any]]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, name, published, status FROM campaigns ORDER BY id")).mappings().all()
        finally:
            engine.dispose()
        return {int(r["id"]): dict(r) for r in rows}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def shop(request: pytest.FixtureRequest, project: Project) -> Shop:
    for rel in EXAMPLE_FILES:
        target = project.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO / rel, target)
    if request.param == "sqlite":
        # through flowstage.yaml, relative to the project root, as the example itself does
        project.write("flowstage.yaml", "connections:\n  shop: sqlite:///shop.db\n")
        shop = Shop(project, f"sqlite:///{project.root / 'shop.db'}", project.env())
    else:
        url = request.getfixturevalue("pg_schema_url" if request.param == "postgres" else "mysql_db_url")
        shop = Shop(project, url, project.env(FLOWSTAGE_CONN_SHOP=url))
    setup = shop.run("shop_setup", "--json")
    assert setup.code == 0, setup
    assert record_of(setup)["status"] == "succeeded"
    return shop


def test_campaign_of_today_is_found_prepared_and_published(shop: Shop) -> None:
    result = shop.run("campaign_launch", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["status"] == "succeeded"
    assert record["variables"]["campaign_id"] == 1
    tasks = tasks_of(record)
    assert tasks["find_campaign"]["saved"] == {"campaign_id": 1}
    for name in ("find_campaign", "bootstrap_tables", "update_banners", "mark_published"):
        assert tasks[name]["status"] == "succeeded", tasks[name]
    assert tasks["mark_failed"]["status"] == "skipped"
    assert "update_banners" in tasks["mark_failed"]["reason"]
    assert (shop.project.root / "out" / "banners_1.txt").read_text() == "banners of campaign 1\n"
    rows = shop.campaigns()
    assert (rows[1]["published"], rows[1]["status"]) == (1, "published")
    assert (rows[2]["published"], rows[2]["status"]) == (0, "planned")


def test_failed_banner_update_is_caught_by_mark_failed_and_run_succeeds(shop: Shop) -> None:
    result = shop.run("campaign_launch", "--var", "fail_banners=true", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["status"] == "succeeded"
    tasks = tasks_of(record)
    assert tasks["update_banners"]["status"] == "failed"
    assert "the CMS refused the banners of campaign 1" in tasks["update_banners"]["error"]
    assert tasks["mark_failed"]["status"] == "succeeded"
    assert len(tasks["mark_failed"]["attempts"]) == 1
    assert tasks["mark_published"]["status"] == "skipped"
    assert "update_banners" in tasks["mark_published"]["reason"]
    rows = shop.campaigns()
    assert (rows[1]["published"], rows[1]["status"]) == (0, "failed")
    assert rows[2]["status"] == "planned"


def test_no_campaign_today_skips_every_later_task_with_its_reason(shop: Shop) -> None:
    result = shop.run("campaign_launch", "--var", "today=2001-01-01", "--json")

    assert result.code == 0, result
    record = record_of(result)
    assert record["status"] == "succeeded"
    assert record["variables"]["campaign_id"] is None
    tasks = tasks_of(record)
    assert tasks["find_campaign"]["status"] == "succeeded"
    assert tasks["find_campaign"]["saved"] == {"campaign_id": None}
    for name in AFTER_FIND:
        assert tasks[name]["status"] == "skipped", tasks[name]
        assert tasks[name]["reason"], f"{name} was skipped without a reason"
        assert tasks[name]["attempts"] == []
    assert "campaign_id is not none" in tasks["update_banners"]["reason"]
    assert "bootstrap_tables" in tasks["mark_published"]["reason"]
    assert not (shop.project.root / "out").exists()
    rows = shop.campaigns()
    assert [(r["published"], r["status"]) for r in rows.values()] == [(0, "planned"), (0, "planned")]
