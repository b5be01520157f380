"""Include/exclude globs, matched against paths relative to spec.source.uri."""

from __future__ import annotations

import re
from collections.abc import Callable


def compile_globs(include: list[str], exclude: list[str]) -> Callable[[str], bool]:
    """A predicate over paths relative to the source uri: matches an include and no exclude."""
    inc = [glob_regex(p) for p in include]
    exc = [glob_regex(p) for p in exclude]
    return lambda rel: any(r.match(rel) for r in inc) and not any(r.match(rel) for r in exc)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob: '*' and '?' stay within one path segment, '**' crosses directories
    ('**/' also matches no directory at all), '[...]' is a character class ('[!...]' negates)."""
    pat = pattern.strip()
    while pat.startswith("./"):
        pat = pat[2:]
    pat = pat.lstrip("/")
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pat[i + 2:]:
            j = pat.index("]", i + 2)
            body = pat[i + 1:j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")
