"""What structured outputs cost on llama.cpp, per schema: turning it into a grammar (first and cached), llama.cpp
parsing it into a sampler, and per token the grammar's work: masking the whole vocabulary (the slow path) and
checking one freely drawn token (the usual path, engines/llamacpp/sampler.py ConstrainedSampler). The token
costs are measured along a real answer's tokens. CPU timings; they depend on what else the machine runs.

    .venv/bin/python -m bench.structured_grammar
"""

from __future__ import annotations

import ctypes
import statistics
import time
from typing import Any

import llama_cpp

import llm_inference.engines.llamacpp.engine  # noqa: F401  # routes llama.cpp's own log lines
from llm_inference.engines.constraints import OutputConstraint, json_object_constraint, json_schema_constraint
from llm_inference.engines.llamacpp import grammar
from llm_inference.model_spec import embedded_model_path

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "mood": {"enum": ["happy", "sad"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}
CASES: list[tuple[str, OutputConstraint, str]] = [
    ("json_object", json_object_constraint("f"), '{ "name": "John", "age": 30, "mood": "happy" }'),
    ("person", json_schema_constraint(PERSON, "f"), '{ "name": "John", "age": 30, "mood": "happy"}'),
    (
        "enum of 128",
        json_schema_constraint({"enum": [f"value-{i}" for i in range(128)]}, "f"),
        '"value-17"',
    ),
    ("string maxLength 256", json_schema_constraint({"type": "string", "maxLength": 256}, "f"), '"John Smith"'),
]


def main() -> None:
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(
        str(embedded_model_path()).encode(), llama_cpp.llama_model_default_params()
    )
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    everything = (llama_cpp.llama_token_data * n_vocab)()
    one = (llama_cpp.llama_token_data * 1)()

    def apply(sampler: Any, data: Any, size: int) -> float:
        candidates = llama_cpp.llama_token_data_array(data=data, size=size, selected=-1, sorted=False)
        started = time.perf_counter()
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return time.perf_counter() - started

    print(
        f"{'schema':<22} {'GBNF chars':>10} {'convert ms':>10} {'cached µs':>9} {'parse ms':>8} "
        f"{'mask ms (mean/max)':>18} {'check µs':>8}"
    )
    for name, constraint, answer in CASES:
        grammar._gbnf.cache_clear()
        started = time.perf_counter()
        text = grammar.gbnf(constraint)
        convert = time.perf_counter() - started
        started = time.perf_counter()
        grammar.gbnf(constraint)
        cached = time.perf_counter() - started
        started = time.perf_counter()
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
        parse = time.perf_counter() - started
        buffer = (llama_cpp.llama_token * 256)()
        count = llama_cpp.llama_tokenize(vocab, answer.encode(), len(answer.encode()), buffer, 256, False, True)
        masks, checks = [], []
        for token in buffer[:count]:
            for i in range(n_vocab):
                everything[i].id, everything[i].logit = i, 0.0
            masks.append(apply(sampler, everything, n_vocab))
            one[0].id, one[0].logit = token, 0.0
            checks.append(apply(sampler, one, 1))
            if one[0].logit == -float("inf"):  # not this grammar's way of writing it: accepting it would abort
                break
            llama_cpp.llama_sampler_accept(sampler, token)
        llama_cpp.llama_sampler_free(sampler)
        print(
            f"{name:<22} {len(text):>10} {convert * 1e3:>10.2f} {cached * 1e6:>9.1f} {parse * 1e3:>8.2f} "
            f"{statistics.mean(masks) * 1e3:>9.2f}/{max(masks) * 1e3:<8.2f} {statistics.median(checks) * 1e6:>8.1f}"
        )
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
