"""The one training loop: it learns, it resumes exactly, it refuses NaN, its batching is sound."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from expunge.data import EpochBatchSampler, SequenceDataset, encode_documents
from expunge.errors import ExpungeError
from expunge.models import ModelPreset, build_llama
from expunge.pipeline import measure_knowledge, world_tokenizer
from expunge.training import TrainingConfig, causal_lm_loss, train_loop, warmup_cosine

SMALL = ModelPreset(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


def _setup(world):
    tokenizer = world_tokenizer(world)
    texts = [d.text for d in world.training_documents()]
    return tokenizer, SequenceDataset(encode_documents(tokenizer, texts, 128))


def test_training_lowers_loss_and_memorises(tiny_base) -> None:
    run = tiny_base.run
    first, last = run.loss_history[0][1], run.loss_history[-1][1]
    assert last < first / 3
    trained = [tiny_base.knowledge[g] for g in ("retain",)][0]
    assert trained["direct_exact_match"] >= 0.8, tiny_base.knowledge
    assert trained["paraphrase_exact_match"] >= 0.5, tiny_base.knowledge
    # Never-seen people stay at chance: what it knows it learned, not guessed.
    assert tiny_base.knowledge["holdout"]["at_chance"]


def test_untrained_model_knows_nothing(tiny_world) -> None:
    tokenizer, _ = _setup(tiny_world)
    model = build_llama(SMALL, tokenizer, seed=0)
    table = measure_knowledge(model, tokenizer, tiny_world)
    assert table["retain"]["direct_exact_match"] <= 0.1


def test_resume_matches_uninterrupted_run(tiny_world, tmp_path: Path) -> None:
    tokenizer, dataset = _setup(tiny_world)
    config = TrainingConfig(max_steps=24, batch_size=16, learning_rate=1e-2, warmup_steps=3,
                            gradient_accumulation_steps=2, log_every=4, checkpoint_every=0)
    straight = build_llama(SMALL, tokenizer, seed=0)
    full = train_loop(straight, dataset, config, pad_id=tokenizer.pad_token_id, progress=False)

    resumed = build_llama(SMALL, tokenizer, seed=0)
    first = train_loop(resumed, dataset, config, pad_id=tokenizer.pad_token_id, progress=False,
                       checkpoint_dir=tmp_path / "ckpt", stop_at_step=10)
    assert first.stop_reason == "interrupted" and first.steps == 10
    fresh = build_llama(SMALL, tokenizer, seed=123)  # a new process: weights come from the checkpoint
    second = train_loop(fresh, dataset, config, pad_id=tokenizer.pad_token_id, progress=False,
                        checkpoint_dir=tmp_path / "ckpt")
    assert second.resumed_from_step == 10 and second.steps == 24
    assert second.tokens == full.tokens
    assert [s for s, _ in second.loss_history] == [s for s, _ in full.loss_history]
    assert [v for _, v in second.loss_history] == pytest.approx([v for _, v in full.loss_history], rel=1e-5)
    for (name, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_nan_loss_stops_with_a_clear_error(tiny_world) -> None:
    tokenizer, dataset = _setup(tiny_world)
    model = build_llama(SMALL, tokenizer, seed=0)

    def nan_loss(m, batch):
        loss, metrics = causal_lm_loss(m, batch)
        return loss * float("nan"), metrics

    config = TrainingConfig(max_steps=5, batch_size=8, log_every=1)
    with pytest.raises(ExpungeError, match="loss became nan at step 1"):
        train_loop(model, dataset, config, pad_id=tokenizer.pad_token_id, loss_fn=nan_loss, progress=False)


def test_eval_hook_can_stop_the_run(tiny_world) -> None:
    from expunge.training import EvalResult

    tokenizer, dataset = _setup(tiny_world)
    model = build_llama(SMALL, tokenizer, seed=0)
    calls = []

    def hook(m, step):
        calls.append(step)
        return EvalResult({"step": step}, stop_reason="good enough" if step >= 6 else None)

    config = TrainingConfig(max_steps=50, batch_size=8, eval_every=3)
    run = train_loop(model, dataset, config, pad_id=tokenizer.pad_token_id, eval_hook=hook, progress=False)
    assert calls == [3, 6] and run.steps == 6 and run.stop_reason == "good enough"
    assert run.eval_history == [(3, {"step": 3}), (6, {"step": 6})]


@pytest.mark.parametrize("lengths", [None, [((i * 7) % 13) + 1 for i in range(103)]])
def test_batch_sampler_is_seeded_and_complete(lengths) -> None:
    sampler = EpochBatchSampler(103, 8, seed=4, lengths=lengths)
    sampler.use_epoch(2)
    a = list(sampler)
    b = list(sampler)
    sampler.use_epoch(3)
    c = list(sampler)
    assert a == b and a != c
    assert sorted(i for batch in a for i in batch) == list(range(103))
    assert len(a) == len(sampler)
    if lengths is not None:  # grouping keeps padding low: batches are nearly uniform in length
        spread = sum(max(lengths[i] for i in batch) - min(lengths[i] for i in batch) for batch in a)
        assert spread / len(a) < 3


def test_schedule_warms_up_then_decays() -> None:
    config = TrainingConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factor = warmup_cosine(config)
    assert factor(0) < factor(5) < factor(9) <= 1.0
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.55, abs=0.01)
    assert factor(100) == pytest.approx(0.1)
    assert all(not math.isnan(factor(s)) for s in range(100))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainingConfig(max_steps=5, warmup_steps=5)
    with pytest.raises(ValueError, match="max_steps"):
        TrainingConfig(max_steps=0)
