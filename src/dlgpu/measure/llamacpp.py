"""llama.cpp on this machine's CPU, measured (issue 14, "Runtimes are named"): a synthetic GGUF of a catalog LLM
architecture (random weights written with the ``gguf`` package; nothing downloaded) and its prefill and decode
tokens/s through llama-cpp-python. Needs the optional extra ``dlgpu[llamacpp]`` (llama-cpp-python, gguf); both
are imported inside the functions, so importing this module needs neither.

Sources (LLM.md, the project's sourced notes, §1): gguf-py's ``GGUFWriter`` (write order header, KV data,
tensors; numpy (out, in) stored as ggml [in, out]) and ``gguf.quants.quantize`` (F32/F16/BF16/Q8_0/Q4_0/...,
not K-quants); the keys llama.cpp's ``load_hparams`` requires; tokenizer model ``"none"`` skips the vocabulary
and reads ``{arch}.vocab_size``; ``llama_perf_context`` gives t_p_eval_ms/n_p_eval (prompt) and t_eval_ms/n_eval
(1-token decodes). Checked here with llama-cpp-python 0.3.36: llama.cpp books a decode in those counters only
when the context synchronizes (reading logits, or ``llama_synchronize``), so each timed decode is followed by one;
the cache is cleared (``llama_memory_clear``) before each run, as llama-cpp-python's ``reset()`` would not
guarantee a fresh prefill. The C API is used rather than ``llama_cpp.Llama``, which cannot turn off llama.cpp's
extra buffer types (see ``extra_buffers_work``). llama, mistral (as llama: a sliding window is not written),
qwen2 (QKV biases) and qwen3 (QK norms) load and run, with either tokenizer.

The file is "pure": every matrix at ``weight_type`` (llama.cpp's ``--pure``), 1-D tensors (norms, biases) F32,
a matrix whose row is not a multiple of the block F16. At q8_0 that is exactly llama.cpp's own mix; at q4_0
llama.cpp would put ``output`` (or a tied ``token_embd``) at Q6_K, which gguf-py cannot write, so the file is a
little smaller than ``llm.formats.weight_bytes`` for q4_0.

``GgufSession`` holds one loaded GGUF and its context for ``dlgpu bench --runtime llama.cpp``
(``measure.llamacpp_bench``), which times each ``llama_decode`` call itself; ``measure_llamacpp`` (the benchmark
script's) reads llama.cpp's counters instead."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

from dlgpu.errors import BadInput
from dlgpu.llm.architectures import LlmArch, Tensor

# catalog architecture -> llama.cpp architecture (dense, llama-style; mistral runs as llama in llama.cpp)
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
WEIGHT_TYPES = ("f16", "q8_0", "q4_0")
_BLOCK = {"f16": 1, "q8_0": 32, "q4_0": 32}
INIT_STD = 0.02  # the usual initializer_range of these configs
_POOL = 1 << 22


def available() -> str | None:
    """None when llama-cpp-python and gguf import, else the one-line reason."""
    missing = []
    for module in ("llama_cpp", "gguf"):
        try:
            __import__(module)
        except Exception as e:  # ImportError, or a shared library that does not load
            missing.append(f"{module} ({type(e).__name__}: {e})")
    if missing:
        return f"not importable: {'; '.join(missing)}; install the extra: pip install 'dlgpu[llamacpp]'"
    return None


def _gguf_arch(arch: LlmArch) -> str:
    if arch.is_moe or arch.is_mla or arch.architecture not in GGUF_ARCH:
        raise BadInput(f"{arch.id}: a synthetic GGUF is written only for dense llama-style architectures "
                       f"({', '.join(GGUF_ARCH)}), not {arch.architecture}{' (MoE)' if arch.is_moe else ''}",
                       param="model")
    return GGUF_ARCH[arch.architecture]


def gguf_tensor_name(t: Tensor) -> str:
    """GGUF name of ``t``: ``blk.N.`` before a layer's tensors, ``.weight`` after a name without a suffix."""
    name = t.name if t.name.endswith(".bias") else f"{t.name}.weight"
    return name if t.layer is None else f"blk.{t.layer}.{name}"


def synthetic_tensors(arch: LlmArch, weight_type: str = "q8_0",
                      layers: int | None = None) -> list[tuple[str, Tensor, str]]:
    """(GGUF name, tensor, ggml type name) of every tensor the synthetic file holds, in write order."""
    if weight_type not in WEIGHT_TYPES:
        raise BadInput(f"{weight_type!r}: valid: {', '.join(WEIGHT_TYPES)}", param="weight_type")
    _gguf_arch(arch)
    n = arch.layers if layers is None else layers
    out = []
    for t in arch.tensors():
        if t.layer is not None and t.layer >= n:
            continue
        kind = "f32" if t.vector else weight_type if t.row % _BLOCK[weight_type] == 0 else "f16"
        out.append((gguf_tensor_name(t), t, kind))
    return out


def write_synthetic_gguf(arch: LlmArch, path: str | os.PathLike[str], weight_type: str = "q8_0", seed: int = 0,
                         layers: int | None = None, tokenizer: str = "none") -> Path:
    """Write ``arch`` as a GGUF llama.cpp loads, with random weights: matrices normal(0, 0.02) (tiled from a
    pool of 4 Mi values), norms ones, biases zeros; matrices at ``weight_type`` (f16, q8_0, q4_0; quantized by
    ``gguf.quants``). ``layers`` truncates the model (tests). ``tokenizer`` "none": no vocabulary (tokenizer model
    ``"none"`` and ``{arch}.vocab_size``); "spm": a minimal SentencePiece one (byte tokens and placeholders)."""
    import gguf
    import numpy as np

    name = _gguf_arch(arch)
    if tokenizer not in ("none", "spm"):
        raise BadInput(f"{tokenizer!r}: valid: none, spm", param="tokenizer")
    tensors = synthetic_tensors(arch, weight_type, layers)
    n_layers = arch.layers if layers is None else layers
    if not 0 < n_layers <= arch.layers:
        raise BadInput(f"{layers}: between 1 and {arch.layers}", param="layers")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # a pool of normal values, each matrix a random rotation of it tiled to its shape: drawing a billion normals
    # costs more than quantizing them, and the values do not matter for speed
    pool = rng.standard_normal(_POOL, dtype=np.float32) * np.float32(INIT_STD)
    w = gguf.GGUFWriter(str(path), name)
    w.add_name(f"{arch.id} (synthetic, random weights)")
    w.add_context_length(arch.max_context)
    w.add_embedding_length(arch.hidden)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(arch.intermediate)
    w.add_head_count(arch.heads)
    w.add_head_count_kv(arch.kv_heads)
    w.add_key_length(arch.head_dim)
    w.add_value_length(arch.head_dim)
    w.add_rope_dimension_count(arch.head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(arch.vocab)
    w.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                     "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[weight_type])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if tokenizer == "none":
        w.add_tokenizer_model("none")
    else:  # a minimal SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then placeholders
        specials = ["<unk>", "<s>", "</s>"]
        if arch.vocab < len(specials) + 256:
            raise BadInput(f"{arch.vocab}: an spm vocabulary needs at least 259 tokens", param="vocab")
        tokens = specials + [f"<0x{b:02X}>" for b in range(256)]
        types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
        tokens += [f"t{i}" for i in range(len(tokens), arch.vocab)]
        types += [gguf.TokenType.NORMAL] * (arch.vocab - len(types))
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([0.0] * arch.vocab)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
    for tname, t, kind in tensors:
        if t.vector:
            fill = 0.0 if t.name.endswith(".bias") else 1.0
            w.add_tensor(tname, np.full(t.row, fill, dtype=np.float32))
            continue
        data = np.resize(np.roll(pool, -int(rng.integers(_POOL))), (t.rows, t.row))
        if kind == "f16":
            w.add_tensor(tname, data.astype(np.float16))
        else:
            qtype = gguf.GGMLQuantizationType[kind.upper()]
            w.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        del data
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_EXTRA_BUFFERS_OK: bool | None = None
_PROBE = """
import sys, tempfile
from pathlib import Path
from dlgpu.llm.architectures import arch_from_hf_config
from dlgpu.measure.llamacpp import _decode_run, write_synthetic_gguf
arch = arch_from_hf_config({"num_hidden_layers": 1, "hidden_size": 256, "intermediate_size": 512,
                            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
                            "max_position_embeddings": 512}, "probe")
with tempfile.TemporaryDirectory() as tmp:
    for wt in ("q8_0", "q4_0", "f16"):
        path = write_synthetic_gguf(arch, Path(tmp) / f"{wt}.gguf", wt)
        _decode_run(path, 8, 2, 1, 16, 0, 1, True)
"""


def extra_buffers_work() -> bool:
    """Whether llama.cpp's extra CPU buffer types (weights repacked for AMX or AVX kernels: ``use_extra_bufts``,
    llama.cpp's default) decode without crashing here, tried once per process in a child on a tiny model. On
    this project's Xeon (AMX) with llama-cpp-python 0.3.36, the AMX-repacked Q8_0/Q4_0 weights crash llama_decode
    with a segmentation fault; without them llama.cpp uses its plain CPU kernels."""
    global _EXTRA_BUFFERS_OK
    if _EXTRA_BUFFERS_OK is None:
        import subprocess
        import sys

        try:
            done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=120)
            _EXTRA_BUFFERS_OK = done.returncode == 0
        except subprocess.TimeoutExpired:
            _EXTRA_BUFFERS_OK = False
    return _EXTRA_BUFFERS_OK


def _decode_run(path: Path, prompt_tokens: int, output_tokens: int, n_threads: int, n_ctx: int, seed: int,
                repeats: int, extra_buffers: bool) -> list[tuple[float, int, float, int]]:
    """Load ``path`` with llama.cpp's C API (CPU only) and time ``repeats`` runs after a warm-up: one batch of
    ``prompt_tokens`` random ids, then ``output_tokens`` one-token decodes, the cache cleared before each run.
    (t_p_eval_ms, n_p_eval, t_eval_ms, n_eval) per run, from ``llama_perf_context``."""
    logger = logging.getLogger("llama-cpp-python")  # llama-cpp-python's sink for llama.cpp's log
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return _decode_runs(path, prompt_tokens, output_tokens, n_threads, n_ctx, seed, repeats, extra_buffers)
    finally:
        logger.setLevel(level)


def _decode_runs(path: Path, prompt_tokens: int, output_tokens: int, n_threads: int, n_ctx: int, seed: int,
                 repeats: int, extra_buffers: bool) -> list[tuple[float, int, float, int]]:
    import ctypes

    import llama_cpp
    import numpy as np

    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = extra_buffers
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        raise BadInput(f"{path}: llama.cpp could not load it", param="path")
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, max(prompt_tokens, 1), min(prompt_tokens, 512)
    cp.n_threads = cp.n_threads_batch = n_threads
    cp.no_perf = False
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        llama_cpp.llama_model_free(model)
        raise BadInput(f"{path}: llama.cpp could not make a context of {n_ctx} tokens", param="context")
    try:
        vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        rng = np.random.default_rng(seed)
        prompt = (llama_cpp.llama_token * prompt_tokens)(*(int(x) for x in rng.integers(0, vocab, prompt_tokens)))
        outputs = [int(x) for x in rng.integers(0, vocab, output_tokens)]
        one = (llama_cpp.llama_token * 1)()

        def decode(tokens: Any, n: int) -> None:
            rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, n))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            llama_cpp.llama_synchronize(ctx)  # books the decode: llama.cpp's counters advance only here

        def run(n_prompt: int, outs: list[int]) -> tuple[float, int, float, int]:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            llama_cpp.llama_perf_context_reset(ctx)
            decode(prompt, n_prompt)
            for tok in outs:
                one[0] = tok
                decode(ctypes.cast(one, ctypes.POINTER(llama_cpp.llama_token)), 1)
            perf = llama_cpp.llama_perf_context(ctx)
            return float(perf.t_p_eval_ms), int(perf.n_p_eval), float(perf.t_eval_ms), int(perf.n_eval)

        run(prompt_tokens, outputs[:2])  # warm-up: pages the weights in, builds both graphs
        return [run(prompt_tokens, outputs) for _ in range(max(repeats, 1))]
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


FLASH_ATTN = {-1: "auto", 0: "off", 1: "on"}
LOAD_MODES = {-1: "auto", 0: "none", 1: "mmap", 2: "mlock", 3: "mmap+mlock", 4: "direct-io"}
GGML_TYPES = {0: "f32", 1: "f16", 8: "q8_0", 2: "q4_0", 30: "bf16"}  # ggml_type ids of a KV cache


class GgufSession:
    """A GGUF loaded by llama.cpp's C API on the CPU (no layer offloaded), with one context, for ``dlgpu bench
    --runtime llama.cpp`` (``measure.llamacpp_bench``): ``decode(tokens)`` is one ``llama_decode`` call and
    ``synchronize`` waits for it (llama.cpp's CPU decode is synchronous already; the call also books it in
    ``llama_perf_context``); ``clear`` empties the KV cache, ``keep(n)`` drops every position from ``n`` on.
    llama.cpp's log is silenced while the session is open. Use as a context manager (frees the context and the
    model)."""

    def __init__(self, path: str | os.PathLike[str], n_ctx: int, n_batch: int, n_threads: int,
                 extra_buffers: bool, seed: int = 0) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self._logger = logging.getLogger("llama-cpp-python")  # llama-cpp-python's sink for llama.cpp's log
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL + 1)
        self.path = Path(path)
        self.n_threads = n_threads
        self.extra_buffers = extra_buffers
        self.ctx: Any = None
        self.model: Any = None
        try:
            llama_cpp.llama_backend_init()
            mp = llama_cpp.llama_model_default_params()
            mp.n_gpu_layers = 0
            mp.use_extra_bufts = extra_buffers
            self.model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mp)
            if not self.model:
                raise RuntimeError(f"llama.cpp could not load {self.path.name}")
            cp = llama_cpp.llama_context_default_params()
            cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, max(n_batch, 1), min(max(n_batch, 1), 512)
            cp.n_threads = cp.n_threads_batch = n_threads
            cp.no_perf = False
            self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
            if not self.ctx:
                raise RuntimeError(f"llama.cpp could not make a context of {n_ctx} tokens for {self.path.name}")
            self.memory = llama_cpp.llama_get_memory(self.ctx)
            self.vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model)))
            self.n_ctx = int(llama_cpp.llama_n_ctx(self.ctx))
            self.params = {
                "n_ctx": self.n_ctx, "n_batch": int(cp.n_batch), "n_ubatch": int(cp.n_ubatch),
                "n_gpu_layers": 0, "use_extra_bufts": extra_buffers,
                "load_mode": LOAD_MODES.get(int(getattr(mp, "load_mode", -2)), "unknown"),
                "flash_attn": FLASH_ATTN.get(int(getattr(cp, "flash_attn_type", -2)), "unknown"),
                "type_k": GGML_TYPES.get(int(cp.type_k), str(cp.type_k)),
                "type_v": GGML_TYPES.get(int(cp.type_v), str(cp.type_v)),
            }
        except BaseException:
            self.close()
            raise
        self._rng = random.Random(seed)

    def tokens(self, n: int) -> Any:
        """``n`` random token ids, as the C array ``decode`` takes."""
        return (self._ll.llama_token * n)(*(self._rng.randrange(self.vocab) for _ in range(n)))

    def decode(self, tokens: Any, n: int | None = None) -> None:
        """One ``llama_decode`` of ``tokens`` (the first ``n``) after what the KV cache holds."""
        count = len(tokens) if n is None else n
        rc = self._ll.llama_decode(self.ctx, self._ll.llama_batch_get_one(tokens, count))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} ({count} tokens)")

    def synchronize(self) -> None:
        self._ll.llama_synchronize(self.ctx)

    def clear(self) -> None:
        """Empty the KV cache (its data too)."""
        self._ll.llama_memory_clear(self.memory, True)

    def keep(self, n: int) -> None:
        """Drop the KV cache's positions from ``n`` on (the tokens the last decodes appended)."""
        if not self._ll.llama_memory_seq_rm(self.memory, 0, n, -1):
            raise RuntimeError(f"llama.cpp could not drop the KV cache's positions from {n} on")

    def set_threads(self, n: int) -> None:
        self._ll.llama_set_n_threads(self.ctx, n, n)
        self.n_threads = n

    def perf_reset(self) -> None:
        self._ll.llama_perf_context_reset(self.ctx)

    def perf(self) -> dict[str, float | int]:
        """llama.cpp's own counters since ``perf_reset``: prompt batches (``p_eval``) and one-token decodes."""
        d = self._ll.llama_perf_context(self.ctx)
        return {"t_p_eval_ms": float(d.t_p_eval_ms), "n_p_eval": int(d.n_p_eval), "t_eval_ms": float(d.t_eval_ms),
                "n_eval": int(d.n_eval)}

    def close(self) -> None:
        if self.ctx:
            self._ll.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self._ll.llama_model_free(self.model)
            self.model = None
        self._logger.setLevel(self._level)

    def __enter__(self) -> GgufSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def version() -> str:
    """llama-cpp-python's version (the bindings and the llama.cpp they were built with)."""
    try:
        from importlib.metadata import version as dist_version

        return dist_version("llama_cpp_python")
    except Exception:
        import llama_cpp

        return str(getattr(llama_cpp, "__version__", "unknown"))


def default_threads() -> int:
    """Every CPU this process may use (``llama-bench -t``'s count here)."""
    return _default_threads()


def measure_llamacpp(path: str | os.PathLike[str], prompt_tokens: int = 128, output_tokens: int = 32,
                     threads: int | None = None, context: int | None = None, seed: int = 0,
                     repeats: int = 1, extra_buffers: bool | None = None) -> dict[str, Any]:
    """Prefill and decode tokens/s of the GGUF at ``path`` with llama.cpp (llama-cpp-python's bindings) on the
    CPU, from llama.cpp's own counters (``llama_perf_context``): one batch of ``prompt_tokens`` random token ids,
    then ``output_tokens`` one-token decodes, after one untimed warm-up; the best of ``repeats`` runs. The same
    threads for both, as ``llama-bench -t`` (default: every CPU this process may use). ``extra_buffers`` None:
    llama.cpp's repacked weight buffers where ``extra_buffers_work()``, else its plain CPU kernels."""
    import llama_cpp

    if prompt_tokens < 2 or output_tokens < 1:
        raise BadInput(f"{prompt_tokens}, {output_tokens}: need prompt_tokens >= 2 and output_tokens >= 1",
                       param="prompt_tokens")
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file", param="path")
    n_threads = threads or _default_threads()
    n_ctx = context or prompt_tokens + output_tokens
    if n_ctx < prompt_tokens + output_tokens:
        raise BadInput(f"{n_ctx}: shorter than prompt + output ({prompt_tokens + output_tokens})", param="context")
    extra = extra_buffers_work() if extra_buffers is None else extra_buffers
    runs = _decode_run(path, prompt_tokens, output_tokens, n_threads, n_ctx, seed, repeats, extra)
    prefill = max((n / (t / 1000) for t, n, _, _ in runs if t > 0), default=0.0)
    decode = max((n / (t / 1000) for _, _, t, n in runs if t > 0), default=0.0)
    t_p, n_p, t_e, n_e = runs[-1]
    bench = f"llama-bench -m {path} -p {prompt_tokens} -n {output_tokens} -t {n_threads} -ngl 0"
    return {
        "prefill_tokens_per_s": prefill,
        "decode_tokens_per_s": decode,
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "n_p_eval": n_p, "t_p_eval_ms": t_p, "n_eval": n_e, "t_eval_ms": t_e,
        "n_threads": n_threads,
        "n_ctx": n_ctx,
        "repeats": len(runs),
        "extra_buffers": extra,
        "llama_cpp_python": str(getattr(llama_cpp, "__version__", "unknown")),
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "llama_bench": bench if extra else f"{bench} (measured with use_extra_bufts=false: no repacked weights)",
    }
