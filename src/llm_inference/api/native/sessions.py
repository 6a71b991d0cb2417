"""POST /api/sessions, GET and DELETE /api/sessions/{session_id}: server-side conversations, continued by
/api/chat with `session_id`. Per-replica state (docs/api.md "Sessions")."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, route
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from llm_inference.api.http.errors import ErrorResponse
from llm_inference.api.native.schemas import CreateSessionRequest, SessionView
from llm_inference.api.native.translate import message_view
from llm_inference.errors import InvalidParameter
from llm_inference.service import Session, start_session

NOT_FOUND = {
    400: ResponseSpec(ErrorResponse, description="A malformed request"),
    404: ResponseSpec(ErrorResponse, description="No such session here: never created, deleted, expired or evicted"),
}
CREATE_ERRORS = {
    400: ResponseSpec(ErrorResponse, description="Malformed JSON"),
    404: ResponseSpec(ErrorResponse, description="The model is not in LLM_ALLOWED_MODELS"),
    422: ResponseSpec(ErrorResponse, description="A field breaks its rule; `param` names it"),
    429: ResponseSpec(ErrorResponse, description="Every one of LLM_MAX_SESSIONS sessions is answering a turn"),
}


def session_view(session: Session, ttl_seconds: float) -> SessionView:
    return SessionView(
        id=session.id,
        model=session.model,
        messages=[message_view(m) for m in session.messages],
        created_at=round(session.created_at, 3),
        last_used_at=round(session.last_used_at, 3),
        expires_at=round(session.last_used_at + ttl_seconds, 3),
        tokens=session.tokens,
        truncated_messages=session.truncated_messages,
        busy=session.busy,
    )


class SessionController(Controller):
    path = "/api/sessions"
    tags = ("sessions",)

    @post(
        "/",
        status_code=201,
        responses=CREATE_ERRORS,
        summary="Start a server-side conversation",
        description="The body may be left out (or `{}`): the default model, no system message. Continue it "
        "with POST /api/chat and `session_id`.",
        opt={"body_optional": True},
    )
    async def create(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[CreateSessionRequest | None] = None
    ) -> SessionView:
        if data is None and await request.body():  # `null` is no way of leaving the body out
            raise InvalidParameter("the body must be an object, or left out")
        body = data or CreateSessionRequest()
        session = await start_session(state.service, body.model, body.system)
        return session_view(session, state.service.sessions.ttl_seconds)

    @route("/{session_id:str}", http_method="OPTIONS", include_in_schema=False)
    async def allowed_methods(self) -> Response[None]:
        # Litestar builds a path's automatic OPTIONS answer from its first handler only (GET here), so this
        # path says its methods itself.
        return Response(None, status_code=204, headers={"Allow": "DELETE, GET, OPTIONS"})

    @get("/{session_id:str}", responses=NOT_FOUND, summary="A session's conversation and state")
    async def read(self, session_id: FromPath[str], state: State) -> SessionView:
        return session_view(await state.service.sessions.get(session_id), state.service.sessions.ttl_seconds)

    @delete("/{session_id:str}", status_code=204, responses=NOT_FOUND, summary="Forget a session")
    async def remove(self, session_id: FromPath[str], state: State) -> None:
        await state.service.sessions.delete(session_id)
