"""POST /api/tokenize and /api/detokenize: the model's own tokenizer, for counting and inspecting prompts."""

from __future__ import annotations

from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody

from llm_inference.api.native.docs import ERROR_RESPONSES
from llm_inference.api.native.schemas import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from llm_inference.api.native.translate import chat_messages
from llm_inference.service import detokenize, tokenize


class TokensController(Controller):
    path = "/api"
    tags = ("tokens",)

    @post("/tokenize", status_code=200, responses=ERROR_RESPONSES, summary="Tokenize a text or a conversation")
    async def tokenize(self, data: JSONBody[TokenizeRequest], state: State) -> TokenizeResponse:
        text = data.text or None  # UNSET is falsy, and an empty text cannot pass the schema
        messages = chat_messages(data.messages) if data.messages else None
        result = await tokenize(state.service, data.model, text=text, messages=messages, add_special=data.add_special)
        return TokenizeResponse(result.model, result.tokens, len(result.tokens), result.context_length)

    @post("/detokenize", status_code=200, responses=ERROR_RESPONSES, summary="The text of token ids")
    async def detokenize(self, data: JSONBody[DetokenizeRequest], state: State) -> DetokenizeResponse:
        result = await detokenize(state.service, data.model, data.tokens)
        return DetokenizeResponse(result.model, result.text)
