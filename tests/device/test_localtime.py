"""Local days (DESIGN invariant 4): the date is the user's calendar day where and when they spoke."""

from __future__ import annotations

from datetime import date

import pytest

from assistant_forget.device import localtime
from assistant_forget.core.errors import BadInput
from assistant_forget.device.localtime import localize, parse_date, parse_date_range, utc_micros


def test_late_evening_in_new_york_is_that_day_although_utc_is_the_next() -> None:
    c = localize("2026-03-03T23:30:00-05:00", "America/New_York")
    assert (c.utc, c.local_date) == ("2026-03-04T04:30:00Z", "2026-03-03")


@pytest.mark.parametrize("timestamp, tz, utc, day", [
    # US spring forward, 2026-03-08 02:00 EST -> 03:00 EDT
    ("2026-03-08T01:59:59-05:00", "America/New_York", "2026-03-08T06:59:59Z", "2026-03-08"),
    ("2026-03-08T03:00:00-04:00", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-08"),
    # US fall back, 2026-11-01: 01:30 happens twice, once in EDT and once in EST
    ("2026-11-01T01:30:00-04:00", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-01"),
    ("2026-11-01T01:30:00-05:00", "America/New_York", "2026-11-01T06:30:00Z", "2026-11-01"),
    ("2026-11-01T23:59:00-05:00", "America/New_York", "2026-11-02T04:59:00Z", "2026-11-01"),
    # EU spring forward, 2026-03-29 02:00 CET -> 03:00 CEST
    ("2026-03-29T01:59:00+01:00", "Europe/Berlin", "2026-03-29T00:59:00Z", "2026-03-29"),
    ("2026-03-29T03:00:00+02:00", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-29"),
    # EU fall back, 2026-10-25: 02:30 happens twice
    ("2026-10-25T02:30:00+02:00", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25"),
    ("2026-10-25T02:30:00+01:00", "Europe/Berlin", "2026-10-25T01:30:00Z", "2026-10-25"),
    ("2026-10-25T00:15:00+01:00", "Europe/London", "2026-10-24T23:15:00Z", "2026-10-25"),
    # a zone whose DST began at midnight (Brazil, 2018-11-04 00:00 -> 01:00): the day starts at 01:00
    ("2018-11-03T23:59:00-03:00", "America/Sao_Paulo", "2018-11-04T02:59:00Z", "2018-11-03"),
    ("2018-11-04T01:00:00-02:00", "America/Sao_Paulo", "2018-11-04T03:00:00Z", "2018-11-04"),
    # fixed offsets and fractions of a second
    ("2026-03-03T23:30:00+05:30", "+05:30", "2026-03-03T18:00:00Z", "2026-03-03"),
    ("2026-03-03T00:10:00.25-09:30", "-09:30", "2026-03-03T09:40:00.250000Z", "2026-03-03"),
])
def test_dst_transitions_keep_the_local_day(timestamp: str, tz: str, utc: str, day: str) -> None:
    c = localize(timestamp, tz)
    assert (c.utc, c.tz, c.local_date) == (utc, tz, day)


def test_repeated_hour_gives_two_instants_on_the_same_day() -> None:
    first = localize("2026-11-01T01:30:00-04:00", "America/New_York")
    second = localize("2026-11-01T01:30:00-05:00", "America/New_York")
    assert utc_micros(second.utc) - utc_micros(first.utc) == 3600 * 10**6
    assert first.local_date == second.local_date == "2026-11-01"


NY = "America/New_York"


@pytest.mark.parametrize("timestamp, tz, message", [
    # the skipped hour does not exist: whichever offset is written, the zone disagrees
    ("2026-03-08T02:30:00-05:00", NY, f"offset -05:00 does not match {NY} at that instant (-04:00)"),
    ("2026-03-08T02:30:00-04:00", NY, f"offset -04:00 does not match {NY} at that instant (-05:00)"),
    ("2026-03-29T02:30:00+01:00", "Europe/Berlin",
     "offset +01:00 does not match Europe/Berlin at that instant (+02:00)"),
    ("2018-11-04T00:30:00-03:00", "America/Sao_Paulo",
     "offset -03:00 does not match America/Sao_Paulo at that instant (-02:00)"),
    # summer offset written in winter
    ("2026-03-03T23:30:00-04:00", NY, f"offset -04:00 does not match {NY} at that instant (-05:00)"),
    ("2026-03-03T23:30:00+05:45", "+05:30", "offset +05:45 does not match +05:30 at that instant (+05:30)"),
])
def test_offset_that_disagrees_with_the_zone_is_rejected(timestamp: str, tz: str, message: str) -> None:
    with pytest.raises(BadInput) as e:
        localize(timestamp, tz)
    assert str(e.value) == message


def test_utc_timestamp_states_the_instant_only() -> None:
    # 'Z' claims no local offset (RFC 9557): the zone alone decides the day
    assert localize("2026-03-04T04:30:00Z", "America/New_York").local_date == "2026-03-03"
    assert localize("2026-03-04T04:30:00Z", "Asia/Tokyo").local_date == "2026-03-04"
    with pytest.raises(BadInput, match="offset \\+00:00 does not match America/New_York"):
        localize("2026-03-04T04:30:00+00:00", "America/New_York")


def test_flight_from_tokyo_to_london_keeps_each_utterance_on_the_local_day() -> None:
    before = [localize("2026-03-03T08:00:00+09:00", "Asia/Tokyo"),  # UTC is still March 2
              localize("2026-03-03T10:30:00+09:00", "Asia/Tokyo")]  # boards at 11:00 JST = 02:00Z
    after = [localize("2026-03-03T15:30:00+00:00", "Europe/London"),  # lands 15:00 GMT, same date
             localize("2026-03-03T23:30:00+00:00", "Europe/London")]  # already March 4 in Tokyo
    assert before[0].utc.startswith("2026-03-02")
    assert [c.local_date for c in before + after] == ["2026-03-03"] * 4
    # had the late utterance been dated in the zone the day started in, it would have moved to March 4
    assert localize("2026-03-04T08:30:00+09:00", "Asia/Tokyo").utc == after[1].utc
    assert localize("2026-03-04T08:30:00+09:00", "Asia/Tokyo").local_date == "2026-03-04"


@pytest.mark.parametrize("timestamp, message", [
    ("2026-03-03T23:30:00", "has no UTC offset"),
    ("2026-03-03", "is not of the form"),
    ("2026-03-03 23:30:00-05:00", "is not of the form"),
    ("20260303T233000-0500", "is not of the form"),
    ("2026-03-03T23:30:00-05:00:30", "is not of the form"),
    ("2026-02-30T12:00:00Z", "is not a valid date and time"),
    ("2026-03-03T24:30:00Z", "is not a valid date and time"),
    ("2026-03-03T12:00:00+15:00", "outside -14:00..+14:00"),
    ("2026-03-03T12:00:00+05:75", "minutes must be 00-59"),
])
def test_malformed_or_naive_timestamps_are_rejected(timestamp: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        localize(timestamp, "UTC")


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "America", "../etc/passwd", "/etc/localtime", "localtime",
                                "america/new_york", "Europe/London ", "", "zone.tab", "Factory", "+5:30", "GMT+2"])
def test_unknown_zones_are_rejected(tz: str) -> None:
    with pytest.raises(BadInput, match="time zone|offset"):
        localize("2026-03-03T12:00:00Z", tz)


def test_non_string_inputs_are_rejected() -> None:
    with pytest.raises(BadInput, match="timestamp must be a string"):
        localize(1772580600, "UTC")  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="time zone must be a string"):
        localize("2026-03-03T12:00:00Z", None)  # type: ignore[arg-type]


def test_zones_come_from_the_pinned_tzdata() -> None:
    assert {"America/New_York", "Europe/London", "Asia/Tokyo", "UTC"} <= localtime.zone_names()
    assert len(localtime.zone_names()) > 400


def test_parse_date_is_strict() -> None:
    assert parse_date("2026-03-03") == date(2026, 3, 3)
    assert parse_date(date(2026, 3, 3)) == date(2026, 3, 3)
    for bad, message in [("2026-3-3", "not of the form YYYY-MM-DD"), ("03/03/2026", "not of the form YYYY-MM-DD"),
                         ("2026-03-03T00:00", "not of the form YYYY-MM-DD"), (" 2026-03-03", "not of the form"),
                         ("2026-13-01", "not a calendar date"), ("2025-02-29", "not a calendar date"),
                         (20260303, "not of the form")]:
        with pytest.raises(BadInput, match=message):
            parse_date(bad)  # type: ignore[arg-type]


def test_date_range_is_inclusive_and_ordered() -> None:
    assert parse_date_range("2026-03-03", "2026-03-03") == (date(2026, 3, 3), date(2026, 3, 3))
    with pytest.raises(BadInput, match="the start is after the end"):
        parse_date_range("2026-03-04", "2026-03-03")


def test_utc_strings_sort_by_instant() -> None:
    whole, fraction = localize("2026-03-03T12:00:00Z", "UTC").utc, localize("2026-03-03T12:00:00.5Z", "UTC").utc
    assert utc_micros(whole) < utc_micros(fraction)
    with pytest.raises(BadInput, match="canonical UTC"):
        utc_micros("2026-03-03T12:00:00.5Z")
