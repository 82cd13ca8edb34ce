"""Published LLM inference measurements (``data/published_llm.csv``, a verbatim copy of the project's
``published_llm.csv``: llama.cpp, TensorRT-LLM and vLLM rows, each with its source), read into typed rows.

A row is one figure in one metric and scope: ``decode_tok_s`` / ``prefill_tok_s`` per sequence (llama-bench's
``tg N`` and ``pp N``), or ``output_tok_s_total`` aggregated over a serving engine's concurrency. OOM rows are
kept: "does not fit" is a published result too. No torch here."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from dlgpu.errors import BadInput

PUBLISHED_LLM_FILE = Path(__file__).parent / "data" / "published_llm.csv"

REQUIRED = ("runtime", "device", "catalog_id", "num_gpus", "model", "quant", "metric", "metric_scope", "value",
            "status", "source_url")


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class LlmRow:
    """One published figure (see the module docstring); numbers None where the row has none."""

    index: int  # the row's line in its file (the header is line 1)
    source_set: str
    runtime: str
    device: str
    catalog_id: str
    num_gpus: int
    model: str
    params_b: float | None
    active_params_b: float | None
    quant: str
    weights_gb: float | None
    context_len: int | None
    input_len: int | None
    output_len: float | None
    concurrency: str
    metric: str
    metric_scope: str
    value: float | None
    status: str
    source_url: str

    @property
    def runtime_family(self) -> str:
        """``llama.cpp``, ``tensorrt-llm``, ``vllm`` or the runtime as written."""
        low = self.runtime.lower()
        for family in ("llama.cpp", "tensorrt-llm", "vllm"):
            if low.startswith(family):
                return family
        return low

    @property
    def phase(self) -> str:
        """``decode``, ``prefill`` or ``serve`` (an aggregate over a serving engine's batch)."""
        return {"decode_tok_s": "decode", "prefill_tok_s": "prefill"}.get(self.metric, "serve")


def load_published_llm(path: Path | None = None) -> list[LlmRow]:
    """The rows of a file in ``published_llm.csv``'s columns (default: the shipped copy)."""
    p = path or PUBLISHED_LLM_FILE
    try:
        with open(p, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise BadInput(f"{p}: missing columns {', '.join(missing)} (the columns of published_llm.csv)")
            rows = list(reader)
    except OSError as exc:
        raise BadInput(f"{p}: cannot read ({exc.strerror})") from None
    out = []
    for i, r in enumerate(rows):
        ctx, inp = _num(r.get("context_len")), _num(r.get("input_len"))
        out.append(LlmRow(
            index=i + 2, source_set=r.get("source_set", ""), runtime=r["runtime"], device=r["device"],
            catalog_id=r["catalog_id"], num_gpus=int(_num(r["num_gpus"]) or 1), model=r["model"],
            params_b=_num(r.get("params_b")), active_params_b=_num(r.get("active_params_b")), quant=r["quant"],
            weights_gb=_num(r.get("weights_gb")), context_len=None if ctx is None else int(ctx),
            input_len=None if inp is None else int(inp), output_len=_num(r.get("output_len")),
            concurrency=r.get("batch_concurrency", ""), metric=r["metric"], metric_scope=r["metric_scope"],
            value=_num(r["value"]), status=r["status"], source_url=r["source_url"]))
    return out
