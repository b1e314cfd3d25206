"""Synthetic users for assistant-forget: a seeded persona and the days of utterances its phone logs.

    persona = make_persona(7)
    pin = Canary("my bank pin is 4 8 1 9 3", day=5, repeats=3)
    records = generate_days(persona, date(2026, 1, 1), days=30, seed=7, canaries=[pin])
    write_jsonl(records, Path("log.jsonl"))

`python -m device_sim generate --days 30 --seed 7 --out log.jsonl` does the same from the shell.
"""

from .canary import (DEFAULT_CANARY_FORMAT, Canary, candidate, enumerate_candidates, parse_canary_spec,
                     random_secret, sample_candidates, secret_index, space_size)
from .generator import (DayPlan, SimConfig, generate_days, generate_log, heldout_utterances, is_heldout_text,
                        plan_days, sensitive_days, write_jsonl)
from .persona import Persona, Trip, make_persona

__all__ = [
    "DEFAULT_CANARY_FORMAT", "Canary", "candidate", "enumerate_candidates", "parse_canary_spec", "random_secret",
    "sample_candidates", "secret_index", "space_size",
    "DayPlan", "SimConfig", "generate_days", "generate_log", "heldout_utterances", "is_heldout_text", "plan_days",
    "sensitive_days", "write_jsonl",
    "Persona", "Trip", "make_persona",
]
