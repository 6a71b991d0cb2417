"""The chunk encoders alone (no model): the frames a stream writes, including a failure after it started."""

from __future__ import annotations

import json
from typing import Any

from llm_inference.api.openai.chunks import ChatChunks, TextChunks
from llm_inference.engines.base import GenerationRequest, SamplingParams
from llm_inference.service import Delta, Failed, Finished, Prepared, Timings, Usage

FINISHED = Finished("stop", Usage(3, 2), Timings(0.1, 0.2, 10.0))


def prepared() -> Prepared:
    request = GenerationRequest(request_id="abc", prompt="p", sampling=SamplingParams(2, 0.0, 1.0))
    return Prepared(model="m", engine=None, request=request, operation="chat")  # type: ignore[arg-type]


def frames(data: bytes) -> list[Any]:
    parts = [part for part in data.decode().split("\n\n") if part]
    assert all(part.startswith("data: ") for part in parts)
    return [json.loads(part[len("data: ") :]) for part in parts]


def test_chat_chunks_name_the_role_first_then_text_then_the_finish() -> None:
    encode = ChatChunks(prepared(), include_usage=False)
    written = frames(encode(Delta("Hel")) + encode(Delta("lo")) + encode(FINISHED))
    assert [f["choices"][0]["delta"] for f in written] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [f["choices"][0]["finish_reason"] for f in written] == [None, None, None, "stop"]
    assert {f["id"] for f in written} == {"chatcmpl-abc"} and all("usage" not in f for f in written)


def test_an_empty_generation_still_names_the_role() -> None:
    written = frames(ChatChunks(prepared(), include_usage=True)(FINISHED))
    assert written[0]["choices"][0]["delta"]["role"] == "assistant"
    assert written[-1]["choices"] == [] and written[-1]["usage"]["total_tokens"] == 5
    assert all(f["usage"] is None for f in written[:-1])


def test_text_chunks_and_a_failure_mid_stream() -> None:
    encode = TextChunks(prepared(), include_usage=False)
    first, failure = frames(encode(Delta("x")) + encode(Failed("timeout", "generation exceeded the limit")))
    assert first["object"] == "text_completion" and first["choices"][0]["text"] == "x"
    # OpenAI's SDKs raise APIError on a frame with an `error` key.
    assert failure == {
        "error": {"message": "generation exceeded the limit", "type": "server_error", "param": None, "code": "timeout"}
    }


def test_the_templated_delta_frame_is_byte_for_byte_the_encoded_chunk() -> None:
    """The per-token fast path (a frame template around the text) must write exactly what encoding the chunk
    struct writes, whatever the text holds."""
    from llm_inference.api.http.streaming import data_frame
    from llm_inference.api.openai.responses import (
        ChatChunkChoice,
        ChatCompletionChunk,
        ChunkDelta,
        Completion,
        TextChoice,
    )

    texts = ['a "quoted" word', "line\nbreak \\ back", "émoji 🚀 \u0000 \x1f", "</s>", "x" * 300]
    for include_usage in (False, True):
        chat, text = ChatChunks(prepared(), include_usage), TextChunks(prepared(), include_usage)
        chat(Delta("first"))  # past the role chunk
        unset_or_none = None if include_usage else chat.no_usage
        for piece in texts:
            assert chat(Delta(piece)) == data_frame(
                ChatCompletionChunk(
                    id=chat.id,
                    created=chat.created,
                    model="m",
                    choices=[ChatChunkChoice(ChunkDelta(content=piece))],
                    usage=unset_or_none,
                )
            )
            assert text(Delta(piece)) == data_frame(
                Completion(
                    id=text.id,
                    created=text.created,
                    model="m",
                    choices=[TextChoice(text=piece, finish_reason=None)],
                    usage=unset_or_none,
                )
            )
