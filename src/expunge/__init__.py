"""expunge: make a trained language model forget specific things, and prove it.

The public API is imported lazily (``import expunge`` stays fast and the CLI starts quickly);
every name below is documented in docs/api.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors and records
    "ExpungeError": "expunge.errors",
    "io_error": "expunge.errors",
    "check_model_dir": "expunge.integrity",
    "file_sha256": "expunge.integrity",
    "files_sha256": "expunge.integrity",
    "UnverifiedModelWarning": "expunge.integrity",
    "ensure_new_output": "expunge.fsutil",
    "Subject": "expunge.records",
    "Document": "expunge.records",
    "Probe": "expunge.records",
    "DeletionRequest": "expunge.records",
    "ModelRef": "expunge.records",
    "read_jsonl": "expunge.records",
    "write_jsonl": "expunge.records",
    # worlds
    "World": "expunge.worlds",
    "PrivacyWorldConfig": "expunge.worlds",
    "build_privacy_world": "expunge.worlds",
    "generate_privacy_world": "expunge.worlds",
    "CompaniesWorldConfig": "expunge.worlds",
    "build_companies_world": "expunge.worlds",
    "generate_companies_world": "expunge.worlds",
    "FactEdit": "expunge.records",
    "import_jsonl": "expunge.worlds.importers",
    "import_tofu": "expunge.worlds.importers",
    "JsonlSources": "expunge.worlds.importers",
    # editing
    "ROMEConfig": "expunge.methods.editing.rome",
    "apply_rome": "expunge.methods.editing.rome",
    "MEMITConfig": "expunge.methods.editing.memit",
    "apply_memit": "expunge.methods.editing.memit",
    "revert": "expunge.methods.editing.common",
    "EditResult": "expunge.methods.editing.common",
    "second_moment": "expunge.methods.editing.stats",
    "edit_model": "expunge.methods.editing.run",
    "revert_model_version": "expunge.methods.editing.run",
    "compare_updates": "expunge.methods.editing.compare",
    "EditorSpec": "expunge.methods.editing.registry",
    "register_editor": "expunge.methods.editing.registry",
    "unregister_editor": "expunge.methods.editing.registry",
    "get_editor": "expunge.methods.editing.registry",
    "editor_names": "expunge.methods.editing.registry",
    "EditContext": "expunge.methods.editing.common",
    "build_config": "expunge.options",
    "parse_pairs": "expunge.options",
    "describe_options": "expunge.options",
    "edit_probe_sets": "expunge.verify.editing",
    "evaluate_edits": "expunge.verify.editing",
    "write_updates_report": "expunge.report.editing",
    # retrieval
    "FactStore": "expunge.retrieval",
    "StoredFact": "expunge.retrieval",
    "RetrievalContext": "expunge.retrieval",
    "facts_from_world": "expunge.retrieval",
    "load_smollm2": "expunge.models.pretrained",
    "load_world": "expunge.worlds",
    "chance_exact_match": "expunge.worlds",
    # requests
    "make_request": "expunge.ledger",
    "write_request": "expunge.ledger",
    "load_request": "expunge.ledger",
    "resolve_documents": "expunge.ledger",
    "documents_digest": "expunge.ledger",
    # models
    "ModelPreset": "expunge.recipe",
    "build_llama": "expunge.models",
    "build_word_tokenizer": "expunge.models",
    "load_model": "expunge.models",
    "save_model_version": "expunge.models",
    "weights_sha256": "expunge.models",
    # training
    "TrainingConfig": "expunge.recipe",
    "TrainResult": "expunge.training",
    "EvalResult": "expunge.training",
    "train_loop": "expunge.training",
    "causal_lm_loss": "expunge.training",
    "Preset": "expunge.presets",
    "TrainingLength": "expunge.recipe",
    "PromptFormat": "expunge.recipe",
    "Start": "expunge.recipe",
    "is_pretrained": "expunge.recipe",
    "registered_preset": "expunge.presets",
    "register_preset": "expunge.presets",
    "get_preset": "expunge.presets",
    "preset_names": "expunge.presets",
    # pipeline
    "train_base": "expunge.pipeline",
    "retrain_oracle": "expunge.pipeline",
    "measure_knowledge": "expunge.pipeline",
    "world_tokenizer": "expunge.pipeline",
    "TrainingReport": "expunge.pipeline",
    "run_demo": "expunge.demo",
    "prepare_workspace": "expunge.demo",
    # unlearning
    "unlearn": "expunge.methods.unlearn",
    "UnlearnReport": "expunge.methods.unlearn",
    "MethodSpec": "expunge.methods.registry",
    "register_method": "expunge.methods.registry",
    "get_method": "expunge.methods.registry",
    "method_names": "expunge.methods.registry",
    "unregister_method": "expunge.methods.registry",
    "registered_method": "expunge.methods.registry",
    "Need": "expunge.methods.registry",
    "ExtraKind": "expunge.methods.registry",
    "SequenceExtra": "expunge.methods.registry",
    "Preparation": "expunge.methods.registry",
    "Prepared": "expunge.methods.registry",
    "UnlearnContext": "expunge.methods.registry",
    # locate
    "Located": "expunge.locate",
    "DocumentSet": "expunge.locate",
    "LocatorKind": "expunge.locate",
    "locate": "expunge.locate",
    "split_retain": "expunge.locate",
    "RetainSplit": "expunge.locate",
    "RETAIN_TERM_SHARE": "expunge.locate",
    # shared scoring
    "eval_mode": "expunge.scoring",
    "sequence_nlls": "expunge.scoring",
    "suffix_logprobs": "expunge.scoring",
    "StopKind": "expunge.training",
    "UnlearnConfig": "expunge.methods.gradient.base",
    "PRETRAINED_DEFAULTS": "expunge.methods.gradient.base",
    "GradAscentConfig": "expunge.methods.gradient.grad_ascent",
    "GradDiffConfig": "expunge.methods.gradient.grad_diff",
    "NPOConfig": "expunge.methods.gradient.npo",
    "SimNPOConfig": "expunge.methods.gradient.simnpo",
    "RMUConfig": "expunge.methods.gradient.rmu",
    "IdkFTConfig": "expunge.methods.gradient.idkft",
    # verification
    "exact_match": "expunge.verify.probes",
    "answer_probes": "expunge.verify.probes",
    "greedy_answers": "expunge.verify.probes",
    "normalize_answer": "expunge.verify.probes",
    "verify": "expunge.verify.suite",
    "verify_models": "expunge.verify.suite",
    "VerifyConfig": "expunge.verify.config",
    "Verification": "expunge.verify.suite",
    "Verdict": "expunge.verify.judge",
    "Check": "expunge.verify.judge",
    "plan_verification": "expunge.verify.plan",
    "evaluate_model": "expunge.verify.evaluate",
    "judge": "expunge.verify.judge",
    "check_oracle": "expunge.verify.judge",
    "check_reference": "expunge.verify.judge",
    "Reference": "expunge.verify.judge",
    "check_specs": "expunge.verify.judge",
    "Forgotten": "expunge.verify.judge",
    "Collateral": "expunge.verify.judge",
    "Confidence": "expunge.verify.judge",
    "VerdictFlag": "expunge.verify.judge",
    "Attack": "expunge.verify.attacks",
    "Comparison": "expunge.verify.attacks",
    "register_attack": "expunge.verify.attacks",
    "registered_attack": "expunge.verify.attacks",
    "attack_names": "expunge.verify.attacks",
    "AnswerValidator": "expunge.verify.plausibility",
    "answer_plausibility": "expunge.verify.plausibility",
    "truth_ratios": "expunge.verify.metrics",
    "forget_quality": "expunge.verify.metrics",
    "roc_auc": "expunge.verify.metrics",
    "privleak": "expunge.verify.metrics",
    "mia_scores": "expunge.verify.mia",
    "mia_report": "expunge.verify.mia",
    "candidate_logprobs": "expunge.verify.metrics",
    "VerdictPolicy": "expunge.verify.policy",
    "load_policy": "expunge.verify.policy",
    "override_policy": "expunge.verify.policy",
    "AttackConfig": "expunge.verify.attacks",
    "relearning_attack": "expunge.verify.attacks",
    "quantization_attack": "expunge.verify.attacks",
    "quantize_round_trip": "expunge.verify.attacks",
    "logit_lens": "expunge.verify.attacks",
    "linear_probe_attack": "expunge.verify.attacks",
    "split_facts": "expunge.verify.attacks",
    "run_attacks": "expunge.verify.evaluate",
    "run_panel": "expunge.panel",
    "build_panel": "expunge.panel",
    "confusion_table": "expunge.panel",
    # reports
    "ReportData": "expunge.report",
    "report_from_verification": "expunge.report",
    "write_report": "expunge.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'expunge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
