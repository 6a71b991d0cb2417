"""An incremental reader of one JSON text: it follows the path (keys and indices) to every value as the text
arrives, so a stream can pass on a string's characters, or a value's raw text, while the model is still
writing it. Only what tool-call parsing needs: it trusts the text to be JSON (the grammar made it so) and
stops following at the first character that is not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Path = tuple[str | int, ...]

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WHITESPACE = " \t\n\r"
_DELIMITERS = ",]}" + _WHITESPACE


@dataclass
class _Container:
    is_object: bool
    key: str | int = 0  # the current key (object) or index (array)
    expect: str = "first"  # first | key | colon | value | next


@dataclass
class JsonPieces:
    """What one `feed` found: for each string value its new characters (decoded), the raw text of each value
    being captured, and the values that ended, each by its path."""

    strings: list[tuple[Path, str]] = field(default_factory=list)
    raw: list[tuple[Path, str]] = field(default_factory=list)
    ended: list[tuple[Path, str | None]] = field(default_factory=list)  # a string value's whole text, else None


class JsonStream:
    """Feed it text; `capture(path)` says which values' raw text to report (tool calls' arguments)."""

    def __init__(self, capture: Callable[[Path], bool] = lambda path: False) -> None:
        self._stack: list[_Container] = []
        self._capture = capture
        self._capturing: tuple[Path, int] | None = None  # the captured value's path and stack depth
        self._captured_path: Path = ()
        self._capture_started = False
        self._string: list[str] | None = None  # the string being read, decoded so far
        self._string_is_key = False
        self._escape: str | None = None  # an escape sequence read so far (after the backslash)
        self._high_surrogate: int | None = None
        self._scalar = False  # inside a number, true, false or null
        self._done = False
        self.broken = False  # a character that is not JSON was met; nothing more is read

    def path(self) -> Path:
        return tuple(c.key for c in self._stack)

    def feed(self, text: str) -> JsonPieces:
        pieces = JsonPieces()
        for char in text:
            if self.broken:
                break
            self._char(char, pieces)
        return pieces

    def _char(self, char: str, pieces: JsonPieces) -> None:
        inside_capture = self._inside_capture(char)
        if self._string is not None:
            self._string_char(char, pieces)
        elif self._scalar and char not in _DELIMITERS:
            pass
        else:
            if self._scalar:  # the delimiter ends the number or literal, then is read for itself
                self._scalar = False
                self._value_ended(pieces, None)
            if char not in _WHITESPACE:
                self._structural(char, pieces)
        if inside_capture or self._capture_started:
            self._capture_started = False
            assert self._capturing is not None or inside_capture
            self._append(pieces.raw, self._captured_path, char)

    def _inside_capture(self, char: str) -> bool:
        """Whether `char` belongs to the value being captured (read before the character moves the state)."""
        if self._capturing is None:
            return False
        depth = self._capturing[1]
        if len(self._stack) > depth or self._string is not None:
            return True
        return self._scalar and char not in _DELIMITERS

    def _structural(self, char: str, pieces: JsonPieces) -> None:
        top = self._stack[-1] if self._stack else None
        if top is not None and top.expect == "colon":
            if char == ":":
                top.expect = "value"
            else:
                self.broken = True
            return
        if top is not None and top.expect == "next":
            if char == ",":
                if top.is_object:
                    top.expect = "key"
                else:
                    assert isinstance(top.key, int)
                    top.key += 1
                    top.expect = "value"
            elif char == ("}" if top.is_object else "]"):
                self._close(pieces)
            else:
                self.broken = True
            return
        if top is not None and top.is_object and top.expect in ("first", "key"):
            if char == '"':
                self._string, self._string_is_key = [], True
            elif char == "}" and top.expect == "first":
                self._close(pieces)
            else:
                self.broken = True
            return
        if top is not None and not top.is_object and top.expect == "first" and char == "]":
            self._close(pieces)
            return
        self._value_start(char, pieces)

    def _value_start(self, char: str, pieces: JsonPieces) -> None:
        if self._done:
            self.broken = True
            return
        if self._stack:
            self._stack[-1].expect = "value"
        path = self.path()
        if self._capturing is None and self._capture(path):
            self._capturing = (path, len(self._stack))
            self._captured_path, self._capture_started = path, True
        if char == "{":
            self._stack.append(_Container(is_object=True))
        elif char == "[":
            self._stack.append(_Container(is_object=False))
        elif char == '"':
            self._string, self._string_is_key = [], False
        elif char in "-0123456789tfn":
            self._scalar = True
        else:
            self.broken = True

    def _close(self, pieces: JsonPieces) -> None:
        self._stack.pop()
        self._value_ended(pieces, None)

    def _value_ended(self, pieces: JsonPieces, string: str | None) -> None:
        path = self.path()
        pieces.ended.append((path, string))
        if self._capturing is not None and self._capturing[1] == len(self._stack):
            self._capturing = None
        if self._stack:
            self._stack[-1].expect = "next"
        else:
            self._done = True

    def _string_char(self, char: str, pieces: JsonPieces) -> None:
        assert self._string is not None
        decoded: str | None
        if self._escape is not None:
            self._escape += char
            decoded = self._escaped()
            if decoded is None:
                return
        elif char == "\\":
            self._escape = ""
            return
        elif char == '"':
            self._string_ended(pieces)
            return
        else:
            decoded = char
        if decoded:
            self._string.append(decoded)
            if not self._string_is_key:
                self._append(pieces.strings, self.path(), decoded)

    def _escaped(self) -> str | None:
        """The character an escape sequence stands for once it is complete ("" for the first half of a
        surrogate pair), None while it is not."""
        sequence = self._escape
        assert sequence is not None
        if sequence[0] != "u":
            self._escape = None
            return _ESCAPES.get(sequence[0], sequence[0])
        if len(sequence) < 5:
            return None
        self._escape = None
        code = int(sequence[1:], 16)
        if 0xD800 <= code < 0xDC00:
            self._high_surrogate = code
            return ""
        if 0xDC00 <= code < 0xE000 and self._high_surrogate is not None:
            code = 0x10000 + ((self._high_surrogate - 0xD800) << 10) + (code - 0xDC00)
        self._high_surrogate = None
        return chr(code)

    def _string_ended(self, pieces: JsonPieces) -> None:
        assert self._string is not None
        text = "".join(self._string)
        self._string = None
        if self._string_is_key:
            top = self._stack[-1]
            top.key, top.expect = text, "colon"
        else:
            self._value_ended(pieces, text)

    @staticmethod
    def _append(pieces: list[tuple[Path, str]], path: Path, text: str) -> None:
        if pieces and pieces[-1][0] == path:
            pieces[-1] = (path, pieces[-1][1] + text)
        else:
            pieces.append((path, text))
