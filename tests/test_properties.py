"""Property-based tests of what users type: dates, timestamps, zones and forget selectors.

Whatever the input, the only failure is BadInput (a clear message, exit code 2): never a ValueError,
TypeError or OverflowError escaping from the standard library.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant_forget.core.errors import BadInput
from assistant_forget.runner.selector import MAX_CONTAINS, Selector
from assistant_forget.device.localtime import localize, parse_date, parse_date_range, parse_offset, parse_timestamp, zone

TODAY = date(2026, 6, 1)  # the selector's "today", fixed so the properties do not depend on the clock
SETTINGS = settings(max_examples=150, deadline=None)

dates = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
past = st.dates(min_value=date(1970, 1, 1), max_value=TODAY)
junk = st.one_of(st.text(max_size=30), st.text(alphabet="0123456789-/T: ", max_size=14),
                 st.from_regex(r"\d{4}-\d{2}-\d{2}", fullmatch=True), st.from_regex(r"\d{2,5}-\d{1,3}-\d{1,3}"))
anything = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=10), st.lists(st.integers(), max_size=2))


def bad_or(fn, *args):
    """fn(*args), or None when it raised BadInput; any other exception fails the test."""
    try:
        return fn(*args)
    except BadInput as e:
        assert str(e), "a BadInput must say what is wrong"
        return None


@SETTINGS
@given(dates)
def test_parse_date_round_trips(d: date) -> None:
    assert parse_date(d.isoformat()) == d
    assert parse_date(d) == d


@SETTINGS
@given(junk)
def test_parse_date_accepts_exactly_the_iso_calendar_dates(s: str) -> None:
    d = bad_or(parse_date, s)
    assert d is None or d.isoformat() == s  # whatever parses is written exactly as YYYY-MM-DD


@SETTINGS
@given(anything)
def test_parse_date_refuses_non_strings(x: object) -> None:
    with pytest.raises(BadInput):
        parse_date(x)


@SETTINGS
@given(dates, dates)
def test_date_ranges_are_inclusive_and_never_inverted(a: date, b: date) -> None:
    if a <= b:
        assert parse_date_range(a.isoformat(), b.isoformat()) == (a, b)
    else:
        with pytest.raises(BadInput, match="start is after the end"):
            parse_date_range(a.isoformat(), b.isoformat())


@SETTINGS
@given(st.text(max_size=40), st.text(max_size=40))
def test_timestamps_zones_and_offsets_fail_only_with_bad_input(stamp: str, tz: str) -> None:
    for fn, args in [(parse_timestamp, (stamp,)), (zone, (tz,)), (parse_offset, (tz,)), (localize, (stamp, tz))]:
        bad_or(fn, *args)


@SETTINGS
@given(st.datetimes(min_value=datetime(1900, 1, 1)),
       st.sampled_from(["Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati", "+05:45"]))
def test_a_utc_instant_localizes_to_the_date_of_its_zone(naive, tz: str) -> None:
    cap = localize(naive.strftime("%Y-%m-%dT%H:%M:%S") + "Z", tz)
    assert parse_date(cap.local_date) - naive.date() in (timedelta(days=-1), timedelta(0), timedelta(days=1))


@SETTINGS
@given(past)
def test_a_past_day_is_a_date_selector(d: date) -> None:
    assert Selector.parse(date_=d.isoformat(), today=TODAY) == Selector("date", d.isoformat(), d.isoformat())


@SETTINGS
@given(past, past)
def test_ranges_parse_in_order_and_inverted_ones_are_refused(a: date, b: date) -> None:
    if a <= b:
        sel = Selector.parse(start=a.isoformat(), end=b.isoformat(), today=TODAY)
        assert (sel.kind, sel.start, sel.end) == ("range", a.isoformat(), b.isoformat())
    else:
        with pytest.raises(BadInput, match="swap them"):
            Selector.parse(start=a.isoformat(), end=b.isoformat(), today=TODAY)


@SETTINGS
@given(st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=5))
def test_empty_or_blank_phrases_are_refused(s: str) -> None:
    with pytest.raises(BadInput):
        Selector.parse(contains=s, today=TODAY)


@SETTINGS
@given(st.text(min_size=1, max_size=MAX_CONTAINS).filter(lambda s: s.strip() and "\x00" not in s))
def test_a_phrase_is_kept_verbatim(s: str) -> None:
    assert Selector.parse(contains=s, today=TODAY) == Selector("contains", text=s)


@SETTINGS
@given(st.dates(min_value=TODAY + timedelta(days=1)))
def test_future_days_are_refused(d: date) -> None:
    with pytest.raises(BadInput, match="in the future"):
        Selector.parse(date_=d.isoformat(), today=TODAY)


@SETTINGS
@given(*[st.one_of(st.none(), st.text(max_size=12), junk)] * 4,
       st.one_of(st.none(), st.lists(st.text(max_size=140), max_size=3)))
def test_any_selector_arguments_give_a_selector_or_bad_input(d, start, end, contains, ids) -> None:
    sel = bad_or(lambda: Selector.parse(date_=d, start=start, end=end, ids=ids, contains=contains, today=TODAY))
    if sel is not None:
        given_ = [v for v in (d, start or end, ids, contains) if v not in (None, [], "")]
        assert len(given_) == 1 and sel.kind in ("date", "range", "utterance", "contains")
        if sel.kind in ("date", "range"):
            assert sel.start <= sel.end <= TODAY.isoformat()
