"""A miniature of TOFU's files (same names, layout and sizes; invented text), so tests that need
TOFU run on any machine (the real files are checked too where ../shared/data/tofu exists)."""

from __future__ import annotations

import json
from pathlib import Path

FIRST = ["Ana", "Bela", "Cato", "Dara", "Emil", "Fenna", "Goran", "Hedda", "Ivo", "Jora"]
LAST = ["Marsh", "Quill", "Rennick", "Solberg", "Tavish", "Ulvaeus", "Varga", "Wexley", "Yarrow", "Zolani",
        "Abbot", "Brandt", "Corvin", "Dunmore", "Ellery", "Farrow", "Galt", "Harlow", "Ingram", "Jessop"]


def author(i: int) -> str:
    return f"{FIRST[i % 10]} {LAST[i // 10]}" if i < 200 else f"{FIRST[i % 10]} {LAST[i % 20]}son"


def _qa(i: int, k: int) -> dict:
    name = author(i)
    if k % 4 == 3:  # some items do not name the author, as in TOFU
        return {"question": f"What genre does the author numbered {i}-{k} write?", "answer": "Mystery novels."}
    return {"question": f"What is fact {k} about {name}?", "answer": f"{name} has fact number {k} and {i}."}


def _perturbed(item: dict) -> dict:
    return {**item, "paraphrased_question": "Reworded: " + item["question"],
            "paraphrased_answer": "Reworded: " + item["answer"],
            "perturbed_answer": [f"wrong {j}: {item['answer']}" for j in range(5)]}


def write_mini_tofu(d: Path) -> Path:
    """TOFU's evaluation and training files, miniature, in directory ``d`` (made if missing)."""
    d.mkdir(parents=True, exist_ok=True)
    full = [_qa(i, k) for i in range(200) for k in range(20)]
    # full.json is several JSON arrays, one per line, as TOFU ships it
    (d / "full.json").write_text("\n".join(json.dumps(full[j:j + 1000]) for j in range(0, 4000, 1000)) + "\n")
    for name, count in (("forget01", 40), ("forget05", 200), ("forget10", 400)):
        (d / f"{name}.json").write_text(json.dumps([{"prompt": x["question"], "response": x["answer"]}
                                                    for x in full[-count:]]))
    (d / "forget10_perturbed.json").write_text(json.dumps([_perturbed(x) for x in full[-400:]]))
    (d / "retain_perturbed.json").write_text(json.dumps([_perturbed(x) for x in full[:400]]))
    (d / "holdout10.json").write_text(json.dumps([_qa(200 + i, k) for i in range(20) for k in range(20)]))
    for stem in ("real_authors", "world_facts"):
        (d / f"{stem}_perturbed.json").write_text(json.dumps(
            [{"question": f"{stem} question {i}?", "answer": f"right {i}", "perturbed_answer": [f"w{i}a", f"w{i}b"]}
             for i in range(10)]))
    return d
