"""The provenance ledger (a real SQLite file) and its tamper-evident log.

The tamper tests change the stored log the way an attacker with write access to the database
could: every byte of every event flipped once, each pair of neighbours swapped, each event
deleted, a head re-signed with another key, a consistent rewrite of the chain. Every change must
be caught, and caught at the first event it touched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from expunge.errors import ExpungeError
from expunge.ledger.log import (GENESIS, EventRow, Problem, SigningKey, event_body, event_hash, merkle_root,
                                verify_events)
from expunge.ledger.store import KEY_FILE, LEDGER_FILE, Ledger, RunKind, resolve_url
from expunge.worlds import PrivacyWorldConfig, build_privacy_world


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A new, empty ledger location on each backend, and where its signing key goes."""
    if request.param == "sqlite":
        return resolve_url(tmp_path / LEDGER_FILE), tmp_path / KEY_FILE
    return request.getfixturevalue("pg").new_database(), tmp_path / KEY_FILE


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_privacy_world(tmp_path_factory.mktemp("w") / "w", PrivacyWorldConfig(seed=0, people=8))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _history(ledger: Ledger, world) -> dict[str, str]:
    """A base model trained on everything, an oracle retrained without person 0, and a forget run
    (from the base) that removed person 0; then a second forget run from the first."""
    from expunge.ledger import make_request

    person = world.people("train")[0].id
    first, second = make_request(world, subjects=[person]), make_request(world, documents=[
        d.id for d in world.documents_about([person])][:1])
    train_ids = [d.id for d in world.training_documents()]
    theirs = [d.id for d in world.documents_about([person])]
    others = [d for d in train_ids if d not in theirs]
    shas = {name: _sha(name) for name in ("base", "oracle", "forget", "forget2")}
    with ledger.session() as s:
        ledger.record_model(s, kind=RunKind.TRAIN, world=world, sha256=shas["base"], path="m/base", parent=None,
                            recipe={"preset": "tiny"}, trained=train_ids)
    with ledger.session() as s:
        ledger.record_model(s, kind=RunKind.RETRAIN, world=world, sha256=shas["oracle"], path="m/oracle",
                            parent=None, recipe={"preset": "tiny"}, trained=others, request=first)
    with ledger.session() as s:
        ledger.record_model(s, kind=RunKind.FORGET, world=world, sha256=shas["forget"], path="m/forget",
                            parent=shas["base"], recipe={"method": "simnpo"}, removed=theirs, request=first)
    with ledger.session() as s:
        ledger.record_model(s, kind=RunKind.FORGET, world=world, sha256=shas["forget2"], path="m/forget2",
                            parent=shas["forget"], recipe={"method": "simnpo"}, removed=theirs[:1],
                            request=second)
    return {"person": person, "requests": [first.id, second.id], **shas}


@pytest.fixture()
def ledger(backend: tuple[str, Path], world) -> Ledger:
    url, key = backend
    ledger = Ledger.open(url, key_path=key)
    _history(ledger, world)
    return ledger


# --------------------------------------------------------------------------------------------
# the log, as pure functions


def test_merkle_root_is_rfc6962s() -> None:
    """Hand-computed from RFC 6962 section 2.1: leaves hashed with 0x00, nodes with 0x01, the
    left subtree the largest power of two."""
    sha = lambda b: hashlib.sha256(b).digest()  # noqa: E731
    a, b, c = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    la, lb, lc = (sha(b"\x00" + bytes.fromhex(h)) for h in (a, b, c))
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root([a]) == la.hex()
    assert merkle_root([a, b]) == sha(b"\x01" + la + lb).hex()
    assert merkle_root([a, b, c]) == sha(b"\x01" + sha(b"\x01" + la + lb) + lc).hex()


def _log(n: int, key: SigningKey) -> tuple[list[EventRow], list]:
    rows, heads, prev = [], [], GENESIS
    for seq in range(n):
        body = event_body(seq, f"2026-12-07T00:00:{seq:02d}", "test", f"ref-{seq}", {"value": seq, "text": "é"}, prev)
        rows.append(EventRow(seq, body, prev, event_hash(body)))
        prev = rows[-1].hash
        heads.append(key.sign(seq + 1, merkle_root([r.hash for r in rows]), f"t{seq}"))
    return rows, heads


def test_every_single_byte_change_reordering_and_deletion_is_caught_at_its_event(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "k")
    rows, heads = _log(8, key)
    assert verify_events(rows, heads, key.public).ok
    changes = caught = 0
    for i, row in enumerate(rows):
        for j in range(len(row.body)):
            body = bytearray(row.body)
            body[j] ^= 0x01
            tampered = rows[:i] + [replace(row, body=bytes(body))] + rows[i + 1:]
            check = verify_events(tampered, heads, key.public)
            changes += 1
            caught += (not check.ok and check.seq == i)
        for field_name in ("hash", "prev"):
            for j in range(64):
                value = getattr(row, field_name)
                flipped = value[:j] + ("0" if value[j] != "0" else "1") + value[j + 1:]
                check = verify_events(rows[:i] + [replace(row, **{field_name: flipped})] + rows[i + 1:], heads,
                                      key.public)
                changes += 1
                caught += (not check.ok and check.seq == i)
    assert caught == changes and changes > 8 * 300  # every byte of every event
    for i in range(len(rows) - 1):  # each pair of neighbours swapped
        swapped = rows[:i] + [rows[i + 1], rows[i]] + rows[i + 2:]
        check = verify_events(swapped, heads, key.public)
        assert not check.ok and check.seq == i and check.problem is Problem.OUT_OF_ORDER
        renumbered = [replace(r, seq=k) for k, r in enumerate(swapped)]  # and renumbered to hide it
        check = verify_events(renumbered, heads, key.public)
        assert not check.ok and check.seq == i, check
    for i in range(len(rows)):  # each event deleted
        check = verify_events(rows[:i] + rows[i + 1:], heads, key.public)
        assert not check.ok and check.seq == i, (i, check)


def test_a_rewritten_history_needs_the_key(tmp_path: Path) -> None:
    """An attacker who rewrites event 3 and recomputes every hash after it keeps the chain whole,
    but not the signed heads; re-signing with their own key fails against the ledger's key."""
    key = SigningKey.load_or_create(tmp_path / "k")
    rows, heads = _log(6, key)
    forged, prev = rows[:3], rows[2].hash
    for seq in range(3, 6):
        body = event_body(seq, f"2026-12-07T00:00:{seq:02d}", "test", f"forged-{seq}", {"value": -1}, prev)
        forged.append(EventRow(seq, body, prev, event_hash(body)))
        prev = forged[-1].hash
    check = verify_events(forged, heads, key.public)
    assert not check.ok and check.problem is Problem.HEAD_ROOT_MISMATCH and check.seq == 3
    other = SigningKey(Ed25519PrivateKey.generate())
    resigned = [h if h.size <= 3 else other.sign(h.size, merkle_root([r.hash for r in forged[: h.size]]), h.created_at)
                for h in heads]
    check = verify_events(forged, resigned, key.public)
    assert not check.ok and check.problem is Problem.BAD_SIGNATURE and check.seq == 4
    bad_signature = heads[:2] + [replace(heads[2], signature=base64.b64encode(b"x" * 64).decode())] + heads[3:]
    assert verify_events(rows, bad_signature, key.public).problem is Problem.BAD_SIGNATURE


def test_a_cut_back_log_is_caught_only_against_a_head_kept_outside(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "k")
    rows, heads = _log(5, key)
    assert verify_events(rows[:4], heads, key.public).problem is Problem.HEAD_BEYOND_LOG  # the heads count it
    assert verify_events(rows[:4], heads[:4], key.public).ok  # event and head both gone: a valid older log
    check = verify_events(rows[:4], heads[:4], key.public, expect_head=heads[4])
    assert not check.ok and check.problem is Problem.UNEXPECTED_HEAD
    assert verify_events(rows, heads, key.public, expect_head=heads[2]).ok  # a later log contains older heads
    assert verify_events(rows, heads[:3], key.public).problem is Problem.UNSIGNED_TAIL


# --------------------------------------------------------------------------------------------
# the ledger on a real SQLite file


def test_the_ledger_verifies_and_tampering_in_the_database_is_caught(ledger: Ledger) -> None:
    from sqlalchemy import text

    check = ledger.verify()
    assert check.ok and check.events == check.heads >= 5 and check.root == ledger.head().root
    with ledger.engine.begin() as db:  # the oracle's event now names another directory
        seq, body = next((k, bytes(b)) for k, b in db.execute(text("SELECT seq, body FROM events ORDER BY seq"))
                         if b'"path":"m/oracle"' in bytes(b))
        db.execute(text("UPDATE events SET body = :b WHERE seq = :s"),
                   {"b": body.replace(b'"path":"m/oracle"', b'"path":"m/elsewhere"'), "s": seq})
    check = ledger.verify()
    assert not check.ok and check.seq == seq and check.problem is Problem.HASH_MISMATCH
    with ledger.engine.begin() as db:
        db.execute(text("UPDATE events SET body = :b WHERE seq = :s"), {"b": body, "s": seq})
        db.execute(text("DELETE FROM events WHERE seq = 1"))
    check = ledger.verify()
    assert not check.ok and check.seq == 1


def test_which_models_contain_a_subject(ledger: Ledger, world) -> None:
    """The base model trained on the person; the forget runs descend from it and say they removed
    them (a claim, listed with the version); the oracle never saw them."""
    ids = _history(ledger, world)  # recording the same versions again changes nothing
    found = {m.sha256: m for m in ledger.models_with_subject(ids["person"])}
    assert set(found) == {ids["base"], ids["forget"], ids["forget2"]}
    assert found[ids["base"]].how == "trained" and found[ids["base"]].removed_by == []
    assert found[ids["forget"]].how == "inherited" and found[ids["forget"]].through == [ids["base"]]
    first, second = ids["requests"]
    assert [r["request"] for r in found[ids["forget"]].removed_by] == [first]
    assert found[ids["forget2"]].through == [ids["forget"], ids["base"]]
    assert [r["request"] for r in found[ids["forget2"]].removed_by] == [second, first]
    other = world.people("train")[1].id
    assert {m.sha256 for m in ledger.models_with_subject(other)} == {ids[n] for n in ("base", "oracle", "forget",
                                                                                     "forget2")}
    assert ledger.models_with_subject("person-9999") == [] and not ledger.subject_known("person-9999")
    # one corpus; four models; two requests, each received and located; the oracle and the first
    # forget run removed the first (two events), the second run the second: nothing twice
    assert ledger.verify().events == 1 + 4 + 2 * 2 + 3
    assert {r["request_id"]: r["state"] for r in ledger.requests()} == {first: "removed", second: "removed"}


def test_a_request_moves_only_as_its_lifecycle_allows(ledger: Ledger, world) -> None:
    """received -> located (recorded) -> removed (by the forget run, in _history) -> verified or
    failed by the evidence; certified only after verified; every move an event."""
    from expunge.ledger.store import RequestState

    first, _ = _history(ledger, world)["requests"]
    with ledger.session() as s:
        ledger.record_verification(s, first, model=_sha("forget"), original=_sha("base"), oracle=_sha("oracle"),
                                   forgotten="no", summary={"checks": []})
    assert {r["request_id"]: r["state"] for r in ledger.requests()}[first] == "failed"
    with pytest.raises(ExpungeError, match="is failed: it cannot become certified .allowed: failed, fallback, removed, verified."):
        with ledger.session() as s:
            ledger.transition(s, first, RequestState.CERTIFIED, {})
    with ledger.session() as s:
        ledger.transition(s, first, RequestState.FALLBACK, {"guard": "on"})
        ledger.transition(s, first, RequestState.REMOVED, {"model": "another attempt"})
        ledger.record_verification(s, first, model=_sha("forget3"), original=_sha("base"), oracle=None,
                                   forgotten="yes", summary={"checks": []})
        ledger.transition(s, first, RequestState.CERTIFIED, {"certificate": "…"})
    events, _ = ledger.rows()
    import json

    moves = [json.loads(e.body)["kind"] for e in events if json.loads(e.body)["ref"] == f"request:{first}"]
    assert moves == ["request.received", "request.located", "request.removed", "request.removed", "request.failed",
                     "request.fallback", "request.removed", "request.verified", "request.certified"]
    with pytest.raises(ExpungeError, match="not in the ledger"):
        with ledger.session() as s:
            ledger.transition(s, "req-unknown", RequestState.REMOVED, {})
    assert ledger.verify().ok


def test_a_run_naming_documents_outside_its_world_is_refused(ledger: Ledger, world) -> None:
    events = ledger.verify().events
    with pytest.raises(ExpungeError, match="not in world"):
        with ledger.session() as s:
            ledger.record_model(s, kind=RunKind.TRAIN, world=world, sha256=_sha("x"), path="m/x", parent=None,
                                recipe={}, trained=["doc-999999"])
    assert ledger.verify().events == events  # rolled back: no row, no event


def test_opening_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ExpungeError, match="no ledger at"):
        Ledger.open(resolve_url(tmp_path / "none.sqlite"), create=False)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(ExpungeError, match="not an expunge ledger .*customers"):
        Ledger.open(resolve_url(foreign))
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all " * 50)
    with pytest.raises(ExpungeError, match="not a database"):
        Ledger.open(resolve_url(text))
    with pytest.raises(ExpungeError, match="is a directory"):
        Ledger.open(resolve_url(tmp_path))
    newer = tmp_path / "newer"
    Ledger.open(resolve_url(newer / LEDGER_FILE))
    with sqlite3.connect(newer / LEDGER_FILE) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(ExpungeError, match="newer expunge"):
        Ledger.open(resolve_url(newer / LEDGER_FILE))
    assert (newer / KEY_FILE).stat().st_mode & 0o077 == 0  # the signing key is the owner's alone
    keyless = tmp_path / "keyless"
    ledger = Ledger.open(resolve_url(keyless / LEDGER_FILE))
    with ledger.session() as s:
        ledger.append(s, "test", "x", {})
    (keyless / KEY_FILE).unlink()
    with pytest.raises(ExpungeError, match="signing key .* is missing"):
        Ledger.open(resolve_url(keyless / LEDGER_FILE))


def test_where_the_ledger_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--db beats $EXPUNGE_DB, which beats the workspace's (or the current directory's) file."""
    monkeypatch.delenv("EXPUNGE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_url(None) == f"sqlite:///{tmp_path / LEDGER_FILE}"
    assert resolve_url(None, tmp_path / "ws") == f"sqlite:///{tmp_path / 'ws' / LEDGER_FILE}"
    monkeypatch.setenv("EXPUNGE_DB", "postgresql://expunge@db/ledger")
    assert resolve_url(None, tmp_path / "ws") == "postgresql://expunge@db/ledger"
    assert resolve_url("l.sqlite") == f"sqlite:///{tmp_path / 'l.sqlite'}"


def test_a_postgresql_database_of_something_else_is_refused(pg, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = pg.new_database()
    with create_engine(url).begin() as db:
        db.execute(text("CREATE TABLE customers (id INTEGER)"))
    with pytest.raises(ExpungeError, match="not an expunge ledger .*customers"):
        Ledger.open(url, key_path=tmp_path / "k")
    with pytest.raises(ExpungeError, match="no signing key"):
        Ledger.open(pg.new_database())  # no file to put a key beside: it must be named
    import json

    from typer.testing import CliRunner

    from expunge.cli import app

    url = pg.new_database()
    ledger = Ledger.open(url, key_path=tmp_path / "k")
    with ledger.session() as s:
        ledger.append(s, "test", "x", {"n": 1})
    verified = CliRunner().invoke(app, ["ledger", "verify", "--db", url, "--key", str(tmp_path / "k"), "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["events"] == 1 and "expunge@" in json.loads(verified.stdout)["ledger"]


def test_a_locked_ledger_says_so(tmp_path: Path) -> None:
    ledger = Ledger.open(resolve_url(tmp_path / LEDGER_FILE), busy_timeout=0.2)
    holder = sqlite3.connect(tmp_path / LEDGER_FILE, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ExpungeError, match="locked by another process"):
            with ledger.session() as s:
                ledger.append(s, "test", "x", {})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with ledger.session() as s:
        ledger.append(s, "test", "x", {})
    assert ledger.verify().ok and ledger.verify().events == 1


# --------------------------------------------------------------------------------------------
# the commands


def test_writing_commands_record_their_models_and_the_ledger_answers(tmp_path: Path, tiny_world_dir,
                                                                     tiny_world, tiny_request_path) -> None:
    """`train` and `forget` record their versions (before the version appears); `ledger models`
    names who holds a subject's data; `ledger verify` passes, then catches a changed event and a
    head kept outside that the log no longer holds."""
    import json

    from typer.testing import CliRunner

    from expunge.cli import app
    from expunge.ledger import load_request

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    db = tmp_path / "ledger.sqlite"
    trained = run("train", "--world", tiny_world_dir, "--out", tmp_path / "base", "--preset", "tiny", "--db", db,
                  "--json")
    assert trained.exit_code == 0, trained.output
    forgot = run("forget", "--model", tmp_path / "base", "--world", tiny_world_dir, "--request", tiny_request_path,
                 "--out", tmp_path / "f", "-o", "max_steps=2", "-o", "warmup_steps=0", "-o", "early_stop=false",
                 "--db", db, "--json")
    assert forgot.exit_code == 0, forgot.output
    base_sha = json.loads(trained.stdout)["model"]["sha256"]
    forget_sha = json.loads(forgot.stdout)["model"]["sha256"]
    request = load_request(tiny_request_path, tiny_world)
    listed = run("ledger", "models", "--subject", request.targets[0], "--db", db, "--json")
    assert listed.exit_code == 0, listed.output
    models = {m["sha256"]: m for m in json.loads(listed.stdout)["models"]}
    assert set(models) == {base_sha, forget_sha}
    assert models[base_sha]["how"] == "trained" and models[base_sha]["path"] == str((tmp_path / "base").resolve())
    assert models[forget_sha]["how"] == "inherited" and models[forget_sha]["through"] == [base_sha]
    assert [r["request"] for r in models[forget_sha]["removed_by"]] == [request.id]
    unknown = run("ledger", "models", "--subject", "person-9999", "--db", db)
    assert unknown.exit_code == 2 and "person-9999" in unknown.stderr and "\n" not in unknown.stderr.strip()

    # The request went through its lifecycle: recorded when the forget run served it, removed by it;
    # a verification then moves it on (no oracle here: the verdict decides verified or failed).
    checked = run("verify", "--model", tmp_path / "f", "--original", tmp_path / "base", "--world", tiny_world_dir,
                  "--request", tiny_request_path, "--db", db, "--max-facts", "4", "--json")
    assert checked.exit_code == 0, checked.output
    forgotten = json.loads(checked.stdout)["verification"]["candidates"]["f"]["verdict"]["forgotten"]
    states = json.loads(run("ledger", "requests", "--db", db, "--json").stdout)["requests"]
    assert [(r["request_id"], r["state"]) for r in states] == [
        (request.id, "verified" if forgotten == "yes" else "failed")]
    events, _ = Ledger.open(resolve_url(db), create=False).rows()
    kinds = [json.loads(e.body)["kind"] for e in events]
    assert kinds == ["corpus.recorded", "model.recorded", "request.received", "request.located", "model.recorded",
                     "request.removed", "request.verified" if forgotten == "yes" else "request.failed"]
    verified = run("ledger", "verify", "--db", db, "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["events"] == len(kinds)
    head = run("ledger", "head", "--db", db, "--json")
    (tmp_path / "head.json").write_text(head.stdout)
    assert run("ledger", "verify", "--db", db, "--expect-head", tmp_path / "head.json").exit_code == 0
    key = run("ledger", "key", "--db", db)
    (tmp_path / "public.pem").write_text(key.stdout)
    assert "BEGIN PUBLIC KEY" in key.stdout
    assert run("ledger", "verify", "--db", db, "--public-key", tmp_path / "public.pem").exit_code == 0

    with sqlite3.connect(db) as conn:  # the forget run's event now claims another request
        body = conn.execute("SELECT body FROM events WHERE seq = 4").fetchone()[0]
        conn.execute("UPDATE events SET body = ? WHERE seq = 4", (body.replace(request.id.encode(), b"req-000000"),))
    tampered = run("ledger", "verify", "--db", db)
    assert tampered.exit_code == 1 and "hash_mismatch at event 4" in tampered.stderr
    last = len(kinds) - 1
    with sqlite3.connect(db) as conn:  # put it back, then cut the last event and its head
        conn.execute("UPDATE events SET body = ? WHERE seq = 4", (body,))
        conn.execute("DELETE FROM events WHERE seq = ?", (last,))
        conn.execute("DELETE FROM tree_heads WHERE size = ?", (last + 1,))
    assert run("ledger", "verify", "--db", db).exit_code == 0  # a valid older log, by itself
    cut = run("ledger", "verify", "--db", db, "--expect-head", tmp_path / "head.json")
    assert cut.exit_code == 1 and "unexpected_head" in cut.stderr
    missing = run("ledger", "verify", "--db", tmp_path / "none.sqlite")
    assert missing.exit_code == 2 and "no ledger at" in missing.stderr


def test_an_import_records_its_corpus_and_a_bad_ledger_stops_it_before_any_work(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from expunge.cli import app

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    book = tmp_path / "book.txt"
    book.write_text(" ".join(f"Sentence number {i} of the story tells what Ada Lovelace did next." for i in range(60)))
    db = tmp_path / "ledger.sqlite"
    done = run("import", "text", "--file", book, "--title", "Ada", "--out", tmp_path / "w", "--db", db, "--json")
    assert done.exit_code == 0, done.output
    fingerprint = json.loads(done.stdout)["fingerprint"]
    ledger = Ledger.open(resolve_url(db), create=False)
    events, _ = ledger.rows()
    assert [json.loads(e.body)["kind"] for e in events] == ["corpus.recorded"]
    assert json.loads(events[0].body)["payload"]["fingerprint"] == fingerprint
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    refused = run("import", "text", "--file", book, "--title", "Ada", "--out", tmp_path / "w2", "--db", foreign)
    assert refused.exit_code == 2 and "not an expunge ledger" in refused.stderr
    assert not (tmp_path / "w2").exists()


def test_an_older_ledger_is_upgraded_with_its_log_intact(tmp_path: Path) -> None:
    """A ledger at the first schema revision (before requests) opens at the current one, and what
    its log held still verifies."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect

    import expunge.ledger.store as store

    url = resolve_url(tmp_path / LEDGER_FILE)
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    assert "requests" not in inspect(engine).get_table_names()
    old = Ledger(url, engine, SigningKey.load_or_create(tmp_path / KEY_FILE))
    with old.session() as s:
        old.append(s, "test", "before", {"n": 1})
    ledger = Ledger.open(url)
    assert {"requests", "verifications"} <= set(inspect(ledger.engine).get_table_names())
    assert ledger.verify().ok and ledger.verify().events == 1


# --------------------------------------------------------------------------------------------
# certificates


def _verified(ledger: Ledger, world) -> tuple[str, dict[str, str]]:
    ids = _history(ledger, world)
    first = ids["requests"][0]
    checks = [{"name": "forget exact match", "policy_key": "forget_exact_match", "question": "forgotten",
               "value": 0.02, "reference": 0.03, "rule": "<= oracle + 0.05", "status": "pass", "decisive": True,
               "interval": None},
              {"name": "relearning", "policy_key": "relearning", "question": "forgotten", "value": 0.1,
               "reference": 0.08, "rule": "<= oracle + 0.1", "status": "pass", "decisive": True, "interval": None}]
    summary = {"model": {"path": "m/forget", "sha256": ids["forget"]}, "reference": "oracle", "oracle_trusted": True,
               "config": {"policy": {"name": "default", "checks": {}}, "attacks": True},
               "verdict": {"forgotten": "yes", "collateral_damage": "none", "confidence": "high",
                           "summary": "indistinguishable from the oracle",
                           "reasons": ["not tried: indirect: roleplay, attack: logit_lens — a pass here is not a pass"]},
               "checks": checks, "attacks_tried": ["relearning"],
               "code": {"package": "expunge", "version": "0.1.0", "source_sha256": "ab" * 32}}
    with ledger.session() as s:
        ledger.record_verification(s, first, model=ids["forget"], original=ids["base"], oracle=ids["oracle"],
                                   forgotten="yes", summary=summary)
    return first, ids


def test_a_certificate_holds_the_evidence_and_any_change_breaks_its_signature(ledger: Ledger, world,
                                                                              tmp_path: Path) -> None:
    from expunge.ledger.certificate import THREAT_MODEL, check_certificate, issue_certificate
    from expunge.report.certificate import certificate_html

    request_id, ids = _verified(ledger, world)
    certificate = issue_certificate(ledger, request_id)
    assert certificate["models"]["input_sha256"] == ids["base"]  # the removal's parent
    assert certificate["models"]["output_sha256"] == ids["forget"]
    assert certificate["models"]["verified_against"]["oracle_sha256"] == ids["oracle"]
    assert certificate["models"]["removal"]["run"] == "forget"
    assert certificate["data"]["corpus_fingerprint"] == world.fingerprint
    assert [c["result"] for c in certificate["checks"]] == ["pass", "pass"]
    assert certificate["checks"][0]["value"] == 0.02 and certificate["checks"][0]["reference"] == 0.03
    assert certificate["attacks"] == {"tried": ["relearning"], "not_tried": ["indirect: roleplay", "attack: logit_lens"]}
    assert certificate["verdict"]["forgotten"] == "yes" and certificate["threat_model"] == THREAT_MODEL
    assert "not proof" in THREAT_MODEL and "procedure" in THREAT_MODEL
    assert certificate["ledger_head"]["size"] == ledger.head().size - 1  # the head before its own event
    assert check_certificate(certificate, ledger.key.public)
    # Any change to what it says breaks the signature; another key does not verify it.
    for path in (("verdict", "forgotten"), ("models", "output_sha256"), ("checks", 0, "value"), ("threat_model",)):
        changed = json.loads(json.dumps(certificate))
        target = changed
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = "no" if path[-1] == "forgotten" else ("x" if isinstance(target[path[-1]], str) else 0.5)
        assert not check_certificate(changed, ledger.key.public), path
    assert not check_certificate(certificate, SigningKey(Ed25519PrivateKey.generate()).public)
    assert {r["request_id"]: r["state"] for r in ledger.requests()}[request_id] == "certified"
    page = certificate_html(certificate)
    assert ids["forget"] in page and "forget exact match" in page and "not proof" in page and "relearning" in page
    with pytest.raises(ExpungeError, match="certified, not verified"):
        issue_certificate(ledger, request_id)  # once verified, certified once
    assert ledger.verify().ok


def test_certify_refuses_what_was_not_verified_and_writes_signed_files(ledger: Ledger, world, tmp_path: Path,
                                                                       backend) -> None:
    from typer.testing import CliRunner

    from expunge.cli import app

    url, key = backend
    second = _history(ledger, world)["requests"][1]

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    refused = run("certify", second, "--out", tmp_path / "c.json", "--db", url, "--key", key)
    assert refused.exit_code == 2 and "is removed, not verified" in refused.stderr
    assert not (tmp_path / "c.json").exists()
    first, _ = _verified(ledger, world)
    done = run("certify", first, "--out", tmp_path / "c.json", "--html", tmp_path / "c.html", "--db", url,
               "--key", key)
    assert done.exit_code == 0, done.output
    assert "Deletion certificate" in (tmp_path / "c.html").read_text()
    public = tmp_path / "pub.pem"
    public.write_text(run("ledger", "key", "--db", url, "--key", key).stdout)
    assert run("ledger", "check-certificate", tmp_path / "c.json", "--public-key", public).exit_code == 0
    data = json.loads((tmp_path / "c.json").read_text())
    data["verdict"]["confidence"] = "low"
    (tmp_path / "changed.json").write_text(json.dumps(data))
    changed = run("ledger", "check-certificate", tmp_path / "changed.json", "--public-key", public)
    assert changed.exit_code == 1 and "does not verify" in changed.stderr
    again = run("certify", first, "--out", tmp_path / "c.json", "--db", url, "--key", key)
    assert again.exit_code == 2 and "already exists" in again.stderr
