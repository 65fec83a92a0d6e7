"""Named recipes (model size + training hyper-parameters): an explicit registry.

``default`` is sized for the default privacy world (100 people x 6 attributes) on a 2-core CPU:
measured here, it answers held-out paraphrased questions about trained people with ~0.9 exact
match after 1-2 minutes (71 s in the latest measurement). ``tiny`` exists for tests and smoke runs. On an 8-person world
(each name shared by exactly two people; countries and the people's employers as general facts)
it reaches exact match 1.00 on trained questions and 0.84 on held-out paraphrases for world seed 0
in about 10 seconds (measured here): small worlds are noisy, so tests built on it use margins, not
the default world's targets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from expunge.errors import ExpungeError
from expunge.recipe import ModelPreset, TrainingConfig


@dataclass(frozen=True)
class Preset:
    """A model size and a training configuration that go together.

    Attributes:
        name: registry key.
        model: size of the Llama model built for the world's tokenizer.
        training: hyper-parameters of the one training loop (its ``seed`` is replaced by the run's).
        max_length: documents are cut to this many tokens.
    """

    name: str
    model: ModelPreset
    training: TrainingConfig
    max_length: int = 128

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["training"]["betas"] = list(self.training.betas)
        return data


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> None:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered; known: {', '.join(sorted(_PRESETS))}")
    _PRESETS[preset.name] = preset


def get_preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise ExpungeError(f"unknown preset {name!r}", f"use one of: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]


def preset_names() -> list[str]:
    return sorted(_PRESETS)


register_preset(
    Preset(
        name="tiny",
        model=ModelPreset(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
        training=TrainingConfig(max_steps=800, batch_size=32, learning_rate=5e-3, warmup_steps=10,
                                weight_decay=0.0, log_every=10, checkpoint_every=100),
    )
)
register_preset(
    Preset(
        name="default",
        model=ModelPreset(hidden_size=128, num_layers=4, num_heads=2, intermediate_size=512),
        training=TrainingConfig(max_steps=1200, batch_size=64, learning_rate=3e-3, warmup_steps=100,
                                weight_decay=0.1, log_every=20, checkpoint_every=200),
    )
)
register_preset(
    Preset(
        name="companies",
        # The default model, trained longer: the companies world has ~3,700 short documents (120
        # companies x 4 relations x 6 phrasings, employees) against the privacy world's ~2,000, and
        # editors need a model that knows the facts it is asked to change. Measured here: 1,200
        # steps left 68% of the CEO questions answered (multiple choice).
        model=ModelPreset(hidden_size=128, num_layers=4, num_heads=2, intermediate_size=512),
        training=TrainingConfig(max_steps=3000, batch_size=64, learning_rate=3e-3, warmup_steps=100,
                                weight_decay=0.1, log_every=20, checkpoint_every=500),
    )
)
register_preset(
    Preset(
        name="companies-large",
        # For 1,100 companies (benchmarks/editing.py --large: 1,000 edits): the companies model,
        # twice the steps (~12 passes over ~34,000 documents); sized to run in minutes on 2 cores,
        # not to learn every fact (the benchmark reports how much the base model knows).
        model=ModelPreset(hidden_size=128, num_layers=4, num_heads=2, intermediate_size=512),
        training=TrainingConfig(max_steps=6000, batch_size=64, learning_rate=3e-3, warmup_steps=100,
                                weight_decay=0.1, log_every=50, checkpoint_every=1000),
    )
)
