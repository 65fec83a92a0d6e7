"""Sharded training with exact deletion (SISA with LoRA adapters): the assignment, bit-exact
deletion against training from the start without the data, the base's data refused, the ledger's
shard rows, resuming, the ensembles' equivalences and the sharded model's integrity checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from expunge.cli import app
from expunge.errors import ExpungeError
from expunge.ledger.recording import recording
from expunge.ledger.requests import make_request, write_request
from expunge.ledger.store import Ledger, RequestState, resolve_url
from expunge.models.io import load_model
from expunge.models.sharded import Combine, ShardEnsemble, is_sharded, load_adapter_state, load_sharded
from expunge.presets import Preset, registered_preset
from expunge.recipe import ModelPreset, TrainingConfig, TrainingLength
from expunge.sharding import ShardingConfig, assign_shards, base_documents, delete_from_shards, train_sharded
from expunge.worlds import PrivacyWorldConfig, build_privacy_world, load_world

# Small enough that a sharded training takes seconds: the properties tested here (exactness,
# records, refusals) do not depend on how well the shards learn.
SHARD_TEST = Preset(
    name="shard-test",
    model=ModelPreset(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
    training=TrainingConfig(max_steps=12, batch_size=32, learning_rate=5e-3, warmup_steps=2, weight_decay=0.0,
                            log_every=4, checkpoint_every=4),
    length=TrainingLength(max_epochs=2),
    max_length=48,
)


@pytest.fixture(scope="module", autouse=True)
def shard_preset():
    with registered_preset(SHARD_TEST):
        yield


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sharding") / "world"
    build_privacy_world(out, PrivacyWorldConfig(seed=3, people=12, public_people=6))
    return out


@pytest.fixture(scope="module")
def world(world_dir: Path):
    return load_world(world_dir)


@pytest.fixture(scope="module")
def request_path(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sharding") / "request.json"
    write_request(make_request(world, subjects=[world.people("train")[0].id]), path)
    return path


@pytest.fixture(scope="module")
def sharded(world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sharding") / "sharded"
    return train_sharded(world_dir, out, sharding=ShardingConfig(shards=3, lora_rank=4), preset="shard-test",
                         seed=0, progress=False)


def test_assignment_puts_each_subject_in_one_balanced_shard(world) -> None:
    assignment = assign_shards(world, 3, seed=0)
    assert set(assignment) == {s.id for s in world.deletable("train")}
    assert set(assignment.values()) == {0, 1, 2}
    load = [0, 0, 0]
    per_subject = {s: len(world.documents_about([s])) for s in assignment}
    for subject, shard in assignment.items():
        load[shard] += per_subject[subject]
    assert max(load) - min(load) <= max(per_subject.values())  # greedy by documents
    assert assign_shards(world, 3, seed=0) == assignment  # the world and the seed decide
    assert assign_shards(world, 3, seed=1) != assignment


def test_subjects_named_together_share_a_shard(world) -> None:
    from dataclasses import replace

    people = [s.id for s in world.people("train")]
    joint = replace(world.training_documents()[0], id="doc-joint", subjects=(people[0], people[5]))
    linked = replace(world, documents=[*world.documents, joint])
    for seed in range(4):
        assignment = assign_shards(linked, 4, seed)
        assert assignment[people[0]] == assignment[people[5]]


def test_base_documents_are_those_no_request_can_name(world) -> None:
    base = base_documents(world)
    deletable = {s.id for s in world.deletable()}
    assert base and all(not deletable.intersection(d.subjects) for d in base)
    assert any(s.startswith("entity-public-") for d in base for s in d.subjects)


def test_sharded_model_records_what_its_base_saw(sharded) -> None:
    record = json.loads((Path(sharded.model.path) / "expunge_sharded.json").read_text())
    assert record["base"]["documents"] == sharded.base_documents > 0
    assert record["recipe"]["base_data"]["documents"] == sharded.base_documents
    assert len(record["shards"]) == 3 and all(s["adapter_sha256"] for s in record["shards"])
    assert sorted(s for shard in record["shards"] for s in shard["subjects"]) == sorted(
        s for shard in sharded.shards for s in shard.subjects)


def test_deletion_is_bit_identical_to_training_without_the_data(sharded, world_dir: Path, request_path: Path,
                                                                 tmp_path: Path) -> None:
    deleted = delete_from_shards(sharded.model.path, world_dir, request_path, tmp_path / "deleted", progress=False)
    scratch = train_sharded(world_dir, tmp_path / "scratch", sharding=ShardingConfig(shards=3, lora_rank=4),
                            preset="shard-test", seed=0, request_path=request_path, progress=False)
    assert len(deleted.touched) == 1 and deleted.removed_documents > 0
    assert deleted.model.sha256 == scratch.model.sha256 != sharded.model.sha256
    # Tensor by tensor, not only the identity hash: the base and every adapter.
    a, _, _ = load_model(Path(deleted.model.path) / "base")
    b, _, _ = load_model(Path(scratch.model.path) / "base")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    for shard in range(3):
        left = load_adapter_state(Path(deleted.model.path) / f"shard-{shard:02d}")
        right = load_adapter_state(Path(scratch.model.path) / f"shard-{shard:02d}")
        before = load_adapter_state(Path(sharded.model.path) / f"shard-{shard:02d}")
        assert left.keys() == right.keys()
        assert all(torch.equal(left[k], right[k]) for k in left)
        unchanged = all(torch.equal(left[k], before[k]) for k in left)
        assert unchanged == (shard not in deleted.touched)
    # Only the touched shard trained: the deletion's training is one shard's.
    assert [s.index for s in deleted.shards if s.trained] == deleted.touched
    assert deleted.base_seconds == 0.0


def test_deletions_accumulate(sharded, world, world_dir: Path, tmp_path: Path) -> None:
    people = [s.id for s in world.people("train")]
    first, second = tmp_path / "r1.json", tmp_path / "r2.json"
    write_request(make_request(world, subjects=[people[1]]), first)
    write_request(make_request(world, subjects=[people[2]]), second)
    one = delete_from_shards(sharded.model.path, world_dir, first, tmp_path / "one", progress=False)
    two = delete_from_shards(one.model.path, world_dir, second, tmp_path / "two", progress=False)
    record = json.loads((Path(two.model.path) / "expunge_sharded.json").read_text())
    gone = set(record["recipe"]["excluded_documents"])
    assert {d.id for d in world.documents_about(people[1:3])} == gone
    assert record["parent"] == one.model.sha256
    with pytest.raises(ExpungeError, match="already gone"):
        delete_from_shards(two.model.path, world_dir, first, tmp_path / "three", progress=False)


def test_a_request_for_the_bases_data_is_refused(sharded, world, world_dir: Path, tmp_path: Path) -> None:
    public = next(s.id for s in world.subjects if s.id.startswith("entity-public-"))
    path = tmp_path / "public.json"
    write_request(make_request(world, subjects=[public]), path)
    with pytest.raises(ExpungeError, match="frozen base"):
        delete_from_shards(sharded.model.path, world_dir, path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_deleting_from_a_model_that_is_not_sharded_is_refused(world_dir: Path, request_path: Path,
                                                              tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(ExpungeError, match="not a sharded model"):
        delete_from_shards(tmp_path / "plain", world_dir, request_path, tmp_path / "out", progress=False)


def test_the_ledger_records_which_shard_holds_whom(world, world_dir: Path, request_path: Path,
                                                   tmp_path: Path) -> None:
    ledger = Ledger.open(resolve_url(tmp_path / "ledger.sqlite"))
    with recording(ledger):
        trained = train_sharded(world_dir, tmp_path / "m", sharding=ShardingConfig(shards=2, lora_rank=4),
                                preset="shard-test", seed=1, progress=False)
        deleted = delete_from_shards(trained.model.path, world_dir, request_path, tmp_path / "d", progress=False)
    rows = ledger.model_shards(trained.model.sha256)
    assert {s: r["shard"] for s, r in rows.items()} == {s: run.index for run in trained.shards for s in run.subjects}
    assert all(r["adapter_sha256"] == trained.shards[r["shard"]].adapter_sha256 for r in rows.values())
    after = ledger.model_shards(deleted.model.sha256)
    touched = deleted.touched[0]
    assert after.keys() == rows.keys()
    for subject, row in after.items():
        assert (row["adapter_sha256"] == rows[subject]["adapter_sha256"]) == (row["shard"] != touched)
    request_id = json.loads(request_path.read_text())["id"]
    assert ledger.request_state(request_id) is RequestState.REMOVED
    assert ledger.verify().ok


def test_an_interrupted_training_resumes_to_the_same_model(world_dir: Path, sharded, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from expunge import sharding as module

    real = module._Plan._train_shard
    calls = []

    def dies_on_the_second(self, k, *args, **kwargs):
        calls.append(k)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, k, *args, **kwargs)

    monkeypatch.setattr(module._Plan, "_train_shard", dies_on_the_second)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_sharded(world_dir, out, sharding=ShardingConfig(shards=3, lora_rank=4), preset="shard-test", seed=0,
                      progress=False)
    assert not out.exists() and (tmp_path / ".resumed.checkpoints" / "shard-00").is_dir()
    monkeypatch.setattr(module._Plan, "_train_shard", real)
    again = train_sharded(world_dir, out, sharding=ShardingConfig(shards=3, lora_rank=4), preset="shard-test",
                          seed=0, progress=False)
    assert [s.index for s in again.shards if s.seconds > 0] == [1, 2]  # shard 0 was kept, not retrained
    assert again.model.sha256 == sharded.model.sha256
    assert not (tmp_path / ".resumed.checkpoints").exists()


def _scores(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)


@pytest.fixture(scope="module")
def one_shard(world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sharding") / "one"
    return train_sharded(world_dir, out, sharding=ShardingConfig(shards=1, lora_rank=4), preset="shard-test",
                         seed=0, progress=False)


def test_one_shards_ensembles_equal_its_merged_model(one_shard, world) -> None:
    merged, tokenizer, _ = load_sharded(one_shard.model.path, combine="merge")
    enc = tokenizer([d.text for d in world.training_documents()[:6]], return_tensors="pt", padding=True)
    expected = _scores(merged, enc["input_ids"], enc["attention_mask"])
    real = enc["attention_mask"].bool()
    for combine in (Combine.ENSEMBLE, Combine.MIXTURE, Combine.PRODUCT):
        ensemble, _, _ = load_sharded(one_shard.model.path, combine=combine)
        assert isinstance(ensemble, ShardEnsemble)
        got = _scores(ensemble, enc["input_ids"], enc["attention_mask"])
        assert torch.allclose(got[real], expected[real], atol=1e-4)


def test_an_ensemble_scores_a_batch_as_it_scores_each_row(sharded, world) -> None:
    ensemble, tokenizer, _ = load_sharded(sharded.model.path)
    texts = [d.text for d in world.training_documents()[:5]]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    batch = _scores(ensemble, enc["input_ids"], enc["attention_mask"])
    for row, text in enumerate(texts):
        alone = tokenizer([text], return_tensors="pt")
        single = _scores(ensemble, alone["input_ids"], alone["attention_mask"])[0]
        assert torch.allclose(batch[row, : single.shape[0]], single, atol=1e-4)
    # A distribution: the combined log-probabilities normalise.
    assert torch.allclose(batch.exp().sum(-1), torch.ones(batch.shape[:2]), atol=1e-4)


def test_the_ensembles_generate_their_own_greedy_argmax(sharded, world) -> None:
    from expunge.verify.probes import greedy_answers

    ensemble, tokenizer, _ = load_sharded(sharded.model.path, combine="mixture")
    prompts = [p.prompt for p in world.probes[:4]]
    answers = greedy_answers(ensemble, tokenizer, prompts, max_new_tokens=3)
    for prompt, answer in zip(prompts, answers):
        ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
        steps = []
        for _ in range(3):
            token = int(ensemble(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax())
            steps.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
        expected = tokenizer.decode(steps, skip_special_tokens=True).split("\n")[0].strip()
        assert answer == expected[: len(answer)] and expected.startswith(answer)


def test_a_changed_adapter_is_refused(sharded, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sharded.model.path, copy)
    adapter = copy / "shard-01" / "adapter_model.safetensors"
    data = bytearray(adapter.read_bytes())
    data[-3] ^= 0xFF
    adapter.write_bytes(bytes(data))
    with pytest.raises(ExpungeError, match="shard-01"):
        load_model(copy)
    assert is_sharded(copy)


runner = CliRunner()


def test_cli_trains_and_deletes_with_json(world_dir: Path, request_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    trained = runner.invoke(app, ["train", "--world", str(world_dir), "--out", str(tmp_path / "m"), "--shards", "2",
                                  "--lora-rank", "4", "--preset", "shard-test", "--db", str(db), "--json"])
    assert trained.exit_code == 0, trained.output
    data = json.loads(trained.stdout)
    assert data["kind"] == "sharded" and len(data["shards"]) == 2
    deleted = runner.invoke(app, ["retrain", "--world", str(world_dir), "--request", str(request_path),
                                  "--base", str(tmp_path / "m"), "--out", str(tmp_path / "d"), "--db", str(db),
                                  "--json"])
    assert deleted.exit_code == 0, deleted.output
    result = json.loads(deleted.stdout)
    assert result["kind"] == "sharded-deletion" and len(result["touched_shards"]) == 1
    assert sum(s["trained"] for s in result["shards"]) == 1


@pytest.mark.parametrize("args, says", [
    (["--shards", "0"], "--shards 0"),
    (["--shards", "2", "--combine", "vote"], "--combine 'vote'"),
    (["--shards", "2", "--lora-rank", "-1"], "--lora-rank -1"),
])
def test_cli_refuses_bad_shard_options_before_any_work(world_dir: Path, tmp_path: Path, args: list[str],
                                                      says: str) -> None:
    result = runner.invoke(app, ["train", "--world", str(world_dir), "--out", str(tmp_path / "m"),
                                 "--preset", "shard-test", *args])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0]
    assert not (tmp_path / "m").exists()


def test_the_planner_retrains_the_shard_and_estimates_from_its_record(sharded, world_dir: Path,
                                                                      request_path: Path) -> None:
    from expunge.planner import Bar, Route, plan_request

    from expunge.planner import SHARDED_OVERHEAD_SECONDS

    plan = plan_request(request_path, world_dir, sharded.model.path, bar=Bar.EXACT)
    estimate, full = plan.estimate(Route.SHARDED_RETRAIN), plan.estimate(Route.FULL_RETRAIN)
    record = json.loads((Path(sharded.model.path) / "expunge_sharded.json").read_text())
    touched = [s for s in record["shards"] if set(s["subjects"]) & set(json.loads(request_path.read_text())["targets"])]
    assert len(touched) == 1 and touched[0]["seconds"] > 0
    # The touched shard's recorded time, for the documents it keeps, and the copying.
    assert SHARDED_OVERHEAD_SECONDS < estimate.seconds <= SHARDED_OVERHEAD_SECONDS + touched[0]["seconds"]
    everything = record["base"]["seconds"] + sum(s["seconds"] for s in record["shards"])
    assert full.applicable and full.seconds <= everything and full.seconds > everything * 0.5
    assert plan.chosen is min((estimate, full), key=lambda r: r.seconds).route  # both exact: the cheaper
    assert not plan.estimate(Route.GRADIENT).applicable  # an ensemble is not one set of weights
    assert not plan.estimate(Route.GUARD).meets_bar


@pytest.mark.slow  # an ensemble answers with every shard and decodes without a cache
def test_verification_reads_a_sharded_deletion_as_its_oracle(sharded, world_dir: Path, request_path: Path,
                                                            tmp_path: Path) -> None:
    from expunge.verify.config import VerifyConfig
    from expunge.verify.suite import verify_models

    deleted = delete_from_shards(sharded.model.path, world_dir, request_path, tmp_path / "deleted", progress=False)
    scratch = train_sharded(world_dir, tmp_path / "scratch", sharding=ShardingConfig(shards=3, lora_rank=4),
                            preset="shard-test", seed=0, request_path=request_path, progress=False)
    with pytest.raises(ExpungeError, match="sharded ensemble"):
        verify_models({"sharded": deleted.model.path}, sharded.model.path, scratch.model.path, world_dir,
                      request_path, config=VerifyConfig(attacks=True))
    verification = verify_models({"sharded": deleted.model.path}, sharded.model.path, scratch.model.path, world_dir,
                                 request_path, config=VerifyConfig(max_facts_per_set=2))
    candidate, oracle = verification.candidates["sharded"], verification.oracle
    # The same weights as the model that never saw the data: the same answers, scores and ratios.
    assert candidate.model["sha256"] == oracle.model["sha256"]
    assert candidate.truth_ratios == oracle.truth_ratios and candidate.mia_scores == oracle.mia_scores
