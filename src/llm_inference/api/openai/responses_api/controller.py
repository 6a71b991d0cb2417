"""POST /v1/responses: a conversation (text or input items) answered as one response object, or as the
Responses API's events (`stream: true`). Nothing is stored, so the stored-response routes answer 404."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from llm_inference.api.openai.responses_api.events import event_stream
from llm_inference.api.openai.responses_api.output import whole_response
from llm_inference.api.openai.responses_api.request import CreateResponseRequest
from llm_inference.api.openai.responses_api.translate import responses_input
from llm_inference.errors import ResponseNotStored
from llm_inference.service import complete_chat, open_chat_stream


class ResponsesController(Controller):
    path = "/responses"

    @post("/", status_code=200, summary="Create a model response (OpenAI's Responses API)")
    async def create(self, data: JSONBody[CreateResponseRequest], state: State) -> Response[Any]:
        chat, settings = responses_input(data)
        if data.stream:
            return event_stream(state.service, await open_chat_stream(state.service, chat), settings)
        created_at = int(time.time())
        prepared, outcome = await complete_chat(state.service, chat)
        return Response(whole_response(prepared, outcome, settings, created_at))

    @get(["/{response_id:str}", "/{response_id:str}/input_items"], summary="Stored responses: none are stored")
    async def retrieve(self, response_id: FromPath[str]) -> None:
        raise ResponseNotStored(response_id)

    @delete("/{response_id:str}", summary="Stored responses: none are stored")
    async def remove(self, response_id: FromPath[str]) -> None:
        raise ResponseNotStored(response_id)

    @post("/{response_id:str}/cancel", summary="Background responses: none run", opt={"no_body": True})
    async def cancel(self, response_id: FromPath[str]) -> None:
        raise ResponseNotStored(response_id)
