"""MATCHES patterns: RE2 (linear-time, no backtracking), compiled once at load.

RE2 guarantees that no pattern can stall a sidecar, whatever the input. The
``google-re2`` package's ``re``-style ``search`` rebuilds a Match object and
re-encodes offsets on every call (about 6 µs); the rule language only needs a
yes/no answer, so the matcher calls RE2's ``Match`` binding directly (about 1 µs)
with captures disabled. Search semantics: a pattern matches anywhere in the
text unless anchored with ``^``/``$``.
"""

from __future__ import annotations

from typing import Any

import re2  # type: ignore[import-untyped]

__all__ = ["MEMO_ENTRIES", "MEMO_TEXT_LENGTH", "Pattern", "compile_pattern"]

try:  # The binding behind re2's public API; fall back to the public API if it moves.
    from re2 import _re2 as _binding

    _UNANCHORED: Any = _binding.RE2.Anchor.UNANCHORED
except (ImportError, AttributeError):  # pragma: no cover - depends on the installed re2
    _binding = None
    _UNANCHORED = None

_NO_MATCH = (-1, -1)

#: Bounds of each pattern's memo of answers (see ``Pattern.search_memo``).
MEMO_ENTRIES = 4096
MEMO_TEXT_LENGTH = 256


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # errors are reported as load problems, not on stderr
    options.never_capture = True
    return options


class Pattern:
    """One compiled RE2 pattern with a fast ``search(text) -> bool``."""

    __slots__ = ("_fallback", "_memo", "_regexp", "pattern")

    def __init__(self, pattern: str) -> None:
        """Compile ``pattern``; raises ValueError with RE2's reason when it is not valid RE2."""
        self.pattern = pattern
        options = _options()
        try:
            self._fallback = re2.compile(pattern, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(f"{pattern!r} is not a valid RE2 pattern: {reason}") from exc
        self._regexp = (
            _binding.RE2(pattern.encode("utf-8"), options) if _binding is not None else None
        )
        self._memo: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        """True when the pattern matches somewhere in ``text``."""
        regexp = self._regexp
        if regexp is None:  # pragma: no cover - depends on the installed re2
            return self._fallback.search(text) is not None
        data = text.encode("utf-8", "surrogatepass")
        return regexp.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH  # type: ignore[no-any-return]

    def search_memo(self, text: str) -> bool:
        """``search`` remembering answers for short texts (tags and values repeat across calls).

        The memo is bounded (``MEMO_ENTRIES`` texts of at most ``MEMO_TEXT_LENGTH``
        characters), so a stream of distinct inputs costs no more than ``search``.
        """
        hit = self._memo.get(text)
        if hit is not None:
            return hit
        found = self.search(text)
        if len(text) <= MEMO_TEXT_LENGTH and len(self._memo) < MEMO_ENTRIES:
            self._memo[text] = found
        return found

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


def compile_pattern(pattern: str) -> Pattern:
    """Compile ``pattern`` as RE2; raises ValueError saying why it is not valid."""
    return Pattern(pattern)
