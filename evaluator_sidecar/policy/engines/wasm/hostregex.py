"""The regex builtins OPA's WebAssembly leaves to the host, with Go's ``regexp`` semantics.

``regex.replace``, ``regex.find_n`` and ``regex.split`` follow OPA's
``v1/topdown/regex.go``, which calls Go's ``Regexp.ReplaceAllString``,
``FindAllString`` and ``Split``. Go's ``regexp`` is RE2, so patterns compile
with the RE2 library (``google-re2``, linear time whatever the input), called
through its match binding on UTF-8 bytes; the loops that walk successive
matches are ported from Go because Python's ``re``-style API walks them
differently (Go ignores an empty match right after a previous match:
``"baaac"`` with ``a*`` replaced by ``-`` is ``-b-c-`` in Go, ``-b--c-`` in
Python). ``$1``/``${name}`` expansion is Go's ``Regexp.Expand``.

``regex.globs_match`` is the intersection test of
``github.com/yashtewari/glob-intersection`` (v0.2.0, what OPA vendors), ported
token for token: ``.`` any character, ``[a-z]`` sets, ``+``/``*`` flags, ``\\``
escapes.

Operands OPA rejects raise :class:`HostBuiltinError` (the call is undefined).
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

import re2  # type: ignore[import-untyped]
from re2 import _re2

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError

__all__ = ["find_n", "globs_match", "regex_replace", "regex_split", "template_match"]

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _string(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise HostBuiltinError(f"operand {position} must be a string")
    return value


def _int(value: Any, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostBuiltinError(f"operand {position} must be an integer number")
    if not _INT64[0] <= value <= _INT64[1]:
        raise HostBuiltinError(f"operand {position} must be an integer number")
    return value


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


class _Regexp:
    """One compiled pattern: RE2's binding plus what Go's Expand needs (group names)."""

    __slots__ = ("groups", "names", "regexp")

    def __init__(self, pattern: str) -> None:
        _reject_go_only_errors(pattern)
        options = re2.Options()
        options.log_errors = False
        self.regexp = _re2.RE2(_utf8(pattern), options)
        if not self.regexp.ok():
            raise HostBuiltinError(f"error parsing regexp: {_text(self.regexp.error())}")
        self.groups = self.regexp.NumberOfCapturingGroups()
        self.names: dict[str, int] = {}
        for name, index in self.regexp.NamedCapturingGroups():
            self.names.setdefault(_text(name), index)

    def match(self, data: bytes, pos: int) -> list[tuple[int, int]] | None:
        """Go's ``doExecute`` from ``pos``: the spans of the leftmost-first match, or None."""
        spans = self.regexp.Match(_UNANCHORED, data, pos, len(data))
        return None if spans[0] == _NO_MATCH else list(spans)


def _reject_go_only_errors(pattern: str) -> None:
    """Go's parser rejects ``\\C`` (any byte), which RE2's C++ parser accepts."""
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] != "\\" or i + 1 >= n:
            i += 1
            continue
        nxt = pattern[i + 1]
        if nxt == "C":
            raise HostBuiltinError("error parsing regexp: invalid escape sequence: `\\C`")
        if nxt == "Q":  # a literal section runs to \E: nothing in it is an escape
            end = pattern.find("\\E", i + 2)
            i = n if end < 0 else end + 2
            continue
        i += 2


@functools.lru_cache(maxsize=100)
def _compile(pattern: str) -> _Regexp:
    return _Regexp(pattern)


def _compiled(pattern: str) -> _Regexp:
    try:
        return _compile(pattern)
    except HostBuiltinError:
        raise
    except Exception as exc:  # RE2's binding reports bad patterns in several ways
        raise HostBuiltinError(f"error parsing regexp: {exc}") from exc


def _rune_width(data: bytes, pos: int) -> int:
    """The byte length of the UTF-8 sequence at ``pos`` (0 at the end), as Go decodes it."""
    if pos >= len(data):
        return 0
    lead = data[pos]
    width = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return min(width, len(data) - pos)


def _all_matches(rx: _Regexp, data: bytes, n: int) -> list[list[tuple[int, int]]]:
    """Go's ``Regexp.allMatches``: up to ``n`` matches (all when ``n < 0``)."""
    end = len(data)
    if n < 0:
        n = end + 1
    found: list[list[tuple[int, int]]] = []
    pos, prev_end = 0, -1
    while len(found) < n and pos <= end:
        spans = rx.match(data, pos)
        if spans is None:
            break
        start, stop = spans[0]
        accept = True
        if stop == pos:
            # An empty match right after the previous match does not count.
            if start == prev_end:
                accept = False
            width = _rune_width(data, pos)
            pos = pos + width if width > 0 else end + 1
        else:
            pos = stop
        prev_end = stop
        if accept:
            found.append(spans)
    return found


def find_n(pattern: Any, value: Any, number: Any) -> list[str]:
    """``regex.find_n``: Go's ``FindAllString(value, n)`` (``n < 0`` finds all)."""
    rx = _compiled(_string(pattern, 1))
    data = _utf8(_string(value, 2))
    n = _int(number, 3)
    return [_text(data[m[0][0] : m[0][1]]) for m in _all_matches(rx, data, n)] if n else []


def regex_split(pattern: Any, value: Any) -> list[str]:
    """``regex.split``: Go's ``Regexp.Split(value, -1)``."""
    source = _string(pattern, 1)
    rx = _compiled(source)
    data = _utf8(_string(value, 2))
    if source and not data:
        return [""]
    parts: list[str] = []
    beg = end = 0
    for spans in _all_matches(rx, data, -1):
        end, stop = spans[0]
        if stop != 0:
            parts.append(_text(data[beg:end]))
        beg = stop
    if end != len(data):
        parts.append(_text(data[beg:]))
    return parts


def regex_replace(base: Any, pattern: Any, value: Any, *, max_bytes: int) -> str:
    """``regex.replace``: Go's ``ReplaceAllString`` (``$1``, ``${name}``, ``$$`` expanded)."""
    src = _utf8(_string(base, 1))
    rx = _compiled(_string(pattern, 2))
    template = _utf8(_string(value, 3))
    out = bytearray()
    last_end = search = 0
    end = len(src)
    while search <= end:
        spans = rx.match(src, search)
        if spans is None:
            break
        start, stop = spans[0]
        out += src[last_end:start]
        # No replacement for an empty match right after another match.
        if stop > last_end or start == 0:
            _expand(out, template, src, spans, rx)
            if len(out) > max_bytes:
                raise OverflowError("regex.replace result is larger than the memory cap allows")
        last_end = stop
        width = _rune_width(src, search)
        if search + width > stop:
            search += width
        elif search + 1 > stop:
            search += 1
        else:
            search = stop
    out += src[last_end:]
    return _text(bytes(out))


def _expand(
    out: bytearray, template: bytes, src: bytes, spans: list[tuple[int, int]], rx: _Regexp
) -> None:
    """Go's ``Regexp.expand``: append ``template`` with ``$n``/``${name}`` substituted."""
    while template:
        dollar = template.find(b"$")
        if dollar < 0:
            break
        out += template[:dollar]
        template = template[dollar + 1 :]
        if template[:1] == b"$":
            out += b"$"
            template = template[1:]
            continue
        parsed = _extract(template)
        if parsed is None:
            out += b"$"  # malformed: the $ is literal text
            continue
        name, num, template = parsed
        index = num if num >= 0 else rx.names.get(name, -1)
        if 0 <= index < len(spans) and spans[index][0] >= 0:
            out += src[spans[index][0] : spans[index][1]]
    out += template


def _is_name_char(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] == "L" or unicodedata.category(ch) == "Nd"


def _extract(template: bytes) -> tuple[str, int, bytes] | None:
    """Go's ``extract``: (name, number or -1, rest) after a ``$``, or None when malformed."""
    text = _text(template)
    brace = text.startswith("{")
    body = text[1:] if brace else text
    i = 0
    while i < len(body) and _is_name_char(body[i]):
        i += 1
    if i == 0:
        return None
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None
        i += 1
    num = 0
    for ch in name:
        if not "0" <= ch <= "9" or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + ord(ch) - 48
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, _utf8(body[i:])


def _quote_meta(text: str) -> str:
    """Go's ``regexp.QuoteMeta``."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def _template_regex(template: str, start: str, end: str) -> str:
    """OPA's ``generateRegexTemplate``: literal text quoted, delimited parts as groups."""
    spans: list[tuple[int, int]] = []
    level = begin = 0
    for i, ch in enumerate(template):
        if ch == start:
            level += 1
            if level == 1:
                begin = i
        elif ch == end:
            level -= 1
            if level == 0:
                spans.append((begin, i + 1))
            elif level < 0:
                raise HostBuiltinError(f"unbalanced braces in {template!r}")
    if level != 0:
        raise HostBuiltinError(f"unbalanced braces in {template!r}")
    out = ["^"]
    last = 0
    for lo, hi in spans:
        inner = template[lo + 1 : hi - 1]
        _compiled(f"^{inner}$")
        out.append(f"{_quote_meta(template[last:lo])}({inner})")
        last = hi
    out.append(_quote_meta(template[last:]) + "$")
    return "".join(out)


def template_match(template: Any, value: Any, start: Any, end: Any) -> bool:
    """``regex.template_match``: ``value`` against ``template``, its delimited parts regexes."""
    text, subject = _string(template, 1), _string(value, 2)
    first, last = _string(start, 3), _string(end, 4)
    if len(_utf8(first)) != 1 or len(_utf8(last)) != 1:
        raise HostBuiltinError("the delimiters must be exactly one character long")
    rx = _compiled(_template_regex(text, first, last))
    return rx.match(_utf8(subject), 0) is not None


# -- regex.globs_match: github.com/yashtewari/glob-intersection --------------------------------
_NONE, _PLUS, _STAR = 0, 1, 2
_CHAR, _DOT, _SET = 0, 1, 2


#: A set of characters as sorted, merged, inclusive code point ranges: ``[\x00-\U0010ffff]``
#: is one pair, not a million members.
_Ranges = tuple[tuple[int, int], ...]


def _ranges(pairs: list[tuple[int, int]]) -> _Ranges:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(pairs):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _overlap(a: _Ranges, b: _Ranges) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


class _Token:
    __slots__ = ("flag", "kind", "runes")

    def __init__(self, kind: int, runes: _Ranges = ()) -> None:
        self.kind = kind
        self.runes = runes  # the character for _CHAR, the members for _SET
        self.flag = _NONE

    def equal(self, other: _Token) -> bool:
        return self.kind == other.kind and (self.kind == _DOT or self.runes == other.runes)


def _token_match(a: _Token, b: _Token) -> bool:
    """``gintersect.Match``: whether two tokens (flags ignored) share a character."""
    if _DOT in (a.kind, b.kind):
        return True
    return _overlap(a.runes, b.runes)


def _next_rune(index: int, text: str) -> tuple[int, str, bool] | None:
    """(next index, rune, escaped), or None at the end; a trailing ``\\`` is an error."""
    if index >= len(text):
        return None
    if text[index] == "\\":
        if index == len(text) - 1:
            raise HostBuiltinError(f"input:{text}, pos:{index}, input ends with a \\ (escape)")
        return index + 2, text[index + 1], True
    return index + 1, text[index], False


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while (step := _next_rune(index, text)) is not None:
        index, ch, escaped = step
        if not escaped and ch == ".":
            token = _Token(_DOT)
        elif not escaped and ch == "]":
            raise HostBuiltinError(f"input:{text}, pos:{index}, set-close ']' with no '['")
        elif not escaped and ch == "[":
            index, token = _tokenize_set(index, text)
        elif not escaped and ch in "+*":
            raise HostBuiltinError(f"input:{text}, pos:{index}, flag '{ch}' must follow a non-flag")
        else:
            token = _Token(_CHAR, ((ord(ch), ord(ch)),))
        flag = _next_rune(index, text)
        if flag is not None and not flag[2] and flag[1] in "+*":
            token.flag = _PLUS if flag[1] == "+" else _STAR
            index = flag[0]
        tokens.append(token)
    return tokens


def _tokenize_set(index: int, text: str) -> tuple[int, _Token]:
    runes: list[tuple[int, int]] = []
    prev: str | None = None
    while (step := _next_rune(index, text)) is not None:
        index, ch, escaped = step
        if escaped or ch not in "-]":
            runes.append((ord(ch), ord(ch)))
            prev = ch
            continue
        if ch == "]":
            return index, _Token(_SET, _ranges(runes))
        if prev is None:
            raise HostBuiltinError(f"input:{text}, pos:{index}, range '-' must follow a character")
        if index >= len(text) - 1:
            raise HostBuiltinError(f"input:{text}, pos:{index}, range '-' must precede a character")
        index, last, escaped = _next_rune(index, text) or (index, "", False)
        if not escaped and last in "]-":
            raise HostBuiltinError(f"input:{text}, pos:{index}, range '-' then a special symbol")
        if last < prev:
            raise HostBuiltinError(f"input:{text}, pos:{index}, range is out of order")
        runes.append((ord(prev), ord(last)))
        prev = None
    raise HostBuiltinError(f"input:{text}, pos:{index}, found [ without matching ]")


def _simplify(tokens: list[_Token]) -> list[_Token]:
    """Adjacent equal flagged tokens merge (``t+t*`` is ``t+``, ``t*t*`` is ``t*``)."""
    if not tokens:
        return tokens
    simple = [tokens[0]]
    latest = tokens[0]
    for token in tokens[1:]:
        if _NONE not in (token.flag, latest.flag) and token.equal(latest):
            simple[-1].flag = _PLUS if _PLUS in (token.flag, latest.flag) else _STAR
            continue
        latest = token
        simple.append(token)
    return simple


def _go_slice(glob: list[_Token], lo: int, hi: int) -> list[_Token]:
    if not 0 <= lo <= hi <= len(glob):  # Go panics; OPA reports the call as failed
        raise HostBuiltinError("globs_match: the globs cannot be compared")
    return glob[lo:hi]


def _trim(g1: list[_Token], g2: list[_Token]) -> tuple[list[_Token], list[_Token]] | None:
    """``trimGlobs``: drop equal unflagged prefixes and suffixes (None: they differ)."""
    lo = 0
    while lo < len(g1) and lo < len(g2) and g1[lo].flag == _NONE and g2[lo].flag == _NONE:
        if not _token_match(g1[lo], g2[lo]):
            return None
        lo += 1
    lo = max(lo - 1, 0)  # keep one token, so no glob becomes empty
    r1, r2 = len(g1) - 1, len(g2) - 1
    while min(r1, r2) >= 0 and min(r1, r2) >= lo and g1[r1].flag == g2[r2].flag == _NONE:
        if not _token_match(g1[r1], g2[r2]):
            return None
        r1, r2 = r1 - 1, r2 - 1
    if r1 < len(g1) - 1:
        r1, r2 = r1 + 1, r2 + 1
    return _go_slice(g1, lo, r1 + 1), _go_slice(g2, lo, r2 + 1)


def _intersect_normal(g1: list[_Token], g2: list[_Token]) -> bool:
    i = 0
    while i < len(g1) and i < len(g2):
        if g1[i].flag != _NONE or g2[i].flag != _NONE:
            return _intersect_special(g1[i:], g2[i:])
        if not _token_match(g1[i], g2[i]):
            return False
        i += 1
    return i == len(g1) and i == len(g2)


def _intersect_special(g1: list[_Token], g2: list[_Token]) -> bool:
    flagged, other = (g1, g2) if g1[0].flag != _NONE else (g2, g1)
    if flagged[0].flag == _PLUS:
        return _intersect_plus(flagged, other)
    return _intersect_star(flagged, other)


def _intersect_plus(plussed: list[_Token], other: list[_Token]) -> bool:
    if not other:  # Go indexes other[0] and panics
        raise HostBuiltinError("globs_match: the globs cannot be compared")
    if not _token_match(plussed[0], other[0]):
        return False
    if _intersect_star(plussed, other[1:]):
        return True
    return other[0].flag != _NONE and _intersect_normal(plussed[1:], other)


def _intersect_star(starred: list[_Token], other: list[_Token]) -> bool:
    star = starred[0]
    nxt = starred[1] if len(starred) > 1 else None
    for i, token in enumerate(other):
        if (
            nxt is not None
            and _token_match(token, nxt)
            and _intersect_normal(starred[1:], other[i:])
        ):
            return True
        if not _token_match(token, star):
            return False
    return nxt is None


def globs_match(glob1: Any, glob2: Any) -> bool:
    """``regex.globs_match``: whether some non-empty string matches both globs."""
    g1 = _simplify(_tokenize(_string(glob1, 1)))
    g2 = _simplify(_tokenize(_string(glob2, 2)))
    trimmed = _trim(g1, g2)
    if trimmed is None:
        return False
    return _intersect_normal(*trimmed)
