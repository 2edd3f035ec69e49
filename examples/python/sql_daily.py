"""examples/sql_daily.yaml in Python, builder style: a day's partition loaded into PostgreSQL
through the named connection `warehouse`, counted, and the count passed on."""

from __future__ import annotations

from stratoflow.sdk import Workflow, shell, sql

DAY = {"ds": "{{ ds }}", "region": "{{ params.region }}"}  # bound, never pasted

with Workflow(
    "sql_daily",
    description="Loads one day's orders into PostgreSQL, counts them and reports the count",
    schedule={"cron": "0 4 * * *", "timezone": "UTC"},
    params={"region": "eu"},
) as sql_daily:
    prepare = sql(
        "prepare",
        """\
CREATE TABLE IF NOT EXISTS sales_daily (
    ds date NOT NULL,
    region text NOT NULL,
    order_id int NOT NULL,
    amount numeric(10, 2) NOT NULL,
    PRIMARY KEY (ds, region, order_id)
);
""",
        connection="warehouse",
        outputs="none",
    )
    load = sql(
        "load",
        """\
INSERT INTO sales_daily (ds, region, order_id, amount)
SELECT %(ds)s::date, %(region)s, n, round((mod(n * 37, 100) + 0.5)::numeric, 2)
FROM generate_series(1, 10 + extract(day FROM %(ds)s::date)::int) AS n
ON CONFLICT (ds, region, order_id) DO UPDATE SET amount = EXCLUDED.amount
""",
        connection="warehouse",
        outputs="none",
        parameters=DAY,
    )
    count = sql(
        "count",
        """\
SELECT count(*) AS orders, coalesce(sum(amount), 0) AS revenue
FROM sales_daily WHERE ds = %(ds)s AND region = %(region)s
""",
        connection="warehouse",
        outputs="first_row",
        parameters=DAY,
    )
    report = shell(
        "report",
        f"""\
echo "{{{{ ds }}}} {{{{ params.region }}}}: {count.outputs.orders} orders, revenue {count.outputs.revenue}"
echo "orders={count.outputs.orders}" >> "$STRATOFLOW_OUTPUT"
""",
    )
    prepare >> load >> count >> report
