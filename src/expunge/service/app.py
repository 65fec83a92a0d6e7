"""``expunge serve``: the deletion-request service, a thin FastAPI layer over the ledger and the queue.

Every route needs a token (``Authorization: Bearer exp_…``; the web page takes it once through its
sign-in form and keeps it in an HTTP-only cookie). Scopes: ``submit`` to file requests, ``read``
for everything that reads, ``admin`` for all and for tokens. Answers that are not 2xx are JSON
``{"error": what is wrong, "fix": what to do}`` (the page's are short HTML); a refused request
leaves the ledger as it was: validation happens before the one transaction that records.

Endpoints (all under ``/api`` are JSON):

- ``POST /api/requests`` (submit): ``{"subjects": [...], "documents": [...], "basis": "...",
  "route": "forget"}`` -> 201 with the request id and its job; 409 for a request the ledger has.
- ``GET /api/requests`` / ``GET /api/requests/{id}`` (read): states, jobs, verdicts.
- ``GET /api/requests/{id}/certificate`` (read): the signed certificate (409 until certified).
- ``GET /api/provenance?subject=ID`` (read): which model versions hold the subject's data.
- ``GET /api/audit`` (read): the log recomputed (:meth:`expunge.ledger.store.Ledger.verify`).
- ``GET/POST /api/tokens``, ``DELETE /api/tokens/{name}`` (admin).
- ``GET /`` and ``GET /requests/{id}`` (read): the web page; ``POST /login``, ``POST /logout``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the deletion-request service needs FastAPI and uvicorn: pip install 'expunge[service]'") \
        from exc
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from expunge.errors import ExpungeError
from expunge.ledger.store import Ledger, RequestRow, VerificationRow
from expunge.service.auth import Scope, TokenInfo, authenticate, create_token, list_tokens, revoke_token
from expunge.service.queue import DuplicateRequest, Route, enqueue, job_for, jobs, queue_position
from expunge.service.worker import Deployment

__all__ = ["create_app", "ServiceConfig", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024
MAX_TARGETS = 1000
COOKIE = "expunge_token"
_FIELDS = {"subjects", "documents", "basis", "route"}


@dataclass(frozen=True)
class ServiceConfig:
    """What ``create_app`` serves: the open ledger and the deployment whose world requests name."""

    ledger: Ledger
    deployment: Deployment


class ApiError(Exception):
    def __init__(self, status: int, error: str, fix: str) -> None:
        super().__init__(error)
        self.status, self.error, self.fix = status, error, fix


def create_app(config: ServiceConfig) -> FastAPI:
    from expunge.worlds import load_world

    ledger, deployment = config.ledger, config.deployment
    world = load_world(deployment.world)  # once: every submission is checked against it
    pages = Environment(loader=PackageLoader("expunge.service", "templates"), autoescape=select_autoescape())
    # No interactive docs: they would be routes that answer without a token.
    app = FastAPI(title="expunge", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        if _wants_page(request):
            page = pages.get_template("error.html").render(status=exc.status, error=exc.error, fix=exc.fix,
                                                           login=exc.status == 401)
            return HTMLResponse(page, status_code=exc.status)
        return JSONResponse({"error": exc.error, "fix": exc.fix}, status_code=exc.status)

    async def _no_route(request: Request, exc: Exception) -> Response:
        # Unknown paths and methods are named only to a caller with a token: without one,
        # everything is 401.
        if _holder(ledger, request) is None:
            return await _api_error(request, _unauthorized(request))
        status = getattr(exc, "status_code", 404)
        what = "no such endpoint" if status == 404 else "method not allowed"
        return await _api_error(request, ApiError(status, f"{what}: {request.method} {request.url.path}",
                                                  "see the endpoints in the README (The deletion-request service)"))

    app.add_exception_handler(404, _no_route)
    app.add_exception_handler(405, _no_route)

    def need(request: Request, scope: Scope) -> TokenInfo:
        holder = _holder(ledger, request)
        if holder is None:
            raise _unauthorized(request)
        if not holder.allows(scope):
            raise ApiError(403, f"token {holder.name!r} lacks the {scope} scope (it has: "
                                f"{', '.join(sorted(holder.scopes))})", f"use a token with the {scope} scope")
        return holder

    # ------------------------------------------------------------------------------- API

    @app.post("/api/requests", status_code=201)
    async def submit(request: Request) -> Response:
        holder = need(request, Scope.SUBMIT)
        body = await _json_body(request)
        deletion, route = _deletion_request(world, body)
        try:
            job = enqueue(ledger, deletion, route, holder.name)
        except DuplicateRequest as exc:
            raise ApiError(409, exc.problem, exc.fix) from None
        return JSONResponse({"request_id": deletion.id, "job": job.id, "state": "located", "route": str(route),
                             "documents": len(deletion.document_ids), "status": f"/api/requests/{deletion.id}"},
                            status_code=201)

    @app.get("/api/requests")
    def list_requests(request: Request) -> Response:
        need(request, Scope.READ)
        return JSONResponse({"requests": _overview(ledger)})

    @app.get("/api/requests/{request_id}")
    def request_status(request_id: str, request: Request) -> Response:
        need(request, Scope.READ)
        return JSONResponse(_detail(ledger, request_id))

    @app.get("/api/requests/{request_id}/certificate")
    def certificate(request_id: str, request: Request) -> Response:
        need(request, Scope.READ)
        detail = _detail(ledger, request_id)
        found = ((detail.get("job") or {}).get("result") or {}).get("certificate")
        if found is None:
            raise ApiError(409, f"request {request_id} has no certificate (it is {detail['state']})",
                           "a certificate is issued once a removal is verified forgotten; check its status")
        return JSONResponse(found, headers={"Content-Disposition": f'attachment; filename="{request_id}.json"'})

    @app.get("/api/provenance")
    def provenance(request: Request, subject: str | None = None) -> Response:
        need(request, Scope.READ)
        if not subject:
            raise ApiError(400, "the subject query parameter is missing", "ask /api/provenance?subject=ID")
        if len(subject) > 128 or not ledger.subject_known(subject):
            raise ApiError(404, f"subject {subject[:64]!r} is in no corpus of the ledger",
                           "use a subject id of the deployment's world")
        return JSONResponse({"subject": subject,
                             "models": [m.to_dict() for m in ledger.models_with_subject(subject)]})

    @app.get("/api/audit")
    def audit(request: Request) -> Response:
        need(request, Scope.READ)
        check = ledger.verify()
        head = ledger.head()
        return JSONResponse({**check.to_dict(), "head": None if head is None else head.to_dict()})

    @app.get("/api/tokens")
    def tokens(request: Request) -> Response:
        need(request, Scope.ADMIN)
        return JSONResponse({"tokens": [t.to_dict() for t in list_tokens(ledger)]})

    @app.post("/api/tokens", status_code=201)
    async def new_token(request: Request) -> Response:
        need(request, Scope.ADMIN)
        body = await _json_body(request)
        extra = set(body) - {"name", "scopes"}
        if extra or not isinstance(body.get("name"), str) or not isinstance(body.get("scopes"), list) \
                or not all(isinstance(s, str) for s in body["scopes"]):
            raise ApiError(422, "a token needs a name (string) and scopes (a list of strings), nothing else"
                           + (f"; unknown fields: {', '.join(sorted(extra))}" if extra else ""),
                           'send {"name": "ci", "scopes": ["read"]}')
        token = _library(lambda: create_token(ledger, body["name"], body["scopes"]))
        return JSONResponse({"name": body["name"], "token": token}, status_code=201)

    @app.delete("/api/tokens/{name}")
    def delete_token(name: str, request: Request) -> Response:
        need(request, Scope.ADMIN)
        _library(lambda: revoke_token(ledger, name), status=404)
        return JSONResponse({"revoked": name})

    # ------------------------------------------------------------------------------- the page

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        holder = need(request, Scope.READ)
        rows = _overview(ledger)
        states: dict[str, int] = {}
        for row in rows:
            states[row["state"]] = states.get(row["state"], 0) + 1
        return HTMLResponse(pages.get_template("requests.html").render(
            rows=rows, states=sorted(states.items()), holder=holder, deployment=deployment,
            can_submit=holder.allows(Scope.SUBMIT)))

    @app.get("/requests/{request_id}", response_class=HTMLResponse)
    def request_page(request_id: str, request: Request) -> Response:
        need(request, Scope.READ)
        detail = _detail(ledger, request_id)
        return HTMLResponse(pages.get_template("request.html").render(r=detail, json=json))

    @app.post("/login")
    async def login(request: Request) -> Response:
        # The one route that takes its token in the body: whatever does not carry a valid one is
        # answered as every route answers a missing token.
        try:
            form = await _form(request)
        except ApiError as exc:
            if exc.status == 413:
                raise
            form = {}
        holder = authenticate(ledger, form.get("token", ""))
        if holder is None and not form.get("token"):
            raise _unauthorized(request)
        if holder is None:
            raise ApiError(401, "that token is not valid (unknown or revoked)", "paste an API token with the read "
                           "scope (`expunge token create NAME --scope read`)")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, form["token"], httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        need(request, Scope.READ)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return app


# --------------------------------------------------------------------------------- helpers


def _holder(ledger: Ledger, request: Request) -> TokenInfo | None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    if token is None and (request.method == "GET" or request.url.path == "/logout"):
        # The page's cookie counts for reading only: a cross-site form cannot submit with it.
        token = request.cookies.get(COOKIE)
    return authenticate(ledger, token)


def _unauthorized(request: Request) -> ApiError:
    given = "authorization" in request.headers or COOKIE in request.cookies
    return ApiError(401, "the token is not valid (unknown or revoked)" if given else "no API token was given",
                    "send 'Authorization: Bearer exp_…' with a token from `expunge token create`")


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes", "send a smaller request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes", "send a smaller request")
    return bytes(body)


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)", "send a JSON object")
    raw = await _read_capped(request)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", "send a JSON object, e.g. "
                       '{"subjects": ["person-0003"]}') from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body is JSON but not an object (it is {type(body).__name__})",
                       'send a JSON object, e.g. {"subjects": ["person-0003"]}')
    return body


async def _form(request: Request) -> dict[str, str]:
    from urllib.parse import parse_qs

    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ApiError(415, "the sign-in form must be sent as a form", "use the page's sign-in form")
    raw = await _read_capped(request)
    try:
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), max_num_fields=4).items()}
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the form cannot be read ({exc})", "use the page's sign-in form") from None


def _ids(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 128 for v in value):
        raise ApiError(422, f"field {name!r} must be a list of ids (strings of 1-128 characters)",
                       f'send e.g. {{"{name}": ["…"]}}')
    if len(value) > MAX_TARGETS:
        raise ApiError(422, f"field {name!r} lists {len(value)} ids; at most {MAX_TARGETS} per request",
                       "split the request")
    return value


def _deletion_request(world: Any, body: dict[str, Any]) -> tuple[Any, Route]:
    from expunge.ledger.requests import make_request

    unknown = set(body) - _FIELDS
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(sorted(unknown))}",
                       f"send only {', '.join(sorted(_FIELDS))}")
    subjects, documents = _ids(body, "subjects"), _ids(body, "documents")
    basis = body.get("basis", "")
    if not isinstance(basis, str) or len(basis) > 2000:
        raise ApiError(422, "field 'basis' must be a string of at most 2000 characters", "shorten it")
    try:
        route = Route(body.get("route", Route.FORGET))
    except ValueError:
        raise ApiError(422, f"unknown route {body.get('route')!r}", f"use one of {', '.join(Route)}") from None
    deletion = _library(lambda: make_request(world, subjects=subjects, documents=documents, basis=basis))
    return deletion, route


def _library(call: Callable[[], Any], status: int = 422) -> Any:
    """A library call whose ExpungeError is the caller's mistake: its message becomes the answer."""
    try:
        return call()
    except ExpungeError as exc:
        raise ApiError(status, exc.problem, exc.fix) from None


def _overview(ledger: Ledger) -> list[dict[str, Any]]:
    by_request = {j.request_id: j for j in jobs(ledger)}
    verdicts: dict[str, str] = {}
    with Session(ledger.engine) as session:
        for request_id, forgotten in session.execute(select(VerificationRow.request_id, VerificationRow.forgotten)
                                                     .order_by(VerificationRow.id)):
            verdicts[request_id] = forgotten
    out = []
    for row in ledger.requests():
        job = by_request.get(row["request_id"])
        out.append({**row, "verdict": verdicts.get(row["request_id"]),
                    "job": None if job is None else {"id": job.id, "state": str(job.state), "route": str(job.route),
                                                     "attempts": job.attempts}})
    return out


def _detail(ledger: Ledger, request_id: str) -> dict[str, Any]:
    if len(request_id) > 64:
        raise ApiError(404, "no such request", "request ids look like req-0123456789ab")
    with Session(ledger.engine) as session:
        row = session.scalars(select(RequestRow).where(RequestRow.request_id == request_id)).first()
        if row is None:
            raise ApiError(404, f"request {request_id} is not in the ledger", "list the requests: GET /api/requests")
        verifications = [{"model_sha256": v.model_sha256, "forgotten": v.forgotten, "created_at": v.created_at,
                          "verdict": (v.summary or {}).get("verdict", {}).get("summary"),
                          "reference": (v.summary or {}).get("reference"),
                          "checks": [{"name": c.get("name"), "value": c.get("value"),
                                      "reference": c.get("reference"), "status": c.get("status")}
                                     for c in (v.summary or {}).get("checks", [])]}
                         for v in session.scalars(select(VerificationRow).where(VerificationRow.request_id == request_id)
                                                  .order_by(VerificationRow.id))]
        detail = {"request_id": row.request_id, "kind": row.kind, "state": row.state, "targets": row.targets,
                  "corpus": row.corpus, "created_at": row.created_at, "updated_at": row.updated_at,
                  "verifications": verifications}
    job = job_for(ledger, request_id)
    detail["job"] = None if job is None else {**job.to_dict(), "queue_position": queue_position(ledger, job)}
    return detail

