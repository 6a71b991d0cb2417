"""Structured outputs on llama.cpp: a request's constraint as a GBNF grammar (llama-cpp-python's JSON-Schema
converter), and the grammar sampler that enforces it token by token in the decode loop's chain.

Compiling runs on a worker thread (never the event loop or the decode thread), bounded in time and in the
grammar's size; the GBNF text is cached by the schema's canonical text.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import llama_cpp
from llama_cpp import llama_grammar

from llm_inference.engines.constraints import OutputConstraint
from llm_inference.errors import UnsupportedParameter

# A grammar past this size is refused: the grammar sampler's work per token grows with the rules it tracks.
MAX_GRAMMAR_CHARS = 65_536
COMPILE_TIMEOUT_SECONDS = 2.0
CACHE_SIZE = 64

# The converter's string character allows raw control characters, which JSON forbids inside strings (a raw
# newline would make the output unparseable); this one excludes them, as llama.cpp's own JSON grammar does.
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
_ANY_OBJECT = {"type": "object"}
_LITERAL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n", "\t": "\\t"}
_LITERAL_SPECIAL = re.compile(r'[\\"\r\n\t]')


class _SchemaConverter(llama_grammar.SchemaConverter):
    def _format_literal(self, literal: str) -> str:
        # Upstream escapes quotes and line breaks but not backslashes, so a property name or an enum value with
        # a quote or a backslash in it (JSON-escaped as \" or \\) made a grammar llama.cpp cannot parse.
        return '"' + _LITERAL_SPECIAL.sub(lambda m: _LITERAL_ESCAPES[m[0]], literal) + '"'


class GrammarTooComplex(UnsupportedParameter):
    pass


_Converter: Any = _SchemaConverter  # its constructor is untyped upstream


@functools.lru_cache(maxsize=CACHE_SIZE)
def _gbnf(kind: str, schema: str | None) -> str:
    converter: Any = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    document: Any = _ANY_OBJECT if kind == "json_object" or schema is None else json.loads(schema)
    if "$ref" in document:
        # The converter resolves the references below a node only when that node is not one itself.
        document = {key: value for key, value in document.items() if key != "$ref"} | {
            "anyOf": [{"$ref": document["$ref"]}]
        }
    document = converter.resolve_refs(document, "schema")
    converter.visit(document, "")
    if "char" in converter._rules:
        converter._rules["char"] = _JSON_CHAR
    grammar: str = converter.format_grammar()
    return grammar


def gbnf(constraint: OutputConstraint) -> str:
    """The grammar's text (cached); UnsupportedParameter if the converter cannot express it or it is too large."""
    try:
        grammar = _gbnf(*constraint.cache_key)
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UnsupportedParameter(
            f"{constraint.param}: the schema cannot be turned into a grammar ({type(exc).__name__}: {exc})",
            param=constraint.param,
        ) from None
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise GrammarTooComplex(
            f"{constraint.param}: the schema's grammar is {len(grammar)} characters, more than the limit of "
            f"{MAX_GRAMMAR_CHARS}; simplify it (fewer properties, smaller enums or bounds)",
            param=constraint.param,
        )
    return grammar


@dataclass
class CompiledGrammar:
    """A grammar sampler ready for one sequence (owned by whoever holds it until a chain takes it)."""

    sampler: llama_cpp.llama_sampler_p | None
    compile_seconds: float


class _Compilation:
    """One compile on a worker thread; a result that arrives after its caller gave up is freed there."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False

    def run(self, vocab: Any, constraint: OutputConstraint) -> CompiledGrammar:
        started = time.perf_counter()
        grammar = gbnf(constraint)
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            raise UnsupportedParameter(
                f"{constraint.param}: llama.cpp could not parse the schema's grammar", param=constraint.param
            )
        with self.lock:
            if self.abandoned:
                llama_cpp.llama_sampler_free(sampler)
                raise TimeoutError
        return CompiledGrammar(sampler, time.perf_counter() - started)

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True


async def compile_grammar(vocab: Any, constraint: OutputConstraint) -> CompiledGrammar:
    """Build the constraint's grammar sampler off the event loop, within COMPILE_TIMEOUT_SECONDS."""
    compilation = _Compilation()
    task = asyncio.ensure_future(asyncio.to_thread(compilation.run, vocab, constraint))
    try:
        done, _ = await asyncio.wait({task}, timeout=COMPILE_TIMEOUT_SECONDS)
    except BaseException:  # the request was cancelled meanwhile
        _abandon(compilation, task)
        raise
    if not done:
        _abandon(compilation, task)
        raise GrammarTooComplex(
            f"{constraint.param}: compiling the schema took longer than {COMPILE_TIMEOUT_SECONDS:g} s; simplify it",
            param=constraint.param,
        )
    return task.result()


def _abandon(compilation: _Compilation, task: asyncio.Future[CompiledGrammar]) -> None:
    """Nobody waits for this compile any more: the thread finishes on its own and what it built is freed."""
    compilation.abandon()

    def free(done: asyncio.Future[CompiledGrammar]) -> None:
        if not done.cancelled() and done.exception() is None:
            free_grammar(done.result())

    task.add_done_callback(free)


def free_grammar(compiled: CompiledGrammar | None) -> None:
    if compiled is not None and compiled.sampler:
        llama_cpp.llama_sampler_free(compiled.sampler)
        compiled.sampler = None
