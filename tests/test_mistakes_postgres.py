"""Every mistake of tests/mistakes.py on PostgreSQL: the CLI's one line and exit 2, HTTP's 404/422/403 with one
message and no traceback, and nothing written by either."""

from __future__ import annotations

import pytest

from mistakes import CASES
from services import ApiServer, cli, cli_json, private_site

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("mistakes")
    (base / "root").mkdir()
    with private_site(base, base / "root", "postgresql") as env:
        server = ApiServer(env, base)
        try:
            yield env, server.client(server.token)
        finally:
            server.stop()


def test_the_cli_and_http_give_the_same_verdicts(site):
    env, http = site
    root = env["CONVLENS_ALLOWED_ROOTS"]
    for args, message, (method, path, payload), status in CASES:
        args = [a.replace("ROOT", root) for a in args]
        if payload and "params" in payload and "folder" in payload["params"]:
            payload = {**payload, "params": {**payload["params"],
                                             "folder": payload["params"]["folder"].replace("ROOT", root)}}
        proc = cli(env, *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (args, proc.stderr[-1500:])
        sent = http.request(method, path, **({"json": payload} if method == "POST" else {"params": payload}))
        detail = sent.json()["detail"]
        assert sent.status_code == status, (method, path, sent.text)
        assert detail["message"] and "Traceback" not in sent.text and "Error:" not in detail["message"]
    assert cli_json(env, "jobs", "list") == [] and http.get("/jobs").json()["jobs"] == []
