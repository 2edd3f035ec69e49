"""examples/warehouse_pool.yaml in Python, builder style: tasks that share a pool's slots."""

from __future__ import annotations

from stratoflow.sdk import Workflow, shell

with Workflow(
    "warehouse_pool",
    description="Three loads through a pool of warehouse slots, the big one first",
    priority=5,  # run priority: ahead of lower-priority runs in the pool
) as warehouse_pool:
    orders = shell(
        "load_orders",
        'echo "loading orders"; sleep 1',
        pool="warehouse",
        pool_slots=1,
        priority=10,  # within the pool and the run: higher first
    )
    customers = shell("load_customers", 'echo "loading customers"; sleep 1', pool="warehouse")
    history = shell(
        "load_history",
        'echo "loading history"; sleep 1',
        pool="warehouse",
        pool_slots=2,  # a wide task holds two slots
        priority=-5,
    )
    report = shell("report", 'echo "all loaded"')
    [orders, customers, history] >> report
