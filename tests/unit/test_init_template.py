"""`flowstage init` copies the template's own files, never what runs of the example project wrote."""

from __future__ import annotations

from pathlib import Path

from flowstage.cli.project import template_files


def test_the_files_a_run_wrote_are_left_out_of_a_new_project(tmp_path: Path) -> None:
    template = tmp_path / "demo"
    for rel in (
        "flowstage.yaml",
        ".gitignore",
        "workflows/a.yaml",
        "data/orders.csv",
        "data/generated/batch_1.csv",
        "out/report.json",
        "shop.db",
        ".flowstage/flowstage.db",
        "tasks/__pycache__/t.cpython-311.pyc",
        "tasks/t.py",
        "sql/out.sql",
    ):
        (template / rel).parent.mkdir(parents=True, exist_ok=True)
        (template / rel).write_text("x\n")
    (template / ".gitignore").write_text(".flowstage/\nout/\nshop.db\ndata/generated/\n# a comment\n")
    kept = {p.relative_to(template).as_posix() for p in template_files(template) if p.is_file()}
    assert kept == {"flowstage.yaml", ".gitignore", "workflows/a.yaml", "data/orders.csv", "tasks/t.py", "sql/out.sql"}


def test_the_shipped_template_holds_no_output(tmp_path: Path) -> None:
    from flowstage.cli import project

    template = Path(project.__file__).resolve().parent.parent / "project_template"
    kept = [p.relative_to(template).as_posix() for p in template_files(template)]
    assert "workflows/daily_sales.yaml" in kept
    assert not [k for k in kept if k.startswith(("out", "data/generated", ".flowstage")) or k.endswith(".db")]
