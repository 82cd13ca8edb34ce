"""The synthetic GGUF writer and the llama.cpp CPU measurement (``dlgpu.measure.llamacpp``; the ``llamacpp``
extra, which CI does not install: those tests skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlgpu.errors import BadInput
from dlgpu.llm.architectures import LlmArch, arch_from_hf_config, get_arch
from dlgpu.llm.formats import get_format, weight_bytes
from dlgpu.measure import llamacpp

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 2048,
        "tie_word_embeddings": False}


def tiny(**over: object) -> LlmArch:
    return arch_from_hf_config({**TINY, **over}, "tiny")


def test_module_imports_without_the_extra() -> None:
    assert llamacpp.available() is None or "pip install" in str(llamacpp.available())


def test_tensor_list_follows_the_architecture() -> None:
    arch = tiny()
    names = [n for n, _, _ in llamacpp.synthetic_tensors(arch, "q8_0")]
    assert names[:3] == ["token_embd.weight", "output_norm.weight", "output.weight"]
    assert "blk.1.ffn_down.weight" in names and "blk.0.attn_norm.weight" in names
    qwen = llamacpp.synthetic_tensors(tiny(model_type="qwen2", tie_word_embeddings=True), "q4_0")
    assert "blk.0.attn_q.bias" in [n for n, _, _ in qwen] and "output.weight" not in [n for n, _, _ in qwen]
    truncated = llamacpp.synthetic_tensors(get_arch("llama-3.2-1b"), "q8_0", layers=1)
    assert not any(n.startswith("blk.1.") for n, _, _ in truncated)
    with pytest.raises(BadInput):
        llamacpp.synthetic_tensors(get_arch("llama-3.2-1b"), "q6_k")


@pytest.mark.parametrize("weight_type", ["q8_0", "q4_0", "f16"])
def test_gguf_round_trips(tmp_path: Path, weight_type: str) -> None:
    gguf = pytest.importorskip("gguf")
    arch = tiny()
    path = llamacpp.write_synthetic_gguf(arch, tmp_path / "tiny.gguf", weight_type)
    reader = gguf.GGUFReader(str(path))
    got = {t.name: t for t in reader.tensors}
    expected = llamacpp.synthetic_tensors(arch, weight_type)
    assert list(got) == [n for n, _, _ in expected]
    for name, t, kind in expected:
        assert got[name].tensor_type.name == kind.upper(), name
        shape = [int(x) for x in got[name].shape]
        assert shape == ([t.row] if t.vector else [t.row, t.rows]), name
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "llama"
    assert int(reader.fields["llama.block_count"].parts[-1][0]) == 2
    size, predicted = path.stat().st_size, weight_bytes(arch, get_format(weight_type))
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    if weight_type == "q8_0":
        assert tensor_bytes == predicted  # llama.cpp's own mix at q8_0: the same type per tensor
    elif weight_type == "q4_0":
        assert tensor_bytes < predicted  # pure q4_0: output stays q4_0 where llama.cpp puts Q6_K
    else:
        assert tensor_bytes > predicted  # dlgpu's f16 counts the norms at 16 bits, the file keeps them F32
    assert size > tensor_bytes and abs(size - predicted) / predicted < (0.05 if weight_type != "q4_0" else 0.25)


def test_measure_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    pytest.importorskip("llama_cpp")
    arch = tiny()
    path = llamacpp.write_synthetic_gguf(arch, tmp_path / "tiny.gguf", "q8_0")
    r = llamacpp.measure_llamacpp(path, prompt_tokens=32, output_tokens=8, threads=1)
    assert r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0
    assert r["n_p_eval"] == 32 and r["n_eval"] == 8
    assert r["file_bytes"] == path.stat().st_size and r["n_threads"] == 1
    assert r["llama_bench"].startswith("llama-bench -m ") and "-p 32 -n 8 -t 1" in r["llama_bench"]
