"""PromQL text helpers for scrape-aligned readings. Pure.

A gate's query qualifies for scrape alignment when it reads exactly one distinct vector selector (e.g.
``max(chat_load{tier="chat"})``, ``sum(rate(http_requests_total{code=~"5.."}[1m]))``) without ``offset`` or
``@``: ``max(timestamp(<selector>))`` is then the scrape time of its newest sample. Queries over several
selectors (``a / b``), scalars and literals keep the plain timer. ``timestamp()`` of anything but a bare
selector (``timestamp(max(x))``) is the evaluation time, which says nothing about scrapes — hence the rewrite.

:func:`with_sample_time` folds the value and the sample time into **one** request, so alignment costs no
extra query: ``label_replace((<query>), "stopline_part", "value", "", "") or
label_replace(max(timestamp(<selector>)), "stopline_part", "ts", "", "")``.
"""

from __future__ import annotations

PART_LABEL = "stopline_part"
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_KEYWORDS = {"bool", "and", "or", "unless", "inf", "nan", "atan2"} | _GROUPING | _AGGREGATIONS
_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_IDENT = _IDENT_START | set("0123456789")


def _skip_quoted(q: str, i: int) -> int:
    """Index after the string literal starting at ``i``."""
    quote = q[i]
    i += 1
    while i < len(q) and q[i] != quote:
        i += 2 if q[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_to(q: str, i: int, close: str) -> int:
    """Index after the ``close`` bracket matching the opening one at ``i`` (strings skipped)."""
    opening = q[i]
    depth = 0
    while i < len(q):
        c = q[i]
        if c in "\"'`":
            i = _skip_quoted(q, i)
            continue
        if c == opening:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _space(q: str, i: int) -> int:
    while i < len(q) and q[i].isspace():
        i += 1
    return i


def selectors(query: str) -> list[str] | None:
    """The vector selectors of a query in order, or None when it uses ``offset`` or ``@``."""
    q, i, found = query, 0, []
    while i < len(q):
        c = q[i]
        if c in "\"'`":
            i = _skip_quoted(q, i)
        elif c == "#":
            while i < len(q) and q[i] != "\n":
                i += 1
        elif c == "[":
            i = _skip_to(q, i, "]")
        elif c == "@":
            return None
        elif c == "{":
            end = _skip_to(q, i, "}")
            found.append(q[i:end])
            i = end
        elif c.isdigit() or (c == "." and i + 1 < len(q) and q[i + 1].isdigit()):
            while i < len(q) and (q[i] in _IDENT or q[i] == "."):
                i += 1
        elif c in _IDENT_START:
            start = i
            while i < len(q) and q[i] in _IDENT:
                i += 1
            word = q[start:i]
            after = _space(q, i)
            nxt = q[after] if after < len(q) else ""
            if word.lower() == "offset":
                return None
            if word.lower() in _GROUPING and nxt == "(":
                i = _skip_to(q, after, ")")  # a label list, not an expression
            elif nxt == "(" or word.lower() in _KEYWORDS:
                continue  # a function, an aggregation or an operator keyword
            elif nxt == "{":
                end = _skip_to(q, after, "}")
                found.append(word + q[after:end])
                i = end
            else:
                found.append(word)
        else:
            i += 1
    return found


def sample_selector(query: str) -> str | None:
    """The one vector selector whose sample times tell when new data for the query lands, or None."""
    found = selectors(query)
    if not found:
        return None
    distinct = {"".join(s.split()) for s in found}
    return found[0] if len(distinct) == 1 else None


def with_sample_time(query: str) -> str | None:
    """The query rewritten to also return its newest sample time in the same answer (None: not qualified)."""
    selector = sample_selector(query)
    if selector is None:
        return None
    return (
        f'label_replace(({query}), "{PART_LABEL}", "value", "", "") or '
        f'label_replace(max(timestamp({selector})), "{PART_LABEL}", "ts", "", "")'
    )
