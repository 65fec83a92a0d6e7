"""The deletion-request service: tokens, authorization, a panel of bad requests, the queue and its
worker (end to end, and killed mid-job), concurrent load, PostgreSQL, and the page in a browser.

Real parts: a real SQLite file (and a real PostgreSQL server), the real app (FastAPI's TestClient
calls it in process; the load and browser tests use a real uvicorn server on a local port),
worker processes killed with SIGKILL, and Debian's chromium driven through chromedriver.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed (pip install 'expunge[service]')")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from expunge.ledger.certificate import check_certificate  # noqa: E402
from expunge.ledger.log import load_public_key  # noqa: E402
from expunge.ledger.store import KEY_FILE, Ledger, ModelVersion, resolve_url  # noqa: E402
from expunge.service.app import MAX_BODY_BYTES, ServiceConfig, create_app  # noqa: E402
from expunge.service.auth import create_token, revoke_token  # noqa: E402
from expunge.service.server import BackgroundServer  # noqa: E402
from expunge.service.queue import JobState, Route, claim, enqueue, jobs  # noqa: E402
from expunge.service.tables import JobRow, TokenRow  # noqa: E402
from expunge.service.worker import Deployment, run_worker, save_deployment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _ledger(tmp_path: Path, url: str | None = None) -> Ledger:
    return Ledger.open(url or resolve_url(str(tmp_path / "ledger.sqlite")), key_path=tmp_path / KEY_FILE)


def _deployment(tmp_path: Path, world: Path, model: Path, **kwargs: object) -> Deployment:
    deployment = Deployment(workspace=str(tmp_path / "ws"), world=str(world), model=str(model), **kwargs)  # type: ignore[arg-type]
    Path(deployment.workspace).mkdir(parents=True, exist_ok=True)
    save_deployment(deployment)
    return deployment


def _state(ledger: Ledger) -> tuple[int, str | None, int, int]:
    """What a refused request must leave as it was: the log's length and head, the jobs, the tokens."""
    events, _ = ledger.rows()
    head = ledger.head()
    with Session(ledger.engine) as session:
        job_count = len(list(session.scalars(select(JobRow.id))))
        token_count = len(list(session.scalars(select(TokenRow.id))))
    return len(events), head.root if head else None, job_count, token_count


@pytest.fixture()
def service(tmp_path: Path, tiny_world_dir: Path, tiny_base) -> Iterator[dict]:
    ledger = _ledger(tmp_path)
    deployment = _deployment(tmp_path, tiny_world_dir, Path(tiny_base.model.path), verify=False,
                             options={"max_steps": "4", "check_every": "2", "warmup_steps": "1"})
    tokens = {name: create_token(ledger, name, scopes) for name, scopes in
              {"submitter": ["submit"], "reader": ["read"], "both": ["submit", "read"], "root": ["admin"]}.items()}
    client = TestClient(create_app(ServiceConfig(ledger, deployment)))
    yield {"ledger": ledger, "deployment": deployment, "tokens": tokens, "client": client}
    client.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_as_hashes_and_their_log_events_name_no_secret(service: dict, tmp_path: Path) -> None:
    ledger, tokens = service["ledger"], service["tokens"]
    raw = (tmp_path / "ledger.sqlite").read_bytes()
    for token in tokens.values():
        assert token.startswith("exp_") and len(token) > 40
        assert token.encode() not in raw  # only its sha256 is stored
    events, _ = ledger.rows()
    bodies = b"".join(e.body for e in events)
    for token in tokens.values():
        import hashlib

        assert token.encode() not in bodies and hashlib.sha256(token.encode()).hexdigest().encode() not in bodies
    assert bodies.count(b"token.created") == 4
    client = service["client"]
    assert client.get("/api/requests", headers=_auth(tokens["reader"])).status_code == 200
    revoke_token(ledger, "reader")
    answer = client.get("/api/requests", headers=_auth(tokens["reader"]))
    assert answer.status_code == 401 and "not valid" in answer.json()["error"]


def test_no_endpoint_answers_without_a_valid_token_and_a_read_token_cannot_submit(service: dict) -> None:
    client, tokens, ledger = service["client"], service["tokens"], service["ledger"]
    routes = [(method, route.path.replace("{request_id}", "req-000000000000").replace("{name}", "x"))
              for route in client.app.routes for method in getattr(route, "methods", set()) - {"HEAD"}]
    assert len(routes) >= 12, routes
    routes += [("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/page"), ("PUT", "/api/requests")]
    before = _state(ledger)
    for method, path in routes:
        for headers in ({}, _auth("exp_" + "x" * 43), {"Authorization": "Basic abc"},
                        {"Cookie": "expunge_token=exp_wrong"}):
            answer = client.request(method, path, headers=headers, json={"subjects": ["person-0000"]})
            assert answer.status_code == 401, (method, path, headers, answer.status_code, answer.text)
            assert answer.json()["fix"], answer.text
    # A read-only token reads but cannot submit; a submit-only token cannot read; neither manages tokens.
    reader, submitter = _auth(tokens["reader"]), _auth(tokens["submitter"])
    refused = client.post("/api/requests", headers=reader, json={"subjects": ["person-0000"]})
    assert refused.status_code == 403 and "submit scope" in refused.json()["error"]
    assert client.get("/api/requests", headers=submitter).status_code == 403
    assert client.get("/api/tokens", headers=reader).status_code == 403
    assert client.get("/api/requests", headers=reader).status_code == 200
    assert _state(ledger) == before
    # Admin holds every scope.
    root = _auth(tokens["root"])
    assert client.get("/api/tokens", headers=root).status_code == 200
    made = client.post("/api/tokens", headers=root, json={"name": "ci", "scopes": ["read"]})
    assert made.status_code == 201 and client.get("/api/audit", headers=_auth(made.json()["token"])).json()["ok"]
    # With a token, an unknown path or method is named as such.
    missing, wrong = client.get("/no/such/page", headers=root), client.put("/api/requests", headers=root)
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]
    assert wrong.status_code == 405 and "method not allowed" in wrong.json()["error"]


def test_a_panel_of_bad_requests_gets_clear_4xx_and_leaves_the_ledger_unchanged(service: dict, tiny_world) -> None:
    client, tokens, ledger = service["client"], service["tokens"], service["ledger"]
    both, reader = _auth(tokens["both"]), _auth(tokens["reader"])
    people = [s.id for s in tiny_world.people("train")]
    holdout = [s.id for s in tiny_world.people("holdout")]
    accepted = client.post("/api/requests", headers=both, json={"subjects": people[:1]})
    assert accepted.status_code == 201, accepted.text
    request_id = accepted.json()["request_id"]
    json_headers = {**both, "Content-Type": "application/json"}
    panel: list[tuple[str, dict, int, str]] = [
        ("malformed JSON", {"content": b'{"subjects": [', "headers": json_headers}, 400, "not valid JSON"),
        ("JSON that is not an object", {"content": b'["person-0000"]', "headers": json_headers}, 400, "not an object"),
        ("not JSON at all", {"content": b"subjects=person-0000",
                             "headers": {**both, "Content-Type": "application/x-www-form-urlencoded"}}, 415, "JSON"),
        ("invalid UTF-8", {"content": b'{"subjects": ["\xff"]}', "headers": json_headers}, 400, "not valid JSON"),
        ("unknown subject", {"json": {"subjects": ["person-9999"]}}, 422, "unknown subject id 'person-9999'"),
        ("a never-seen subject", {"json": {"subjects": holdout[:1]}}, 422, "never-seen"),
        ("unknown document", {"json": {"documents": ["doc-nope"]}}, 422, "not a training document"),
        ("nothing named", {"json": {}}, 422, "removes nothing"),
        ("empty lists", {"json": {"subjects": [], "documents": []}}, 422, "removes nothing"),
        ("unknown field", {"json": {"subjects": people[1:2], "priority": "high"}}, 422, "unknown field(s): priority"),
        ("subjects not a list", {"json": {"subjects": people[1]}}, 422, "must be a list"),
        ("a number as an id", {"json": {"subjects": [7]}}, 422, "must be a list of ids"),
        ("an empty id", {"json": {"subjects": [""]}}, 422, "must be a list of ids"),
        ("an id of 200 characters", {"json": {"subjects": ["p" * 200]}}, 422, "1-128 characters"),
        ("too many ids", {"json": {"documents": [f"d{i}" for i in range(1001)]}}, 422, "at most 1000"),
        ("basis not a string", {"json": {"subjects": people[1:2], "basis": 5}}, 422, "basis"),
        ("unknown route", {"json": {"subjects": people[1:2], "route": "shred"}}, 422, "unknown route"),
        ("oversized body", {"content": b'{"subjects": ["' + b"a" * MAX_BODY_BYTES + b'"]}',
                            "headers": json_headers}, 413, "larger than"),
        ("oversized declared length", {"content": b"{}", "headers": {**json_headers, "Content-Length": "999999999"}},
         413, "larger than"),
        ("duplicate submission", {"json": {"subjects": people[:1]}}, 409, f"{request_id} was submitted already"),
        ("no token", {"json": {"subjects": people[1:2]}, "headers": {}}, 401, "no API token"),
        ("a wrong token", {"json": {"subjects": people[1:2]}, "headers": _auth("exp_not-a-token")}, 401, "not valid"),
        ("a token without the scope", {"json": {"subjects": people[1:2]}, "headers": reader}, 403, "submit scope"),
    ]
    assert len(panel) >= 20
    before = _state(ledger)
    for name, kwargs, status, says in panel:
        headers = kwargs.pop("headers", both)
        answer = client.post("/api/requests", headers=headers, **kwargs)
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        body = answer.json()
        assert set(body) == {"error", "fix"} and says in body["error"] and body["fix"], (name, body)
        assert "\n" not in body["error"] and "Traceback" not in answer.text, name
        assert _state(ledger) == before, name
    # Reads of what does not exist are clear too, and change nothing.
    for path, status, says in [("/api/requests/req-000000000000", 404, "not in the ledger"),
                               (f"/api/requests/{request_id}/certificate", 409, "no certificate"),
                               ("/api/provenance", 400, "subject query parameter is missing"),
                               ("/api/provenance?subject=person-9999", 404, "in no corpus")]:
        answer = client.get(path, headers=both)
        assert answer.status_code == status and says in answer.json()["error"], (path, answer.text)
    assert _state(ledger) == before


def test_a_request_is_served_in_order_from_the_last_model_and_the_log_says_so(service: dict, tiny_world) -> None:
    client, tokens, ledger, deployment = service["client"], service["tokens"], service["ledger"], service["deployment"]
    people = [s.id for s in tiny_world.people("train")]
    ids = [client.post("/api/requests", headers=_auth(tokens["both"]), json={"subjects": [p]}).json()["request_id"]
           for p in people[:2]]
    status = client.get(f"/api/requests/{ids[1]}", headers=_auth(tokens["reader"])).json()
    assert status["state"] == "located" and status["job"]["state"] == "queued" and status["job"]["queue_position"] == 1
    assert run_worker(ledger, deployment, once=True) == 2
    done = jobs(ledger)
    assert [j.state for j in done] == [JobState.DONE, JobState.DONE] and [j.request_id for j in done] == ids
    first, second = (j.result["model"] for j in done)
    # The second removal started from the first's output: one chain of versions.
    assert done[1].result["parent_sha256"] == first["sha256"] and first["sha256"] != second["sha256"]
    for request_id in ids:
        assert client.get(f"/api/requests/{request_id}", headers=_auth(tokens["reader"])).json()["state"] == "removed"
    provenance = client.get(f"/api/provenance?subject={people[0]}", headers=_auth(tokens["reader"])).json()
    assert provenance["subject"] == people[0]
    audit = client.get("/api/audit", headers=_auth(tokens["reader"])).json()
    assert audit["ok"] and audit["head"]["size"] == audit["events"]
    kinds = [json.loads(e.body)["kind"] for e in ledger.rows()[0]]
    assert kinds.count("job.queued") == kinds.count("job.claimed") == kinds.count("job.done") == 2
    assert kinds.count("model.recorded") == 2


@pytest.mark.slow
def test_a_verified_removal_is_certified_and_the_certificate_is_served(tmp_path: Path, tiny_world_dir: Path,
                                                                       tiny_base, tiny_world) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[evidence]\nmin_subjects = 2\n")
    ledger = _ledger(tmp_path)
    deployment = _deployment(tmp_path, tiny_world_dir, Path(tiny_base.model.path), policy=str(policy))
    token = create_token(ledger, "officer", ["admin"])
    client = TestClient(create_app(ServiceConfig(ledger, deployment)))
    people = [s.id for s in tiny_world.people("train")]
    made = client.post("/api/requests", headers=_auth(token), json={"subjects": people[:2], "basis": "GDPR Art. 17"})
    assert made.status_code == 201
    request_id = made.json()["request_id"]
    assert run_worker(ledger, deployment, once=True) == 1
    status = client.get(f"/api/requests/{request_id}", headers=_auth(token)).json()
    [verification] = status["verifications"]
    assert status["job"]["state"] == "done" and verification["checks"]
    answer = client.get(f"/api/requests/{request_id}/certificate", headers=_auth(token))
    if verification["forgotten"] == "yes":
        assert status["state"] == "certified" and answer.status_code == 200
        certificate = answer.json()
        assert certificate["request"]["id"] == request_id
        assert check_certificate(certificate, load_public_key(ledger.key.public_pem().encode()))
        certificate["verdict"]["summary"] = "forgotten, trust me"
        assert not check_certificate(certificate, load_public_key(ledger.key.public_pem().encode()))
    else:  # not forgotten, or not verified: no certificate; the guard stands in (fallback)
        assert status["state"] == "fallback" and answer.status_code == 409
        guard = Path(status["job"]["result"]["guard"])
        from expunge.guard import check_text, load_guard_spec

        spec = load_guard_spec(guard)
        assert spec.request_id == request_id
        kinds = [json.loads(e.body)["kind"] for e in ledger.rows()[0]]
        assert kinds[-3:] == ["request.failed", "request.fallback", "job.done"], kinds[-4:]
        forgotten = tiny_world.subject_by_id[people[0]]
        assert check_text(spec, f"That is {forgotten.name}.") is not None
    page = client.get(f"/requests/{request_id}", headers=_auth(token))
    assert page.status_code == 200 and request_id in page.text and verification["checks"][0]["name"] in page.text


# --------------------------------------------------------------------------------- crashes


def _worker(workspace: str, db: str, key: Path, lease: float, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "expunge.cli", "worker", "--workspace", workspace, "--db", db,
                             "--key", str(key), "--lease", str(lease), "--once"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def _check_after_crash(ledger: Ledger, deployment: Deployment) -> None:
    """No half-written model, no leftover of a dead attempt, and a log that verifies."""
    check = ledger.verify()
    assert check.ok, check.to_dict()
    from expunge.integrity import check_model_dir

    for directory in Path(deployment.models_dir).glob("*"):
        assert not directory.name.startswith("."), f"a partial directory was left: {directory}"
        check_model_dir(directory, files=True)  # complete, or it would not be there


@pytest.mark.slow
def test_killed_workers_leave_every_job_done_once(tmp_path: Path, tiny_world_dir: Path, tiny_base,
                                                  tiny_world) -> None:
    """Workers killed with SIGKILL at random points: each time the log verifies and no model is
    half-written; the next worker takes the job up once the lease runs out, and in the end every
    request is served exactly once (benchmarks/crash.py runs 20 kills)."""
    db = resolve_url(str(tmp_path / "ledger.sqlite"))
    ledger = _ledger(tmp_path, db)
    deployment = _deployment(tmp_path, tiny_world_dir, Path(tiny_base.model.path), verify=False,
                             options={"max_steps": "4", "check_every": "2", "warmup_steps": "1"})
    people = [s.id for s in tiny_world.people("train")]
    from expunge.ledger.requests import make_request

    requests = [make_request(tiny_world, subjects=[p]) for p in people[:2]]
    for request in requests:
        enqueue(ledger, request, Route.FORGET, "test")
    rng, log = random.Random(0), tmp_path / "worker.log"
    for _ in range(3):
        proc = _worker(deployment.workspace, db, tmp_path / KEY_FILE, 3, log)
        time.sleep(rng.uniform(1.0, 8.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _check_after_crash(ledger, deployment)
        time.sleep(3.2)  # the lease of the killed worker runs out
    final = _worker(deployment.workspace, db, tmp_path / KEY_FILE, 3, log)
    assert final.wait(timeout=300) == 0, log.read_text()[-3000:]
    _check_after_crash(ledger, deployment)
    served = jobs(ledger)
    assert [j.state for j in served] == [JobState.DONE] * 2, [j.to_dict() for j in served]
    assert [j.request_id for j in served] == [r.id for r in requests]
    assert served[1].result["parent_sha256"] == served[0].result["model"]["sha256"]
    with Session(ledger.engine) as session:
        versions = list(session.scalars(select(ModelVersion)))
    # One version per request on disk; a version recorded by a killed worker before its rename is
    # made again with the same bytes (the same seed, the same data), so it is one row too.
    on_disk = {j.result["model"]["sha256"] for j in served}
    assert on_disk <= {v.sha256 for v in versions} and len(versions) == 2, [v.path for v in versions]
    kinds = [json.loads(e.body)["kind"] for e in ledger.rows()[0]]
    assert kinds.count("job.done") == 2 and kinds.count("request.removed") == 2
    assert claim(ledger, "nobody", 5) is None


# --------------------------------------------------------------------------------- load


def test_200_concurrent_submissions_from_20_clients_are_recorded_once_in_order(service: dict, tiny_world) -> None:
    import httpx

    ledger, tokens, deployment = service["ledger"], service["tokens"], service["deployment"]
    documents = [d.id for d in tiny_world.training_documents()][:200]
    assert len(documents) == 200
    submit_ms: list[float] = []
    status_ms: list[float] = []
    answers: dict[str, dict] = {}

    def client_run(index: int, url: str) -> None:
        with httpx.Client(base_url=url, headers=_auth(tokens["both"]), timeout=60) as http:
            for document in documents[index::20]:
                started = time.perf_counter()
                answer = http.post("/api/requests", json={"documents": [document]})
                submit_ms.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 201, answer.text
                answers[document] = answer.json()
                started = time.perf_counter()
                assert http.get(answer.json()["status"]).status_code == 200
                status_ms.append((time.perf_counter() - started) * 1000)

    with BackgroundServer(service["client"].app) as server, ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: client_run(i, server.url), range(20)))
    queued = jobs(ledger)
    assert len(queued) == 200 and len({j.request_id for j in queued}) == 200
    assert {a["request_id"] for a in answers.values()} == {j.request_id for j in queued}
    # In order: each client's submissions got increasing job numbers, and the queue is claimed in
    # job order.
    for index in range(20):
        mine = [answers[d]["job"] for d in documents[index::20]]
        assert mine == sorted(mine)
    assert ledger.verify().ok
    first = claim(ledger, "test", 60)
    assert first is not None and first.id == min(j.id for j in queued)
    assert claim(ledger, "other", 60) is None  # the chain: nothing else while the first is held
    print(f"\nsubmit p50 {statistics.median(submit_ms):.1f} ms p99 {_p99(submit_ms):.1f} ms; "
          f"status p50 {statistics.median(status_ms):.1f} ms p99 {_p99(status_ms):.1f} ms")
    _ = deployment


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


# --------------------------------------------------------------------------------- PostgreSQL


def test_the_service_runs_on_postgresql(pg, tmp_path: Path, tiny_world_dir: Path, tiny_base, tiny_world) -> None:
    url = pg.new_database()
    ledger = Ledger.open(url, key_path=tmp_path / KEY_FILE)
    deployment = _deployment(tmp_path, tiny_world_dir, Path(tiny_base.model.path), verify=False,
                             options={"max_steps": "2", "check_every": "2", "warmup_steps": "1"})
    token = create_token(ledger, "pg", ["submit", "read"])
    client = TestClient(create_app(ServiceConfig(ledger, deployment)))
    people = [s.id for s in tiny_world.people("train")]
    made = client.post("/api/requests", headers=_auth(token), json={"subjects": people[:1]})
    assert made.status_code == 201
    again = client.post("/api/requests", headers=_auth(token), json={"subjects": people[:1]})
    assert again.status_code == 409
    assert run_worker(ledger, deployment, once=True) == 1
    status = client.get(f"/api/requests/{made.json()['request_id']}", headers=_auth(token)).json()
    assert status["state"] == "removed" and status["job"]["state"] == "done"
    assert client.get("/api/audit", headers=_auth(token)).json()["ok"]


# --------------------------------------------------------------------------------- the page


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    pytest.importorskip("selenium", reason="selenium is not installed (the dev extra has it)")
    return browser, driver


def _click_and_wait(driver: object, element: object) -> None:
    """Click, then wait until the page it leads to has replaced the current one (the old page's
    elements go stale), so that what is read next is the new page's."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(element))


def test_the_page_lists_requests_in_a_real_browser(service: dict, tiny_world, tmp_path: Path) -> None:
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    client, tokens, ledger = service["client"], service["tokens"], service["ledger"]
    people = [s.id for s in tiny_world.people("train")]
    ids = [client.post("/api/requests", headers=_auth(tokens["both"]), json={"subjects": [p]}).json()["request_id"]
           for p in people[:3]]
    run_worker(ledger, service["deployment"], once=True)  # serves all three: removed
    options = Options()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    with BackgroundServer(client.app) as server:
        driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
        try:
            driver.get(server.url + "/")
            # No token: the page refuses, and offers the sign-in form.
            assert "no API token" in driver.find_element(By.ID, "error").text
            driver.find_element(By.ID, "token").send_keys("exp_wrong")
            _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))
            assert "not valid" in driver.find_element(By.ID, "error").text
            driver.find_element(By.ID, "token").send_keys(tokens["reader"])
            _click_and_wait(driver, driver.find_element(By.ID, "sign-in"))
            assert driver.find_element(By.ID, "holder").text == "reader"
            rows = driver.find_elements(By.CSS_SELECTOR, "#requests tbody tr")
            listed = {row.get_attribute("data-request"): row.text for row in rows}
            assert set(listed) == set(ids)
            assert all("removed" in text and "done" in text for text in listed.values()), listed
            _click_and_wait(driver, driver.find_element(By.LINK_TEXT, ids[0]))
            assert driver.find_element(By.ID, "request-id").text == ids[0]
            assert driver.find_element(By.ID, "state").text == "removed"
            # The cookie is HTTP-only: the page's scripts cannot read the token.
            assert tokens["reader"] not in driver.execute_script("return document.cookie")
            _click_and_wait(driver, driver.find_element(By.LINK_TEXT, "← all requests"))
            _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button"))
            assert "no API token" in driver.find_element(By.ID, "error").text
        finally:
            driver.quit()


# --------------------------------------------------------------------------------- the commands


def test_the_commands_check_their_inputs_before_serving(tmp_path: Path, tiny_world_dir: Path, tiny_base) -> None:
    from typer.testing import CliRunner

    from expunge.cli import app

    runner = CliRunner()
    db = str(tmp_path / "ledger.sqlite")

    def run(*args: object) -> tuple[int, str]:
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.output

    code, out = run("token", "create", "ops", "--scope", "read", "--scope", "submit", "--db", db, "--json")
    assert code == 0 and json.loads(out)["token"].startswith("exp_")
    code, out = run("token", "create", "ops", "--scope", "read", "--db", db)
    assert code == 2 and "a token named 'ops' exists" in out
    code, out = run("token", "create", "x", "--scope", "write", "--db", db)
    assert code == 2 and "unknown scope 'write'" in out
    code, out = run("token", "list", "--db", db, "--json")
    assert code == 0 and [t["name"] for t in json.loads(out)["tokens"]] == ["ops"] and "exp_" not in out
    code, out = run("token", "revoke", "ops", "--db", db)
    assert code == 0
    code, out = run("token", "revoke", "ops", "--db", db)
    assert code == 2 and "no active token" in out
    ws = tmp_path / "ws"
    for args, says in [(["--port", "0"], "is not a port"), (["--workers", "-1"], "negative"),
                       ([], "holds no deployment yet"),
                       (["--world", tmp_path / "nowhere", "--model", tiny_base.model.path], "nowhere"),
                       (["--world", tiny_world_dir, "--model", tiny_base.model.path, "-o", "max_steps=0"],
                        "max_steps"),
                       (["--world", tiny_world_dir, "--model", tiny_base.model.path, "--method", "shred"], "shred")]:
        code, out = run("serve", "--workspace", ws, "--db", db, *args)
        assert code != 0 and says in out and "Traceback" not in out, (args, out)
        assert len(out.strip().splitlines()) <= 3, out
    # A workspace serves one deployment: other options on a restart are refused, naming them.
    save_deployment(Deployment(workspace=str(ws.resolve()), world=str(tiny_world_dir.resolve()),
                               model=str(Path(tiny_base.model.path).resolve())))
    code, out = run("serve", "--workspace", ws, "--db", db, "--method", "npo")
    assert code == 2 and "differs in: method" in out
    code, out = run("worker", "--workspace", ws, "--db", db, "--once", "--json")
    assert code == 0 and json.loads(out) == {"jobs_ended": 0}
    code, out = run("worker", "--workspace", tmp_path / "empty", "--db", db, "--once")
    assert code == 2 and "no deployment" in out
