"""Reading the account's usage, page after page, without taking a cut list for the whole."""

from __future__ import annotations

from datetime import UTC, datetime

from motionflow.errors import ProviderError
from motionflow.providers.connection import Connection
from motionflow.providers.envelopes import UsageEvent, UsageRead, parse_usage

__all__ = ["USAGE_PAGE_BUDGET", "next_page", "read_usage"]

USAGE_PAGE_BUDGET = 250
"""Usage pages read at most in one :func:`read_usage` call (each one request)."""


def next_page(data: object, page: list[UsageEvent]) -> tuple[str | None, bool]:
    """The cursor of the page after a usage page, and whether the page says there is one.

    Only a ``has_more`` that clearly says no (``false``, ``0``, ``"false"``) ends the read;
    without one (absent or null), a ``next_cursor`` means more; any other value means more,
    since taking a cut list for the whole is the costly mistake. The cursor is
    ``next_cursor``, else the last event's id.
    """
    if not isinstance(data, dict):
        return None, False
    raw = data.get("next_cursor")
    cursor = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    flag = data.get("has_more")
    if flag is None:
        more = bool(cursor)
    else:
        said = flag.strip().lower() if isinstance(flag, str) else flag
        more = not (said is False or said == 0 or said in ("false", "0", "no", ""))
    if not cursor and page:
        cursor = page[-1].event_id or ""
    return cursor or None, more


async def read_usage(
    conn: Connection,
    since: datetime,
    *,
    model: str | None = None,
    status: str | None = None,
    limit: int = 100,
    max_pages: int = USAGE_PAGE_BUDGET,
) -> UsageRead:
    """Usage events since ``since``, newest first, following the pages to the last one.

    A page that says ``has_more`` is followed by asking for ``before=<next_cursor>``, or,
    without a cursor, ``before=<the id of its last event>``. The read stops short, and
    says so with ``complete=False``, when ``max_pages`` pages were read, when a page says
    ``has_more`` but gives no way to ask for the next (or the same cursor twice), or when
    a page after the first cannot be read. A partial read is not evidence that a charge
    does not exist.

    Args:
        conn: the connection to the API host.
        since: the earliest event time (the submit's ``sent_at``, minus a little slack).
        model: only this model.
        status: only events with this status (as the service spells it).
        limit: events per page.
        max_pages: pages to read at most (each is one rate-limited request).

    Returns:
        The events and whether they are all there (:class:`UsageRead`).

    Raises:
        ProviderError: the first page cannot be read (nothing was read).
    """
    when = since if since.tzinfo else since.replace(tzinfo=UTC)
    params = {"from": when.isoformat(), "limit": str(limit)}
    if model:
        params["model"] = model
    if status:
        params["status"] = status
    what = "read the account usage"
    url = conn.base_url + "/v1/account/usage"
    events: list[UsageEvent] = []
    budget = max(max_pages, 1)
    cursors: set[str] = set()
    pages = 0
    while pages < budget:
        try:
            response, data = await conn.get_json(url, what=what, params=params)
            if data is None:
                raise conn.api_error(response, what)
        except ProviderError as exc:
            if not pages:
                raise
            problem = f"page {pages + 1} could not be read: {conn.redact(str(exc))}"
            return UsageRead(events, complete=False, pages=pages, problem=problem)
        pages += 1
        page = parse_usage(data)
        events += page
        cursor, more = next_page(data, page)
        if not more:
            return UsageRead(events, complete=True, pages=pages)
        if cursor is None or cursor in cursors:
            problem = f"page {pages} says there is more but " + (
                "names no next_cursor and no event id" if cursor is None else "repeats a cursor"
            )
            return UsageRead(events, complete=False, pages=pages, problem=problem)
        cursors.add(cursor)
        params = {**params, "before": cursor}
    problem = f"stopped after {pages} pages (the page budget); older events were not read"
    return UsageRead(events, complete=False, pages=pages, problem=problem)
