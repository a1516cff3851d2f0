"""The ``orderd`` command as an operator runs it: exit codes, one-line errors, real effects."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.postgres import schema
from adapters.postgres.pool import connection
from tests.conftest import ORDERD, POSTGRES_DSN

Run = Callable[..., subprocess.CompletedProcess[str]]
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "orderd.example.toml"
GOOD_CSV = (
    "sku,name,weight_g,bin,unit_cost,length_cm,width_cm,height_cm\n"
    "MUG-1,Mug,340,A-01-01,3.20,12,10,10\n"
    "TEE-M,Tee,190,A-02-02,4.75,,,\n"
)


def one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure is a single ``orderd: ...`` line with exit code 2 and no traceback."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("orderd: ")
    return lines[0]


def test_help_lists_the_commands(run_orderd: Run) -> None:
    result = run_orderd("--help")
    assert result.returncode == 0
    for command in ("config", "migrate", "catalog", "demo"):
        assert command in result.stdout


def test_config_check_accepts_the_example(run_orderd: Run) -> None:
    result = run_orderd("config", "check", str(EXAMPLE))
    assert result.returncode == 0
    assert result.stdout.startswith(f"{EXAMPLE}: ok")


def test_config_check_names_the_bad_key_and_the_file(run_orderd: Run, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[http]\nport = 'eighty'\n")
    line = one_clean_line(run_orderd("config", "check", str(path)))
    assert line == f"orderd: {path}: http.port: expected int, got str"


def test_config_check_reads_the_config_variable(run_orderd: Run, tmp_path: Path) -> None:
    path = tmp_path / "orderd.toml"
    path.write_text("[redis]\nprefixx = 'a:'\n")
    line = one_clean_line(run_orderd("config", "check", env={"ORDERD_CONFIG": str(path)}))
    assert line == f"orderd: {path}: redis.prefixx: unknown key"


def test_migrate_twice_in_a_row(run_orderd: Run, pg_schema_name: str) -> None:
    first = run_orderd("migrate")
    assert first.returncode == 0, first.stderr
    assert f"to version {schema.latest_version()}: applied 0001_initial" in first.stdout
    second = run_orderd("migrate")
    assert second.returncode == 0, second.stderr
    assert f"is up to date at version {schema.latest_version()}" in second.stdout


def test_migrate_with_the_database_down_says_so(run_orderd: Run) -> None:
    env = {"ORDERD_POSTGRES__DSN": "postgresql://orderd:hunter2@127.0.0.1:1/orderd"}
    line = one_clean_line(run_orderd("migrate", env=env))
    assert "cannot reach PostgreSQL at postgresql://orderd:***@127.0.0.1:1/orderd" in line
    assert "hunter2" not in line


@pytest.mark.usefixtures("pg")
def test_catalog_import_counts_new_changed_and_unchanged(run_orderd: Run, tmp_path: Path) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(GOOD_CSV)
    result = run_orderd("catalog", "import", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "imported 2 products" in result.stdout
    assert "2 new, 0 changed, 0 unchanged" in result.stdout

    csv_file.write_text(GOOD_CSV.replace("Mug,340", "Mug,350"))
    again = run_orderd("catalog", "import", str(csv_file))
    assert "0 new, 1 changed, 1 unchanged" in again.stdout


async def test_catalog_import_stores_the_rows(run_orderd: Run, tmp_path: Path, pg: Any) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(GOOD_CSV)
    assert run_orderd("catalog", "import", str(csv_file)).returncode == 0
    rows = await pg.fetch("SELECT sku, weight_g, bin, length_cm FROM products ORDER BY sku")
    assert [tuple(row) for row in rows] == [
        ("MUG-1", 340, "A-01-01", 12),
        ("TEE-M", 190, "A-02-02", None),
    ]


async def test_a_bad_catalog_reports_every_row_and_writes_nothing(
    run_orderd: Run, tmp_path: Path, pg: Any
) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(
        "sku,name,weight_g,bin,unit_cost\nGOOD,Fine,10,A-1,1\nBAD SKU,X,10,A-1,1\nOK,Y,-3,A-1,1\n"
    )
    result = run_orderd("catalog", "import", str(csv_file))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "orderd: catalog rejected, nothing imported: 2 problems"
    assert lines[1].startswith("  line 3: sku 'BAD SKU' is not valid")
    assert lines[2].startswith("  line 4: weight_g must be whole grams")
    assert await pg.fetchval("SELECT count(*) FROM products") == 0


@pytest.mark.usefixtures("pg")
def test_a_catalog_that_is_not_utf8_is_refused(run_orderd: Run, tmp_path: Path) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_bytes(b"sku,name,weight_g,bin,unit_cost\nA,Caf\xe9,1,A,1\n")
    assert "not UTF-8 text" in one_clean_line(run_orderd("catalog", "import", str(csv_file)))


def test_a_missing_catalog_file_is_named(run_orderd: Run, tmp_path: Path) -> None:
    line = one_clean_line(run_orderd("catalog", "import", str(tmp_path / "nope.csv")))
    assert line == f"orderd: {tmp_path / 'nope.csv'}: no such file"


def test_catalog_import_before_migrate_asks_for_migrate(run_orderd: Run, tmp_path: Path) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(GOOD_CSV)
    line = one_clean_line(run_orderd("catalog", "import", str(csv_file)))
    assert "is at version 0" in line
    assert "run `orderd migrate`" in line


async def test_a_database_from_a_newer_orderd_is_refused(
    run_orderd: Run, tmp_path: Path, pg: Any
) -> None:
    await pg.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x', now())")
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(GOOD_CSV)
    assert "upgrade orderd" in one_clean_line(run_orderd("catalog", "import", str(csv_file)))
    assert "upgrade orderd" in one_clean_line(run_orderd("migrate"))


def demo_environ(test_env: dict[str, str]) -> dict[str, str]:
    """The environment ``run_orderd`` gives a command, for the demo: it runs longer than
    that fixture waits, and in the background."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("ORDERD_")}
    return {**environ, **test_env}


def orderd_demo(
    test_env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``orderd demo``: a week of the daemon's clock, then the last parcels' days."""
    return subprocess.run(
        [str(ORDERD), "demo", *args],
        capture_output=True,
        text=True,
        env=demo_environ(test_env),
        cwd=cwd,
        timeout=120,
        check=False,
    )


async def nothing_held_or_reserved(conn: Any) -> dict[str, int]:
    """Orders by state, once every order ended and no unit is left reserved."""
    states: dict[str, int] = dict(
        await conn.fetch("SELECT state, count(*) FROM orders GROUP BY state")
    )
    assert set(states) <= {"completed", "cancelled"}, states
    reserved = await conn.fetchval(
        "SELECT sum((l->>2)::int) FROM stock_ledger, jsonb_array_elements(lines) l"
    )
    assert reserved == 0
    return states


@pytest.mark.timeout(240)  # two demo runs, each carrying its orders through to completed
async def test_demo_completes_its_orders_reports_and_leaves_nothing_reserved(
    test_env: dict[str, str], tmp_path: Path, pg_schema_name: str
) -> None:
    result = orderd_demo(test_env, tmp_path, "--orders", "40")
    assert result.returncode == 0, result.stderr
    assert "demo: 40 orders to come over 7 days of orderd's clock" in result.stdout
    assert re.search(r"^demo: 40 signed webhooks sent over [\d.]+ days: 40 202 accepted$",
                     result.stdout, re.MULTILINE)  # fmt: skip
    progress = re.findall(r"^demo: \w{3} \d\d \w{3} \d\d:\d\d: (\d+) of 40 orders sent; ",
                          result.stdout, re.MULTILINE)  # fmt: skip
    assert len(progress) >= 2
    assert progress[-1] == "40"
    # The scarce product's delivery came in the week.
    assert re.search(r"^demo: .{16}: a delivery of 60 x MUG-BLK filled \d+ waiting orders",
                     result.stdout, re.MULTILINE)  # fmt: skip
    assert "Redis matches the ledger" in result.stdout
    for figure in ("fulfillment time", "shipping accuracy", "customer satisfaction",
                   "inventory turnover"):  # fmt: skip
        assert f"demo: {figure}: " in result.stdout
    # The report covers the orders, though they were paid on the daemon's clock.
    assert "demo: fulfillment time: paid -> shipped median -" not in result.stdout
    assert "demo: carrier sandbox: " in result.stdout
    assert "shipping confirmation" in result.stdout
    assert "dashboard" not in result.stdout
    again = orderd_demo(test_env, tmp_path, "--orders", "10")
    assert again.returncode == 0, again.stderr
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        assert await conn.fetchval("SELECT count(*) FROM products") == 20
        states = await nothing_held_or_reserved(conn)
        # A few are packed wrong or not delivered, held, then cancelled.
        assert states["completed"] >= 40
        ratings = await conn.fetchval("SELECT count(*) FROM feedback")
        assert ratings > 0
        labels = await conn.fetch(
            "SELECT label_path FROM shipments WHERE status IN ('shipped', 'delivered')"
        )
        assert all(map(os.path.isfile, (r["label_path"] for r in labels)))
        # Most parcels arrive by the promised day: the late ones are the carrier's few.
        on_time = await conn.fetchval(
            """
            SELECT avg(((delivered_at AT TIME ZONE 'UTC')::date <= promised_by)::int)
            FROM shipments WHERE delivered_at IS NOT NULL
            """
        )
        assert on_time >= 0.6
