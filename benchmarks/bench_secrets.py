"""What secrets by reference add to each task, in microseconds (best and median of repeats):

- ``tokens``: the ``secrets`` object every task render now puts in its context
  (``SecretTokens()``: 16 random bytes) and the pass that turns tokens into references over
  the rendered fields, params and env (``finish``), for a task that uses no secret;
- ``finish (2 refs)``: the same pass over a task whose env and command hold references;
- ``resolve (none)`` / ``resolve (2 refs)``: the executor's walk for references before it
  starts a task, and with two references looked up in the environment;
- ``mask (no file)``: the executor's masking of a result that has outputs, for a project
  without a secrets file (one failed open in the home);
- ``mask (10 secrets)``: the same with a project file holding 10 secrets.

Compare against ``render_task (whole task)`` of ``bench_templating.py`` from the same run.

    PYTHONPATH=layers/core python benchmarks/bench_secrets.py [--repeat 7] [--number 20000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.secrets import ChainedSource, EnvironmentSource, masker_for, resolve
from stratoflow.templating import SecretTokens

FIELDS: dict[str, Any] = {
    "command": 'load --rows 43 --region EU --run sales-1 --day 2026-03-07 --home "${HOME}"',
    "runner": None,
}
PARAMS: dict[str, Any] = {"region": "eu", "tables": ["a", "b", "c"], "rows": "42"}
ENV = {"TARGET": "eu-20260307"}
WITH_REFS = {
    "fields": {**FIELDS, "command": FIELDS["command"] + " --password {{ secrets.pw }}"},
    "params": PARAMS,
    "env": {**ENV, "DB": "{{ secrets.db }}"},
}


def cases(home: Path) -> dict[str, Callable[[], Any]]:
    tokens_rendered = SecretTokens()
    token_text = {
        "fields": {**FIELDS, "command": FIELDS["command"] + f" --password {tokens_rendered.pw}"},
        "params": PARAMS,
        "env": {**ENV, "DB": tokens_rendered.db},
    }
    env_source = EnvironmentSource({"STRATOFLOW_SECRET_pw": "p" * 20, "STRATOFLOW_SECRET_db": "d"})
    empty = ChainedSource([EnvironmentSource({}), LocalSecrets(home)])
    full_store = LocalSecrets(home)
    for i in range(10):
        full_store.put("full", f"s{i}", f"value-{i}-" + "x" * 20)
    plain = {"fields": FIELDS, "params": PARAMS, "env": ENV}

    def tokens() -> Any:
        t = SecretTokens()
        return (t.finish(FIELDS, "f"), t.finish(PARAMS, "params"), t.finish(ENV, "env"))

    return {
        "tokens + finish (no refs)": tokens,
        "finish (2 refs)": lambda: tokens_rendered.finish(token_text, "task"),
        "resolve (none)": lambda: resolve(plain, "p", env_source),
        "resolve (2 refs)": lambda: resolve(WITH_REFS, "p", env_source),
        "mask (no file)": lambda: masker_for(empty, "nofile"),
        "mask (10 secrets)": lambda: masker_for(full_store, "full"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'':32} {'best':>9} {'median':>11}")
        for name, fn in cases(Path(tmp)).items():
            times = timeit.repeat(fn, repeat=args.repeat, number=args.number)
            per = [t / args.number * 1e6 for t in times]
            print(f"{name:32} {min(per):7.2f} us {statistics.median(per):8.2f} us")


if __name__ == "__main__":
    main()
