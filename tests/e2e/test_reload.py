"""A change made through an admin process is live on a separate proxy process within 1 s."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.processes import fake_upstream_process, free_port, llmgate_serve, wait_for_http
from tests.support import ADMIN_KEY


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_change_is_live_on_another_process_within_a_second(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    upstream_port = free_port()
    with (
        llmgate_serve(tmp_path, "--role=admin", database_url=db) as admin,
        llmgate_serve(tmp_path, "--role=proxy", database_url=db, wait=False) as proxy,
        fake_upstream_process(upstream_port),
    ):
        wait_for_http(proxy.proxy_url + "/", proc=proxy.proc)
        delays = []
        for i in range(5):
            body = {"uri": f"/live{i}", "upstream": {"nodes": {f"127.0.0.1:{upstream_port}": 1}}}
            request = urllib.request.Request(
                f"{admin.admin_url}/apisix/admin/routes/{i}",
                data=json.dumps(body).encode(),
                method="PUT",
                headers={"X-API-KEY": ADMIN_KEY},
            )
            urllib.request.urlopen(request).close()
            written = time.monotonic()
            while status_of(f"{proxy.proxy_url}/live{i}") != 200:
                assert time.monotonic() - written < 1.0, "not live within 1 s"
                time.sleep(0.005)
            delays.append(time.monotonic() - written)
    assert max(delays) < 1.0
    print(f"reload delays (s): {[round(d, 3) for d in delays]}")
