"""POST /v1/completions: continue a prompt (OpenAI's legacy completions), whole or as chunks (`stream: true`).

Several prompts (a list of strings or of token-id lists) and `n` make several choices, prompt by prompt: the
choice with index p * n + j is prompt p's j-th. `echo` puts the prompt before each choice's text, with its
tokens' log probabilities when `logprobs` is set (the way evaluation harnesses score a continuation).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.params import JSONBody

from llm_inference.api.openai.chunks import choices_stream, chunk_stream, completion_id, usage
from llm_inference.api.openai.logprobs import text_logprobs
from llm_inference.api.openai.responses import Completion, TextChoice
from llm_inference.api.openai.schemas import CompletionRequest
from llm_inference.api.openai.translate import CompletionPrompt, completion_input
from llm_inference.engines.base import TokenLogprob
from llm_inference.service import InferenceService, Outcome, Prepared, SamplingInput, Usage, complete, prepare
from llm_inference.service.choices import check_choice_count, choice_sampling, open_all, run_all
from llm_inference.service.generation import open_stream


async def _prepare(service: InferenceService, asked: SamplingInput, prompt: CompletionPrompt, param: str) -> Prepared:
    if isinstance(prompt, str):
        return await prepare(service, asked, prompt=prompt, prompt_param=param)
    return await prepare(service, asked, prompt_tokens=prompt, prompt_param=param)


def _choice_sampling(asked: SamplingInput, index: int) -> SamplingInput:
    """Choice `index` of a prompt: only its first choice scores the prompt (echo with logprobs), so the others
    can share the prompt's KV cells (a sequence that scores its prompt computes it whole); they all answer
    those scores. A request that only scores (max_tokens 0) needs them on every choice."""
    sampling = choice_sampling(asked, index)
    if index and asked.max_tokens != 0 and sampling.prompt_logprobs is not None:
        sampling = dataclasses.replace(sampling, prompt_logprobs=None)
    return sampling


def _choice(
    body: CompletionRequest,
    prepared: Prepared,
    outcome: Outcome,
    prompt_logprobs: tuple[TokenLogprob, ...] | None,
    index: int,
) -> TextChoice:
    text = outcome.text
    logprobs = None
    if body.echo:
        text = prepared.request.prompt + text
        if body.logprobs is not None:
            logprobs = text_logprobs((*(prompt_logprobs or ()), *outcome.logprobs))
    elif body.logprobs is not None:
        logprobs = text_logprobs(outcome.logprobs)
    return TextChoice(text=text, finish_reason=outcome.finish_reason, index=index, logprobs=logprobs)


class CompletionsController(Controller):
    path = "/completions"

    @post("/", status_code=200, summary="Create a completion (OpenAI-compatible)")
    async def create(self, data: JSONBody[CompletionRequest], state: State) -> Response[Any]:
        service: InferenceService = state.service
        sampling, prompts = completion_input(data)
        n = data.n or 1
        check_choice_count(service.settings, n * len(prompts), "n" if len(prompts) == 1 else "prompt")
        params = ["prompt" if len(prompts) == 1 else f"prompt[{index}]" for index in range(len(prompts))]
        runs = [
            (prompt, param, choice_sampling(sampling, j))
            for prompt, param in zip(prompts, params, strict=True)
            for j in range(n)
        ]
        include_usage = data.stream_options is not None and data.stream_options.include_usage
        if data.stream and len(runs) == 1:
            stream = await open_stream(service, await _prepare(service, sampling, prompts[0], params[0]))
            echo_logprobs = data.logprobs is not None
            return chunk_stream(service, stream, False, include_usage, echo=data.echo, echo_logprobs=echo_logprobs)
        if data.stream:

            async def open_one(prompt: CompletionPrompt, param: str, asked: SamplingInput) -> Any:
                return await open_stream(service, await _prepare(service, asked, prompt, param))

            streams = await open_all([open_one(*run) for run in runs])
            for index, stream in enumerate(streams.streams):  # a prompt's scores, from its first choice
                stream.prompt_logprobs = streams.streams[index - index % n].prompt_logprobs
            prompt_tokens = sum(len(s.prepared.request.prompt_token_ids or ()) for s in streams.streams[::n])
            echo_logprobs = data.logprobs is not None
            return choices_stream(
                service, streams, False, include_usage, prompt_tokens, echo=data.echo, echo_logprobs=echo_logprobs
            )

        async def run_one(prompt: CompletionPrompt, param: str, asked: SamplingInput) -> tuple[Prepared, Outcome]:
            prepared = await _prepare(service, asked, prompt, param)
            return prepared, await complete(service, prepared)

        results = await run_all([run_one(*run) for run in runs])
        prepared = results[0][0]
        choices = [
            _choice(data, p, outcome, results[index - index % n][1].prompt_logprobs, index)
            for index, (p, outcome) in enumerate(results)
        ]
        # Each prompt is read once for its n choices (they share its KV cells); each choice's answer counts.
        total = Usage(
            sum(outcome.usage.prompt_tokens for _, outcome in results[::n]),
            sum(outcome.usage.completion_tokens for _, outcome in results),
        )
        return Response(
            Completion(
                id=completion_id("cmpl", prepared),
                created=int(time.time()),
                model=prepared.model,
                choices=choices,
                usage=usage(total),
            )
        )
