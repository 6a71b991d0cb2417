"""Which messages `truncate: "oldest"` may drop, and in what groups (the real model's prompts are in
tests/api/test_context_pruning.py)."""

from __future__ import annotations

from llm_inference.engines.base import ChatMessage
from llm_inference.service.truncation import droppable_turns, without_turns


def conversation(*roles: str) -> list[ChatMessage]:
    return [ChatMessage(role, f"{role} {index}") for index, role in enumerate(roles)]


def test_a_turn_is_a_user_message_with_its_answers_and_the_last_turn_is_kept() -> None:
    messages = conversation("system", "user", "assistant", "user", "assistant", "assistant", "user")
    assert droppable_turns(messages) == [[1, 2], [3, 4, 5]]


def test_system_messages_are_never_dropped_wherever_they_are() -> None:
    messages = conversation("system", "user", "system", "assistant", "user", "assistant", "user")
    turns = droppable_turns(messages)
    assert turns == [[1, 3], [4, 5]]
    assert [m.role for m in without_turns(messages, turns)] == ["system", "system", "user"]


def test_an_opening_assistant_message_is_a_turn_of_its_own() -> None:
    messages = conversation("assistant", "user", "assistant", "user")
    assert droppable_turns(messages) == [[0], [1, 2]]


def test_the_last_user_turn_keeps_what_follows_it() -> None:
    # An assistant message after the last user message (a prefilled answer) stays with it.
    messages = conversation("user", "assistant", "user", "assistant")
    assert droppable_turns(messages) == [[0, 1]]
    assert without_turns(messages, droppable_turns(messages)) == messages[2:]


def test_nothing_to_drop_in_a_single_turn() -> None:
    assert droppable_turns(conversation("system", "user")) == []
    assert droppable_turns(conversation("user", "assistant")) == []
