"""Python callables used by the example workflows (imported by `callable: module:function`)."""

from __future__ import annotations

from typing import Any


def daily_report(params: dict[str, Any]) -> dict[str, Any]:
    """Return outputs as a dict; keyword arguments are matched by name (params, context)."""
    print(f"report for {params['day']}: API is {params['status']}")
    return {"day": params["day"], "api_status": params["status"]}
