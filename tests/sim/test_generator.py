"""The synthetic user: determinism, rhythm, time zones and DST, canaries, entities, held-out sets, CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import device_sim.persona
from assistant_forget.device.clinc import intent_labels, load_clinc
from assistant_forget.core.errors import BadInput
from device_sim.__main__ import main
from device_sim.canary import (DEFAULT_CANARY_FORMAT, Canary, candidate, enumerate_candidates, parse_canary_spec,
                               random_secret, sample_candidates, secret_index, space_size)
from device_sim.generator import (SimConfig, generate_days, heldout_utterances, is_heldout_text, localize,
                                  plan_days, sensitive_days, write_jsonl)
from device_sim.persona import make_persona

START = date(2026, 1, 1)
PIN = "my bank pin is 4 8 1 9 3"


def local_dates(records: list[dict]) -> list[date]:
    return [datetime.fromisoformat(r["timestamp"]).date() for r in records]


def test_same_arguments_give_identical_bytes_and_other_seeds_differ(tmp_path):
    canaries = [Canary(PIN, 5, 3)]
    paths = []
    for i, seed in enumerate((11, 11, 12)):
        records = generate_days(make_persona(seed), START, 21, seed, canaries=canaries)
        paths.append(tmp_path / f"{i}.jsonl")
        assert write_jsonl(records, paths[-1]) == len(records) > 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    other_days = generate_days(make_persona(11), START, 21, 12, canaries=canaries)  # same persona, other seed
    assert [r["text"] for r in other_days] != [json.loads(x)["text"] for x in paths[0].read_text().splitlines()]


def test_records_have_the_jsonl_format_in_time_order():
    records = generate_days(make_persona(3), START, 14, 3)
    assert all(list(r) == ["text", "intent", "timestamp", "tz", "source"] for r in records)
    assert {r["source"] for r in records} == {"synthetic"}
    instants = [datetime.fromisoformat(r["timestamp"]) for r in records]
    assert instants == sorted(instants)


def test_a_shorter_log_is_a_prefix_and_a_canary_only_adds_its_lines():
    p = make_persona(5)
    long = generate_days(p, START, 40, 5)
    short = generate_days(p, START, 25, 5)
    assert [r for r, d in zip(long, local_dates(long)) if d < START + timedelta(days=25)] == short
    planted = generate_days(p, START, 40, 5, canaries=[Canary(PIN, 9, 4)])
    assert [r for r in planted if r["text"] != PIN] == long
    assert len(planted) == len(long) + 4


def test_weekday_and_weekend_counts_follow_the_configured_poisson_means():
    cfg, days = SimConfig(), 420
    for mean in (20.0, 6.0):
        records = generate_days(make_persona(2), START, days, 2, mean_per_day=mean, travel=False)
        per_day = Counter(local_dates(records))
        sample_mean = {}
        for weekend, factor in ((False, cfg.weekday), (True, cfg.weekend)):
            counts = [per_day[d] for d in (START + timedelta(days=k) for k in range(days))
                      if (d.weekday() >= 5) == weekend]
            sample_mean[weekend] = sum(counts) / len(counts)
            # Poisson: variance = mean, so the sample mean lies within 4 standard errors of mean * factor
            assert abs(sample_mean[weekend] - mean * factor) < 4 * math.sqrt(mean * factor / len(counts))
        assert sample_mean[False] > sample_mean[True]
        # the rhythm keeps the weekly mean: mean_per_day is the average over all days
        assert abs(len(records) / days - mean) < 4 * math.sqrt(mean * max(cfg.weekday, cfg.weekend) / days)


def test_intents_are_clinc_labels_and_cover_everyday_and_long_tail_intents():
    records = generate_days(make_persona(4), START, 60, 4)
    used = Counter(r["intent"] for r in records)
    assert set(used) <= set(intent_labels())
    assert {"alarm", "timer", "text", "make_call", "play_music", "weather", "oos"} <= set(used)
    assert len(used) > len(device_sim.persona.CORE_INTENTS) + 10  # long-tail intents occur too


@pytest.mark.parametrize("seed", [0, 1, 6, 13])
def test_timestamps_carry_the_zone_offset_at_that_instant_across_dst_and_travel(seed):
    start, days = date(2026, 3, 1), 45  # US DST starts March 8, EU DST March 29
    persona = make_persona(seed)
    records = generate_days(persona, start, days, seed)
    plans = {p.date: p for p in plan_days(persona, start, days, seed)}
    for r in records:
        stamp = datetime.fromisoformat(r["timestamp"])
        tz = ZoneInfo(r["tz"])
        assert stamp.utcoffset() == stamp.astimezone(tz).utcoffset(), r
        assert stamp.astimezone(tz).replace(tzinfo=None) == stamp.replace(tzinfo=None), r  # the wall time existed
        assert r["tz"] == plans[stamp.date()].tz, r  # local date in the zone of that day
    assert {r["tz"] for r in records} == {persona.tz, persona.trip.tz}
    late = [datetime.fromisoformat(r["timestamp"]) for r in records]
    assert any(t.hour >= 23 and t.astimezone(timezone.utc).date() != t.date() for t in late)
    assert any(t.hour < 9 and "alarm" == r["intent"] for t, r in zip(late, records))


def test_localize_moves_times_in_a_dst_gap_forward_and_keeps_existing_ones():
    london = ZoneInfo("Europe/London")
    assert localize(datetime(2026, 3, 29, 1, 30), london).isoformat() == "2026-03-29T02:30:00+01:00"
    assert localize(datetime(2026, 3, 29, 0, 30), london).isoformat() == "2026-03-29T00:30:00+00:00"
    assert localize(datetime(2026, 10, 25, 1, 30), london).utcoffset() == timedelta(hours=1)  # first of the two


def test_trip_days_are_in_the_destination_zone_with_flights_between():
    persona = make_persona(8)
    plans = plan_days(persona, START, 40, 8)
    legs = [p.leg for p in plans]
    first, last = legs.index("arrive"), max(i for i, leg in enumerate(legs) if leg in ("arrive", "away"))
    assert legs[first - 1] == "depart" and legs[last + 1] == "home"
    assert all(p.tz == persona.trip.tz for p in plans[first:last + 1])
    assert all(p.tz == persona.tz for p in plans[:first] + plans[last + 1:])
    assert all(p.tz == persona.tz for p in plan_days(persona, START, 40, 8, travel=False))
    records = generate_days(persona, START, 40, 8)
    by_day = {}
    for r in records:
        by_day.setdefault(datetime.fromisoformat(r["timestamp"]).date(), []).append(r)
    assert max(datetime.fromisoformat(r["timestamp"]).hour for r in by_day[plans[first - 1].date]) < 17
    assert min(datetime.fromisoformat(r["timestamp"]).hour for r in by_day[plans[first].date]) >= 10
    assert any(persona.trip.city in r["text"] or persona.trip.country in r["text"] for r in records)


def test_canaries_are_said_exactly_repeats_times_on_their_day_and_nowhere_else():
    other = "the gate code is 7 7 2 1"
    canaries = [Canary(PIN, 5, 3), Canary(other, date(2026, 1, 12), 2)]
    records = generate_days(make_persona(9), START, 20, 9, canaries=canaries)
    for text, day, repeats in ((PIN, START + timedelta(days=5), 3), (other, date(2026, 1, 12), 2)):
        hits = [d for r, d in zip(records, local_dates(records)) if r["text"] == text]
        assert hits == [day] * repeats
    assert {r["intent"] for r in records if r["text"] in (PIN, other)} == {"oos"}


def test_bad_canaries_and_arguments_are_refused_with_clear_errors(tmp_path):
    p = make_persona(1)
    with pytest.raises(BadInput, match="outside the generated days"):
        generate_days(p, START, 10, 1, canaries=[Canary(PIN, 10)])
    with pytest.raises(BadInput, match="outside the generated days"):
        generate_days(p, START, 10, 1, canaries=[Canary(PIN, date(2025, 12, 31))])
    for bad in (dict(text="", day=1), dict(text="a\nb", day=1), dict(text=PIN, day=-1),
                dict(text=PIN, day=1, repeats=0), dict(text=PIN, day=1, intent="banking"),
                dict(text=PIN, day=datetime(2026, 1, 2))):
        with pytest.raises(BadInput):
            Canary(**bad)
    for spec in ("no day here", "@3", f"{PIN}@x", f"{PIN}@2*many"):
        with pytest.raises(BadInput, match="canary"):
            parse_canary_spec(spec)
    for kwargs in (dict(days=0), dict(days=True), dict(seed=-1), dict(mean_per_day=0),
                   dict(start=datetime(2026, 1, 1))):
        args = dict(start=START, days=5, seed=1, mean_per_day=20.0) | kwargs
        with pytest.raises(BadInput):
            generate_days(p, args["start"], args["days"], args["seed"], mean_per_day=args["mean_per_day"])
    with pytest.raises(BadInput):
        make_persona(-3)
    with pytest.raises(BadInput, match="does not exist"):
        write_jsonl(generate_days(p, START, 2, 1), tmp_path / "missing" / "log.jsonl")
    with pytest.raises(BadInput, match="string fields"):
        write_jsonl([{"text": "hi"}], tmp_path / "log.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_persona_entities_appear_and_medications_only_on_health_days():
    for seed in (0, 1, 2):
        persona = make_persona(seed)
        records = generate_days(persona, START, 60, seed)
        texts = [r["text"] for r in records]
        assert [e for e in persona.entities() if not any(e in t for t in texts)] == []
        health = {d for d, kind in sensitive_days(persona, START, 60, seed).items() if kind == "health"}
        med_days = {d for r, d in zip(records, local_dates(records))
                    if any(m in r["text"] for m in persona.medications)}
        assert med_days and med_days <= health
        assert len(set(sensitive_days(persona, START, 60, seed).values())) == 2


def test_personas_differ_and_persona_is_a_function_of_its_seed():
    a, b = make_persona(21), make_persona(21)
    assert a == b and a.to_dict() == b.to_dict()
    assert len({make_persona(s).name for s in range(10)}) > 5
    assert len({tuple(make_persona(s).templates["text"]) for s in range(10)}) > 3


def _unigram_cross_entropy(test: list[str], train: list[str], vocab: int) -> float:
    """Add-one smoothed unigram cross-entropy (nats per word): the obviously-correct reference LM."""
    counts = Counter(w for t in train for w in t.split())
    total = sum(counts.values())
    words = [w for t in test for w in t.split()]
    return -sum(math.log((counts[w] + 1) / (total + vocab)) for w in words) / len(words)


def test_a_persona_phrasing_is_its_own_so_its_log_predicts_its_heldout_utterances():
    clinc = [t for t, _ in load_clinc()["train"]]
    for a, b in ((1, 2), (3, 4), (5, 6)):
        log_a = [r["text"] for r in generate_days(make_persona(a), START, 30, a)]
        log_b = [r["text"] for r in generate_days(make_persona(b), START, 30, b)]
        held = [r["text"] for r in heldout_utterances(make_persona(a), 200, a)]
        vocab = len({w for t in clinc + log_a + log_b + held for w in t.split()})
        own = _unigram_cross_entropy(held, clinc + log_a, vocab)
        assert own < _unigram_cross_entropy(held, clinc + log_b, vocab)
        assert own < _unigram_cross_entropy(held, clinc, vocab)


def test_heldout_utterances_are_distinct_deterministic_and_never_in_any_log():
    persona = make_persona(1)
    held = heldout_utterances(persona, 300, 1)
    texts = {r["text"] for r in held}
    assert len(held) == len(texts) == 300
    assert held == heldout_utterances(persona, 300, 1)
    assert all(is_heldout_text(t) for t in texts)
    for seed in (1, 2):
        log = generate_days(persona, START, 60, seed)
        assert not texts & {r["text"] for r in log}
        assert not any(is_heldout_text(r["text"]) for r in log)
    assert {r["intent"] for r in held} <= set(intent_labels())
    assert heldout_utterances(persona, 0, 1) == []


def test_generated_lines_validate_with_the_importer(tmp_path):
    from assistant_forget.device.importer import validate_lines

    records = generate_days(make_persona(6), date(2026, 3, 1), 40, 6, canaries=[Canary(PIN, 3, 2)])
    write_jsonl(records, tmp_path / "log.jsonl")
    utterances = validate_lines((tmp_path / "log.jsonl").read_text().splitlines())
    assert len(utterances) == len(records)
    assert [u.local_date for u in utterances] == [d.isoformat() for d in local_dates(records)]
    assert [u.text for u in utterances] == [r["text"] for r in records]
    held = heldout_utterances(make_persona(6), 50, 6)
    assert len(validate_lines(json.dumps(r) for r in held)) == 50


def test_canary_candidate_space_enumerates_and_samples_secrets_of_the_same_format():
    assert space_size(DEFAULT_CANARY_FORMAT) == 10 ** 5
    assert candidate(DEFAULT_CANARY_FORMAT, secret_index(DEFAULT_CANARY_FORMAT, PIN)) == PIN
    small = "door code {d}{d}"
    every = list(enumerate_candidates(small))
    assert len(set(every)) == 100 and [secret_index(small, t) for t in every] == list(range(100))
    sample = sample_candidates(DEFAULT_CANARY_FORMAT, 999, seed=3, exclude=[PIN])
    assert len(set(sample)) == 999 and PIN not in sample
    assert all(0 <= secret_index(DEFAULT_CANARY_FORMAT, t) < 10 ** 5 for t in sample)
    assert sample == sample_candidates(DEFAULT_CANARY_FORMAT, 999, seed=3, exclude=[PIN])
    assert sample != sample_candidates(DEFAULT_CANARY_FORMAT, 999, seed=4, exclude=[PIN])
    rest = sample_candidates(small, 99, seed=0, exclude=["door code 42"])
    assert sorted(rest) == [t for t in every if t != "door code 42"]
    assert random_secret(small, 1) in every
    for fmt in ("no slots", "pin {x}", "pin {d:2}", "pin {"):
        with pytest.raises(BadInput, match="format"):
            space_size(fmt)
    with pytest.raises(BadInput, match="at most"):
        sample_candidates(small, 100, seed=0, exclude=["door code 00"])
    with pytest.raises(BadInput, match="not a secret"):
        secret_index(small, "door code 4")


def test_cli_generate_writes_the_library_output_and_prints_one_line(tmp_path, capsys):
    out = tmp_path / "log.jsonl"
    assert main(["generate", "--days", "12", "--seed", "4", "--start", "2026-02-01", "--mean", "15",
                 "--canary", f"{PIN}@3*2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    records = generate_days(make_persona(4), date(2026, 2, 1), 12, 4, mean_per_day=15.0, canaries=[Canary(PIN, 3, 2)])
    write_jsonl(records, tmp_path / "expected.jsonl")
    assert out.read_bytes() == (tmp_path / "expected.jsonl").read_bytes()
    assert len(printed) == 1 and f"wrote {len(records)} utterances over 12 days" in printed[0]
    assert "2 canary lines" in printed[0] and make_persona(4).display_name in printed[0]


def test_cli_refuses_bad_input_without_writing(tmp_path, capsys):
    out = tmp_path / "log.jsonl"
    for extra in (["--canary", f"{PIN}@30"], ["--start", "March 1"], ["--mean", "-2"]):
        assert main(["generate", "--days", "10", "--seed", "1", "--out", str(out)] + extra) == BadInput.exit_code
        assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists()




def test_a_travellers_utterances_fall_on_the_local_day_of_the_zone_they_were_said_in(tmp_path):
    """Persona 16 lives in Los Angeles and spends part of June in Paris (UTC+2 in summer). Imported, every
    utterance's local day is its calendar day in the zone it was said in: one said at 23:31 UTC in Paris is on
    the next day, and abroad the day often differs from the day at home at the same instant."""
    from assistant_forget.device.device import Device
    from assistant_forget.device.importer import import_jsonl, validate_lines
    from assistant_forget.device.store import LogStore

    seed, start, days = 16, date(2026, 6, 1), 30
    persona = make_persona(seed)
    home, away = ZoneInfo(persona.tz), ZoneInfo(persona.trip.tz)
    assert (persona.tz, persona.trip.tz) == ("America/Los_Angeles", "Europe/Paris")
    plans = plan_days(persona, start, days, seed)
    trip = [p for p in plans if p.tz == persona.trip.tz]
    assert trip and {p.leg for p in trip} == {"arrive", "away"}
    records = generate_days(persona, start, days, seed)
    write_jsonl(records, tmp_path / "log.jsonl")
    utterances = validate_lines((tmp_path / "log.jsonl").read_text(encoding="utf-8").splitlines())
    assert {r["tz"] for r in records} == {persona.tz, persona.trip.tz}  # the zone changed on the way
    zone_of_day = {p.date.isoformat(): p.tz for p in plans}
    abroad = []
    for r, u in zip(records, utterances, strict=True):
        instant = datetime.fromisoformat(r["timestamp"]).astimezone(timezone.utc)
        said_in = ZoneInfo(r["tz"])
        assert u.tz == r["tz"] and u.local_date == instant.astimezone(said_in).date().isoformat(), r
        assert zone_of_day[u.local_date] == r["tz"], r  # the day's zone is the zone of capture
        if said_in == away:
            abroad.append((instant, u))
    assert len(abroad) == sum(r["tz"] == persona.trip.tz for r in records) > 0
    at_home_day = [u for t, u in abroad if t.astimezone(home).date().isoformat() != u.local_date]
    assert at_home_day and all(t.astimezone(away).utcoffset() == timedelta(hours=2) for t, _ in abroad)
    (late,) = [(t, u) for t, u in abroad if t.date().isoformat() != u.local_date]  # after midnight in Paris
    t, u = late
    assert (t.isoformat(), u.local_date) == ("2026-06-16T23:31:14+00:00", "2026-06-17")
    assert t.astimezone(home).date() == date(2026, 6, 16)  # at home it was still the afternoon before

    stamp = datetime.combine(trip[1].date - timedelta(days=1), datetime.min.time(), timezone.utc) + timedelta(
        hours=23, minutes=30)  # 23:30 UTC on the eve of a day abroad
    line = {"text": "what time is it at home", "intent": "time", "tz": persona.trip.tz,
            "timestamp": stamp.astimezone(away).isoformat()}
    (there,) = validate_lines([json.dumps(line)])
    (here,) = validate_lines([json.dumps({**line, "tz": persona.tz, "timestamp": stamp.astimezone(home).isoformat()})])
    assert line["timestamp"].endswith("T01:30:00+02:00") and there.utc == here.utc
    assert (there.local_date, here.local_date) == (trip[1].date.isoformat(), (trip[1].date - timedelta(days=1)).isoformat())

    import_jsonl(tmp_path / "dev", tmp_path / "log.jsonl", seed=0)  # the store keeps the day of capture
    with LogStore(Device.open(tmp_path / "dev").store_path, readonly=True) as store:
        assert u.id in {x.id for x in store.by_day("2026-06-17")}
        assert store.day_counts() == dict(sorted(Counter(x.local_date for x in utterances).items()))
