"""``dlgpu.advise/1`` documents on import: real ones (made by ``api.advise`` over the whole catalog) validate and
survive the store and an export bundle; tampered ones are rejected with a BadInput naming the field."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from advise_docs import real_doc
from dlgpu import api
from dlgpu.errors import BadInput
from dlgpu.store import Store, new_run_id
from dlgpu.store.schema import (
    AdviseDoc,
    ExportedRun,
    dump,
    kind_of,
    read_import_file,
    validate_any,
    validate_document,
)

SOURCES = {"measured", "predicted", "catalog", "estimated", "assumed", "computed", "given", "unavailable"}


def _timed(doc: dict[str, Any]) -> int:
    """The index of the first candidate with both a throughput and a time."""
    return next(i for i, c in enumerate(doc["candidates"])
                if (c["figures"].get("samples_per_s") or {}).get("value") and
                (c["figures"].get("time_s") or {}).get("value"))


def _excluded(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["candidates"] if c["excluded"] is not None)


@pytest.mark.parametrize("name", ["dcgan", "resnet50", "dcgan-1s", "resnet50-300w"])
def test_real_advise_documents_validate(name: str) -> None:
    doc = real_doc(name)
    parsed = validate_document(doc, f"{name}.json")
    assert isinstance(parsed, AdviseDoc) and kind_of(parsed) == "advise"
    assert parsed.workload == name.split("-")[0] and parsed.task == "train"
    assert len(parsed.candidates) == len(doc["candidates"]) > 50
    assert {c.origin for c in parsed.candidates} == {"own", "buy", "rent"}
    assert {f.source for c in parsed.candidates for f in c.figures.values()} <= SOURCES
    answer = parsed.verdict.answer
    # The store is fresh, so this machine's CPU is predicted, and whether it trains DCGAN (5 epochs of CelebA)
    # within 12 h depends on the CPU: the rule (advise.verdict.decide) is that a CPU is enough iff the own CPU
    # candidate is not excluded and its time is within the deadline; otherwise a GPU is needed (the catalog's
    # GPUs all finish it in well under 12 h). The other three answers do not depend on the machine.
    cpu = next(c for c in doc["candidates"] if c["id"] == "own:cpu")
    assert cpu["figures"]["samples_per_s"]["source"] == "predicted"
    cpu_time = cpu["figures"]["time_s"]["value"]
    assert cpu_time == pytest.approx(doc["job"]["samples"] / cpu["figures"]["samples_per_s"]["value"], rel=1e-9)
    deadline = doc["constraints"]["deadline_s"]
    assert deadline == {"dcgan": 12 * 3600, "resnet50": 24 * 3600, "dcgan-1s": 1,
                        "resnet50-300w": 24 * 3600}[name]
    cpu_meets = cpu["excluded"] is None and cpu_time <= deadline
    assert cpu["meets_deadline"] is cpu_meets
    expected = {"dcgan": "cpu-enough" if cpu_meets else "gpu-needed", "resnet50": "gpu-needed",
                "dcgan-1s": "nothing-meets", "resnet50-300w": "gpu-needed"}[name]
    assert answer == expected
    if name != "dcgan":  # the machine-independent answers: this CPU is far from them
        assert not cpu_meets
    if answer == "cpu-enough":
        assert parsed.verdict.cheapest == parsed.verdict.fastest == parsed.verdict.best_value == "own:cpu"
        assert parsed.verdict.headline.startswith("A CPU is enough: this machine's CPU finishes in")
        assert "(predicted)" in parsed.verdict.headline
    if name == "resnet50-300w":  # the power limit excludes the larger GPUs, and says so per candidate
        assert "over the power limit of 300 W" in _excluded(doc)["excluded"]
    if answer != "nothing-meets":
        assert {parsed.verdict.cheapest, parsed.verdict.fastest, parsed.verdict.best_value} <= \
            {c.id for c in parsed.candidates}
    else:
        assert parsed.verdict.cheapest is None and parsed.verdict.what_would
    # the dump is plain JSON that validates again, with the same figures
    out = dump(parsed)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    again = validate_document(out, "again")
    assert again == parsed
    i = _timed(doc)
    assert out["candidates"][i]["figures"]["time_s"]["value"] == pytest.approx(
        doc["job"]["samples"] / doc["candidates"][i]["figures"]["samples_per_s"]["value"], rel=1e-9)


def test_a_real_advise_file_reads_and_survives_the_store_and_an_export(tmp_path: Path) -> None:
    doc = real_doc("resnet50")
    f = tmp_path / "advise.json"
    f.write_text(json.dumps(doc))
    [(exported, parsed)] = read_import_file(f)
    assert exported is None and isinstance(parsed, AdviseDoc)
    run_id = new_run_id()
    stored = {**dump(parsed), "run_id": run_id}
    db = tmp_path / "r.sqlite"
    with Store(db) as store:
        assert store.import_runs([(run_id, "advise", "complete", stored, "test")]) == [run_id]
    bundle = api.export_runs([run_id], db)
    assert [r["kind"] for r in bundle["runs"]] == ["advise"]
    [(run, back)] = validate_any(json.loads(json.dumps(bundle)), "bundle.json")
    assert isinstance(run, ExportedRun) and run.kind == "advise" and run.id == run_id
    assert isinstance(back, AdviseDoc) and back.run_id == run_id
    assert [c.id for c in back.candidates] == [c["id"] for c in doc["candidates"]]
    assert back.verdict.headline == doc["verdict"]["headline"]

    # an export that calls the advise run a prediction is rejected
    bundle["runs"][0]["kind"] = "predict"
    with pytest.raises(BadInput, match=r"runs\.0: kind 'predict' but its document is an advise document"):
        validate_any(bundle, "bundle.json")


def test_nan_in_an_advise_file_is_not_json(tmp_path: Path) -> None:
    doc = real_doc("dcgan")
    doc["candidates"][_timed(doc)]["figures"]["time_s"]["value"] = math.nan
    f = tmp_path / "nan.json"
    f.write_text(json.dumps(doc))  # Python writes the non-standard NaN token
    with pytest.raises(BadInput, match=r"nan\.json: not valid JSON \(NaN is not a number JSON allows\)"):
        read_import_file(f)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return mutate


def _first_timed(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["candidates"][_timed(doc)]["figures"]["time_s"][key] = value(doc) if callable(value) else value
    return mutate


def _slower_time(doc: dict[str, Any]) -> float:
    i = _timed(doc)
    value: float = doc["candidates"][i]["figures"]["time_s"]["value"] * 1.01
    return value


def _excluded_is_fastest(doc: dict[str, Any]) -> None:
    fastest = next(c for c in doc["candidates"] if c["id"] == doc["verdict"]["fastest"])
    fastest["excluded"] = "draws 700 W, over the power limit of 300 W"


def _duplicate_id(doc: dict[str, Any]) -> None:
    doc["candidates"][2]["id"] = doc["candidates"][1]["id"]


def _no_precision(doc: dict[str, Any]) -> None:
    doc["candidates"][_timed(doc)]["precision"] = "-"


HOSTILE: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown field", _set("hacked", True), r"^x\.json: hacked: Extra inputs are not permitted"),
    ("unknown candidate field", _set("candidates.0.price", 1.0),
     r"^x\.json: candidates\.0\.price: Extra inputs are not permitted"),
    ("unknown figure field", _first_timed("note", "x"), r"candidates\.\d+\.figures\.time_s\.note: Extra inputs"),
    ("NaN figure", _first_timed("value", math.nan),
     r"candidates\.\d+\.figures\.time_s\.value: Input should be a finite number"),
    ("infinite job", _set("job.samples", math.inf), r"job\.samples: Input should be a finite number"),
    ("verdict names no candidate", _set("verdict.cheapest", "rent:Evil:x1"),
     r"verdict\.cheapest: 'rent:Evil:x1' is not the id of a candidate"),
    ("verdict names an excluded candidate", _excluded_is_fastest, r"verdict\.fastest: candidate .* is excluded"),
    ("time inconsistent", _first_timed("value", _slower_time),
     r"candidates\.\d+\.figures\.time_s: .* is not job\.samples / samples_per_s"),
    ("job samples inconsistent", _set("job.samples", 12345.0),
     r"candidates\.\d+\.figures\.time_s: .* is not job\.samples / samples_per_s"),
    ("wrong source", _first_timed("source", "guessed"),
     r"candidates\.\d+\.figures\.time_s\.source: Input should be 'measured', 'predicted'"),
    ("negative time", _first_timed("value", -1.0), r"figures\.time_s must be positive"),
    ("bool as a number", _first_timed("value", True), r"figures\.time_s\.value: Input should be a valid number"),
    ("duplicate candidate", _duplicate_id, r"candidates\.2: id .* appears twice"),
    ("no precision but not excluded", _no_precision, r"has no precision but is not excluded"),
    ("unknown answer", _set("verdict.answer", "buy-everything"), r"verdict\.answer: Input should be 'cpu-enough'"),
    ("unknown origin", _set("candidates.0.origin", "steal"), r"candidates\.0\.origin: Input should be 'own'"),
    ("bad run id", _set("run_id", "../../etc"), r"run_id: String should match pattern"),
    ("not a time", _set("created_at", "yesterday"), r"created_at: not an ISO 8601 time: 'yesterday'"),
    ("no candidates", _set("candidates", []), r"candidates: List should have at least 1 item"),
    ("pue below 1", _set("constraints.pue", 0.5), r"constraints\.pue: Input should be greater than or equal to 1"),
    ("string for a number", _set("batch_size", "256"), r"batch_size: Input should be a valid integer"),
]


@pytest.mark.parametrize(("what", "mutate", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_tampered_advise_documents_are_rejected_naming_the_field(what: str, mutate: Callable[[dict[str, Any]], None],
                                                                 message: str) -> None:
    doc = real_doc("resnet50")
    validate_document(doc, "x.json")  # valid before
    mutate(doc)
    with pytest.raises(BadInput, match=message) as info:
        validate_document(doc, "x.json")
    assert str(info.value).startswith("x.json: ")


def test_too_many_candidates_are_rejected() -> None:
    doc = real_doc("dcgan")
    doc["candidates"] = [{**doc["candidates"][0], "id": f"rent:x:{i}"} for i in range(10_001)]
    doc["verdict"].update(cheapest=None, fastest=None, best_value=None)
    with pytest.raises(BadInput, match=r"candidates: List should have at most 10000 items"):
        validate_document(doc, "x.json")


def test_an_unknown_schema_names_the_advise_schema() -> None:
    with pytest.raises(BadInput, match=r"dlgpu imports dlgpu\.bench/1, dlgpu\.predict/1, dlgpu\.advise/1, "
                                       r"dlgpu\.probe/1 and dlgpu\.export/1"):
        validate_document({"schema": "dlgpu.advise/2"}, "x.json")
