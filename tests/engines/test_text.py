"""Stop sequences that span several chunks, and UTF-8 split across token pieces (engines/text.py)."""

from __future__ import annotations

from llm_inference.engines.text import IncrementalText, StopMatcher


def feed(matcher: StopMatcher, pieces: list[str]) -> tuple[str, bool]:
    emitted = []
    for piece in pieces:
        text, stopped = matcher.push(piece)
        emitted.append(text)
        if stopped:
            return "".join(emitted), True
    return "".join(emitted) + matcher.flush(), False


def test_a_stop_sequence_split_across_chunks_is_found_and_never_emitted() -> None:
    assert feed(StopMatcher(["</end>"]), ["Hello </", "en", "d> more"]) == ("Hello ", True)


def test_text_that_only_looked_like_a_stop_start_is_released() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.push("a ST") == ("a ", False)  # "ST" held back: it could begin "STOP"
    assert matcher.push("ART") == ("START", False)
    assert feed(StopMatcher(["STOP"]), ["a ST"]) == ("a ST", False)  # released at the end


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    assert feed(StopMatcher(["world", "lo"]), ["hel", "lo world"]) == ("hel", True)


def test_utf8_split_across_pieces_is_held_until_complete() -> None:
    text = IncrementalText()
    encoded = "é€".encode()
    assert [text.push(encoded[i : i + 1]) for i in range(len(encoded))] == ["", "é", "", "", "€"]
    assert text.push(b"\xff") == "\ufffd" and text.flush() == ""
