"""Access control and hostile input against a real `convlens api` process, on PostgreSQL and on SQLite.

No worker runs: submitted jobs stay queued in a private Redis database, which is all these tests need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from convlens.db.models import Artifact, Job
from convlens.db.session import session_scope
from services import ApiServer, cli, private_site

pytestmark = pytest.mark.services


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def server(request, tmp_path_factory):
    """An API with its own database, a private Redis db, one allowed root holding one image folder."""
    base = tmp_path_factory.mktemp(f"access-{request.param}")
    root = base / "allowed"
    (root / "images" / "cat").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "fast" / "helpers.py", root / "images" / "cat" / "not-an-image.png")
    with private_site(base, root, request.param) as env:
        api = ApiServer(env, base)
        try:
            yield {"api": api, "env": env, "root": root, "base": base}
        finally:
            api.stop()


def _token(env: dict, name: str, scope: str) -> str:
    out = cli(env, "tokens", "create", name, "--scope", scope).stdout.strip().splitlines()
    return out[-1].rsplit(" ", 1)[-1]


def _jobs() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job))


def _train(root: Path) -> dict:
    return {"kind": "train", "params": {"dataset": str(root / "images"), "epochs": 1}}


def _log_in(api, token: str):
    """A browser's login: the login URL's confirmation page, then its form (nonce in cookie and form)."""
    import re

    browser = api.client()
    page = browser.get(f"/?token={token}")
    assert page.status_code == 200 and "convlens_session" not in browser.cookies, page.text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    done = browser.post("/login", data={"token": token, "nonce": nonce})
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    return browser, page, done


def test_login_url_session_cookie_and_csrf(server):
    api = server["api"]
    assert api.token and api.token.startswith("cl_"), api.output
    assert api.token not in api.output  # the first admin token goes to a file of its owner's, not to the log
    anon = api.client()
    assert anon.get("/jobs").status_code == 401
    assert anon.get("/jobs").headers["www-authenticate"] == "Bearer"
    assert anon.get("/health").json() == {"status": "ok"} and anon.get("/openapi.json").status_code == 200
    assert anon.get("/?token=cl_wrong").status_code == 401 and "convlens_session" not in anon.cookies
    # A form posted from elsewhere (no nonce cookie of this site's login page) logs nobody in: no login CSRF.
    forged = api.client().post("/login", data={"token": api.token, "nonce": "guess"})
    assert forged.status_code == 403 and "convlens_session" not in forged.cookies
    browser, page, done = _log_in(api, api.token)
    assert "Log in as" in page.text
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    session_id = browser.cookies["convlens_session"]
    assert session_id != api.token and api.token not in cookie  # a server-side session's id, not the token
    assert browser.get("/").status_code == 200 and browser.get("/jobs").status_code == 200
    before = _jobs()
    refused = browser.post("/jobs", json=_train(server["root"]))
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]["message"]
    assert _jobs() == before
    csrf = browser.get("/session").json()["csrf_token"]
    made = browser.post("/jobs", json=_train(server["root"]), headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    assert made.json()["submitted_by"] == api.output.split("admin token '")[1].split("'")[0]
    # Each session has its own CSRF token; another login of the same token gets another.
    second, _, _ = _log_in(api, api.token)
    assert second.get("/session").json()["csrf_token"] != csrf
    # Someone else's login link, opened while logged in, asks before it switches identity.
    other = _token(server["env"], f"other-{uuid.uuid4().hex[:6]}", "read")
    asked = second.get(f"/?token={other}")
    assert asked.status_code == 200 and "You are logged in as" in asked.text
    assert second.get("/session").json()["name"] == api.output.split("admin token '")[1].split("'")[0]
    # Logging out ends the session on the server: the old cookie is refused even if replayed.
    assert browser.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert browser.post("/logout", data={"csrf": csrf}).status_code == 303
    replay = api.client()
    replay.cookies.set("convlens_session", session_id)
    assert replay.get("/jobs").status_code == 401 and replay.get("/").status_code == 401
    # No secret reaches the access log: the login URLs above are logged with the token blanked.
    log = api.log.read_text()
    assert "GET /?token=[hidden]" in log and "cl_" not in log
    # A second start finds a token and makes none.
    again = ApiServer(server["env"], server["base"])
    again.stop()
    assert again.token is None and "convlens tokens create" in again.output


def test_home_files_are_private(server):
    home = Path(server["env"]["CONVLENS_HOME"])
    assert (home.stat().st_mode & 0o077) == 0
    private = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()]
    assert private and all(p.stat().st_mode & 0o077 == 0 for p in private), \
        [(str(p), oct(p.stat().st_mode)) for p in private if p.stat().st_mode & 0o077]


def test_access_matrix(server):
    api, env, root = server["api"], server["env"], server["root"]
    suffix = uuid.uuid4().hex[:6]
    tokens = {scope: _token(env, f"{scope}-{suffix}", scope) for scope in ("read", "submit", "admin")}
    other = _token(env, f"other-{suffix}", "submit")
    revoked = _token(env, f"gone-{suffix}", "admin")
    cli(env, "tokens", "revoke", f"gone-{suffix}")
    listed = {t["name"]: t for t in __import__("json").loads(cli(env, "tokens", "list", "--json").stdout)}
    assert listed[f"gone-{suffix}"]["revoked_at"] and "token" not in listed[f"read-{suffix}"]
    c = {name: api.client(t) for name, t in [*tokens.items(), ("other", other), ("revoked", revoked),
                                             ("bad", "cl_" + "x" * 43), ("none", None)]}
    mine = c["submit"].post("/jobs", json=_train(root))
    assert mine.status_code == 201 and mine.json()["submitted_by"] == f"submit-{suffix}"
    job = mine.json()["id"]
    theirs = c["other"].post("/jobs", json=_train(root)).json()["id"]
    art_dir = Path(env["CONVLENS_HOME"]) / "runs" / job
    art_dir.mkdir(parents=True, exist_ok=True)
    (art_dir / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n fake")
    with session_scope() as s:
        s.add(Artifact(job_id=job, kind="plot", path=str(art_dir / "plot.png")))
    key = c["read"].get(f"/jobs/{job}").json()["artifacts"][0]["key"]
    assert len(key) == 32 and key != "1"
    reads = ["/jobs", f"/jobs/{job}", f"/jobs/{job}/metrics", f"/jobs/{job}/predictions", f"/artifacts/{key}",
             "/session"]
    for path in reads:
        for who in ("none", "bad", "revoked"):
            assert c[who].get(path).status_code == 401, (who, path)
        for who in ("read", "submit", "admin"):  # a train job stores no predictions: said, not an empty page
            assert c[who].get(path).status_code == (422 if path.endswith("/predictions") else 200), (who, path)
    assert c["read"].get(f"/artifacts/{key}").content.startswith(b"\x89PNG")
    assert c["read"].get("/artifacts/1").status_code == 404  # sequential ids address nothing
    assert c["read"].post("/jobs", json=_train(root)).status_code == 403
    assert c["revoked"].post("/jobs", json=_train(root)).status_code == 401
    assert c["read"].post(f"/jobs/{job}/cancel").status_code == 403
    assert c["other"].post(f"/jobs/{job}/cancel").status_code == 403  # not its own
    assert c["submit"].post(f"/jobs/{job}/cancel").json()["status"] == "cancelled"
    assert c["admin"].post(f"/jobs/{theirs}/cancel").json()["status"] == "cancelled"
    for who in ("read", "submit"):
        assert c[who].get("/tokens").status_code == 403
        assert c[who].post("/tokens", json={"name": f"x-{suffix}", "scope": "admin"}).status_code == 403
    made = c["admin"].post("/tokens", json={"name": f"http-{suffix}", "scope": "read"})
    assert made.status_code == 201 and made.json()["token"].startswith("cl_")
    assert api.client(made.json()["token"]).get("/jobs").status_code == 200
    assert c["admin"].post("/tokens", json={"name": f"http-{suffix}", "scope": "read"}).status_code == 409
    assert c["admin"].delete(f"/tokens/http-{suffix}").json()["revoked_at"]
    assert api.client(made.json()["token"]).get("/jobs").status_code == 401
    assert c["admin"].delete("/tokens/nobody").status_code == 404


HOSTILE_BODIES = [
    {"kind": "train", "params": {"preset": "\ud800"}},
    {"kind": "train", "params": {"dataset": "images\x00"}},
    {"kind": "train", "params": {"dataset": "a" * 5000}},
    {"kind": "train", "params": {"seed": -1}},
    {"kind": "train", "params": {"seed": 2**64}},
    {"kind": "train", "params": {"limit": 10**30}},
    {"kind": "train", "params": {"\udcff": 1}},
    {"kind": "train\x00", "params": {}},
    {"kind": "train", "params": {}, "priority": 9},
    {"kind": "classify", "params": {"folder": "/x/\udcff", "model": "m.keras"}},
    {"kind": "layers", "params": {"model": "\x00.keras"}},
    {"kind": "kfold", "params": {"folds": 1e300}},
    {"kind": ["train"], "params": {}},
    {"kind": "train", "params": {}, "after": ["nope"]},
    {"kind": "train", "params": {}, "after": ["f" * 32]},
    {"kind": "train", "params": {}, "after": ["a" * 32] * 33},
    {"kind": "layers", "params": {"model": "e" * 32}},
    {"params": {}},
    [],
]
RAW_BODIES = ['{"kind": "train", "params": {"time_budget_s": Infinity}}', '{"kind": "train", "params": {"lr": NaN}}',
              '{"kind": "train", "params": {"epochs": 1e999}}', '{"kind": ', b'{"kind": "\xff"}', "null"]


def test_hostile_requests_are_refused_before_any_row(server):
    import json

    api, root = server["api"], server["root"]
    c = api.client(api.token)
    before = _jobs()
    for body in HOSTILE_BODIES:
        r = c.post("/jobs", content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert r.json()["detail"]["message"]
    for raw in RAW_BODIES:
        r = c.post("/jobs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["detail"]["message"], (raw, r.status_code, r.text)
    folder = str(root / "images")
    for name in ("a" * 300, "b" * 5000):  # over-long file names: refused, not a 500
        r = c.post("/jobs", json={"kind": "classify", "params": {"folder": f"{folder}/{name}", "model": "m.keras"}})
        assert r.status_code in (403, 422), r.text
    queries = [("/jobs", {"kind": "train\x00"}), ("/jobs", {"parent_id": "x\x00"}), ("/jobs", {"offset": 2**63}),
               ("/jobs", {"limit": -1}), ("/jobs", {"status": "lost"})]
    for path, params in queries:
        r = c.get(path, params=params)
        assert r.status_code == 422, (path, params, r.status_code, r.text)
    # Hostile filters on an unknown job: the job is named first (404), as the CLI does, never a 500.
    for params in ({"label": "\x00"}, {"min_confidence": "nan"}, {"offset": 2**70}):
        r = c.get("/jobs/" + "a" * 32 + "/predictions", params=params)
        assert r.status_code == 404 and "not found" in r.json()["detail"]["message"], (params, r.text)
    for path in ("/jobs/%00", "/jobs/" + "f" * 5000, "/artifacts/9223372036854775808", "/artifacts/%00",
                 "/jobs/%ED%A0%80"):
        assert c.get(path).status_code == 404, path
    assert _jobs() == before
    assert c.get("/jobs").status_code == 200  # and the list still reads


def _special_paths(root: Path, outside: Path) -> dict[str, str]:
    """Every trick for reading outside the root, each made real on disk."""
    (outside / "cat").mkdir(parents=True, exist_ok=True)
    (outside / "m.keras").write_bytes(b"not a model")
    (root / "link-out").unlink(missing_ok=True)
    (root / "link-out").symlink_to(outside)
    (root / "link-model.keras").unlink(missing_ok=True)
    (root / "link-model.keras").symlink_to(outside / "m.keras")
    fifo = root / "fifo.keras"
    if not fifo.exists():
        os.mkfifo(fifo)
    return {"outside": str(outside), "dotdot": f"{root}/../{outside.name}", "symlink": str(root / "link-out"),
            "model-symlink": str(root / "link-model.keras"), "outside-model": str(outside / "m.keras"),
            "device": "/dev/zero", "proc": "/proc/self/root/etc", "fifo": str(fifo), "relative": "images",
            "etc": "/etc", "home": str(Path.home())}


PATH_PARAMS = [("train", "dataset", {}), ("kfold", "dataset", {}), ("layers", "dataset", {"model": "0" * 32}),
               ("layers", "model", {}), ("classify", "folder", {"model": "0" * 32}),
               ("classify", "model", {"folder": "IMAGES"})]


def test_every_path_param_of_every_kind_stays_inside_the_roots(server, tmp_path):
    api, root = server["api"], server["root"]
    c = api.client(api.token)
    tricks = _special_paths(root, tmp_path / "outside")
    before, tried = _jobs(), 0
    for kind, param, others in PATH_PARAMS:
        others = {k: v.replace("IMAGES", str(root / "images")) for k, v in others.items()}
        for trick, value in tricks.items():
            r = c.post("/jobs", json={"kind": kind, "params": {**others, param: value}})
            assert r.status_code in (403, 422), (kind, param, trick, r.status_code, r.text)
            assert "detail" in r.json()
            tried += 1
    assert _jobs() == before and tried == len(PATH_PARAMS) * len(tricks)
    train = c.post("/jobs", json=_train(root)).json()["id"]
    ok = c.post("/jobs", json={"kind": "classify", "params": {"folder": str(root / "images"), "model": train}})
    assert ok.status_code == 201 and ok.json()["params"]["folder"] == str((root / "images").resolve())
    assert ok.json()["status"] == "waiting" and ok.json()["waits_for"] == [train]


def test_non_loopback_without_tls_warns(server):
    api = ApiServer(server["env"], server["base"], "0.0.0.0")
    api.stop()
    assert "warning: serving on 0.0.0.0 over plain HTTP" in api.output and "TLS" in api.output


def test_schemathesis_finds_no_server_errors_and_no_contract_failures(server):
    api = server["api"]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "run", f"{api.url}/openapi.json", "-H",
         f"Authorization: Bearer {api.token}", "--max-examples", "50", "--seed", "1", "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
         "response_headers_conformance,ignored_auth", "--exclude-method", "DELETE",
         "--max-failures", "20", "--no-color"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
