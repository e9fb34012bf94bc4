"""A write is either fully stored or fully absent after SIGKILL and restart."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path

from tests.processes import llmgate_serve, stop
from tests.support import ADMIN_KEY


def put(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="PUT", headers={"X-API-KEY": ADMIN_KEY}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status


def upstream(i: int) -> dict:
    # Many nodes so that each value is a sizeable write.
    return {
        "name": f"u{i}",
        "nodes": {f"10.0.{n // 250}.{n % 250}:{8000 + i}": 1 for n in range(300)},
    }


def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    acknowledged: list[int] = []
    with llmgate_serve(tmp_path) as gateway:

        def writer() -> None:
            i = 0
            while True:
                try:
                    put(f"{gateway.admin_url}/apisix/admin/upstreams/{i}", upstream(i))
                except OSError:
                    return  # the gateway died under us
                acknowledged.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        deadline = time.monotonic() + 10
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop(gateway.proc, signal.SIGKILL)
        thread.join(10)
    assert len(acknowledged) >= 20

    with llmgate_serve(tmp_path) as gateway:  # same SQLite file: a restart
        for i in acknowledged:
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{gateway.admin_url}/apisix/admin/upstreams/{i}",
                    headers={"X-API-KEY": ADMIN_KEY},
                )
            ) as resp:
                value = json.load(resp)["value"]
            assert value["nodes"] == upstream(i)["nodes"]

    db = sqlite3.connect(tmp_path / "llmgate.db")
    try:
        revision = db.execute("SELECT value FROM revision").fetchone()[0]
        rows = db.execute("SELECT id, value, modified_index FROM resources").fetchall()
    finally:
        db.close()
    # The one write in flight at the kill is either all there or not there at all.
    assert len(rows) in (len(acknowledged), len(acknowledged) + 1)
    for row_id, value, _ in rows:
        assert json.loads(value)["nodes"] == upstream(int(row_id))["nodes"]
    # Every stored write bumped the revision in the same transaction.
    assert revision == len(rows) == max(r[2] for r in rows)
