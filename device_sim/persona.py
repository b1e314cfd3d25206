"""A synthetic user: who they are (name, people, places, medications, employer) and how they talk.

`make_persona(seed)` draws everything from `random.Random` seeded by `seed` alone, so a persona is a pure
function of its seed. Entities are kept in their spoken, lowercase form ("dr alvarez", "14 linden street"),
the way an on-device speech recogniser writes them and the way CLINC150 (the public base corpus) is written.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from assistant_forget.core.errors import BadInput

from .phrasing import OWN_TEMPLATES, PREFIXES, SUFFIXES, TEMPLATES_PER_INTENT

FIRST_NAMES = (
    "maya", "daniel", "priya", "marcus", "sofia", "wei", "amara", "jonah", "leila", "diego", "hannah",
    "kwame", "ingrid", "tomas", "aisha", "ravi", "chloe", "omar", "yuki", "nadia", "elias", "grace",
    "mateo", "zoe", "samir", "lucia", "felix", "ada", "kofi", "rosa", "arjun", "emma", "malik", "iris",
)
LAST_NAMES = (
    "okafor", "alvarez", "nguyen", "kowalski", "patel", "oconnor", "haddad", "lindqvist", "moreau",
    "tanaka", "mensah", "rossi", "schmidt", "castillo", "novak", "fischer", "adeyemi", "kaur", "silva",
    "bergstrom", "hughes", "dubois", "yilmaz", "park", "romero", "abrams", "chen", "jovanovic",
)
FAMILY = ("mom", "dad", "grandma", "my sister", "my brother", "aunt carol", "uncle ray", "nana")
HOMES = (  # (city, IANA zone); Phoenix has no DST, which the generator must handle as well
    ("new york", "America/New_York"), ("boston", "America/New_York"), ("atlanta", "America/New_York"),
    ("chicago", "America/Chicago"), ("austin", "America/Chicago"), ("denver", "America/Denver"),
    ("phoenix", "America/Phoenix"), ("seattle", "America/Los_Angeles"), ("san diego", "America/Los_Angeles"),
)
STREETS = ("linden street", "maple avenue", "harbor road", "elm court", "prospect place", "willow lane",
           "cedar drive", "orchard street", "bay ridge avenue", "hillcrest road")
EMPLOYERS = ("northwind logistics", "brightpath health", "kestrel analytics", "lumen bank", "greenleaf foods",
             "atlas robotics", "harborview school", "summit insurance", "bluefin software", "ridgeway law")
GYMS = ("planet fitness", "the ymca", "crunch gym", "orangetheory", "the climbing gym", "equinox")
CAFES = ("blue bottle", "the daily grind", "cafe luna", "joe's coffee", "bean there", "little owl cafe",
         "peet's", "common grounds")
PHARMACIES = ("cvs", "walgreens", "rite aid", "the pharmacy on main")
BANKS = ("chase", "wells fargo", "citi", "capital one", "ally", "bank of america", "usaa")
MEDICATIONS = ("lisinopril", "metformin", "sertraline", "atorvastatin", "levothyroxine", "albuterol",
               "omeprazole", "amlodipine", "escitalopram", "montelukast")
ARTISTS = ("fleetwood mac", "kendrick lamar", "taylor swift", "miles davis", "bad bunny", "radiohead",
           "dolly parton", "bts", "nina simone", "daft punk", "the beatles", "sza", "bon iver", "adele")
STAPLES = ("oat milk", "eggs", "bananas", "sourdough bread", "coffee beans", "spinach", "greek yogurt",
           "dog food", "paper towels", "rice", "avocados", "peanut butter", "tortillas", "apples")
TIMER_DISHES = (("tea", 4), ("pasta", 11), ("eggs", 7), ("rice", 18), ("pizza", 14), ("cookies", 12),
                ("laundry", 45), ("nap", 20), ("oatmeal", 5), ("chicken", 35))
ASSISTANT_NAMES = ("assistant", "buddy", "jarvis", "computer", "friday", "pal")
TRIPS = (  # (city, IANA zone, country, currency, language): European trips, so flights stay overnight-sized
    ("london", "Europe/London", "england", "pounds", "english"),
    ("paris", "Europe/Paris", "france", "euros", "french"),
    ("berlin", "Europe/Berlin", "germany", "euros", "german"),
    ("lisbon", "Europe/Lisbon", "portugal", "euros", "portuguese"),
    ("madrid", "Europe/Madrid", "spain", "euros", "spanish"),
    ("dublin", "Europe/Dublin", "ireland", "euros", "english"),
    ("rome", "Europe/Rome", "italy", "euros", "italian"),
)
# Everyday intents and their base weights (relative, before the persona's own taste multiplies them).
CORE_INTENTS = {
    "alarm": 6.0, "timer": 5.0, "reminder": 2.0, "reminder_update": 4.0, "text": 8.0, "make_call": 5.0,
    "play_music": 7.0, "next_song": 2.0, "change_volume": 1.5, "what_song": 1.0, "weather": 6.0,
    "directions": 3.0, "traffic": 3.0, "uber": 1.5, "calendar": 3.0, "calendar_update": 2.0,
    "meeting_schedule": 2.0, "schedule_meeting": 1.0, "shopping_list": 2.0, "shopping_list_update": 3.0,
    "todo_list": 2.0, "todo_list_update": 2.0, "smart_home": 4.0, "share_location": 1.5, "time": 2.0,
    "date": 1.0, "recipe": 1.5, "cook_time": 1.0, "restaurant_suggestion": 1.0, "thank_you": 1.0,
    "greeting": 0.5, "tell_joke": 0.5, "calculator": 1.0, "definition": 1.0,
}
WORK_INTENTS = frozenset({"calendar", "calendar_update", "meeting_schedule", "schedule_meeting"})


@dataclass(frozen=True)
class Trip:
    """Where the persona travels when the generator plans a trip."""

    city: str  # spoken city name, e.g. "london"
    tz: str  # IANA zone of the destination
    country: str  # spoken country name
    currency: str  # spoken currency, plural
    language: str  # main language spoken there


@dataclass(frozen=True)
class Persona:
    """One synthetic user. All strings are spoken lowercase forms; all tuples are in a fixed order."""

    seed: int  # the seed `make_persona` drew this persona from
    name: str  # first and last name
    home_city: str  # where they live
    tz: str  # IANA zone of home, e.g. "America/New_York"
    home_address: str  # street address of home
    employer: str  # where they work
    gym: str  # their gym
    cafe: str  # favourite cafe
    pharmacy: str  # where prescriptions are filled
    bank: str  # their bank
    doctor: str  # how they name their doctor, e.g. "dr alvarez"
    contacts: tuple[str, ...]  # family and friends as they address them: "mom", "priya"
    coworkers: tuple[str, ...]  # colleagues named in meetings
    medications: tuple[str, ...]  # prescriptions (health data: sensitive)
    artists: tuple[str, ...]  # favourite music
    staples: tuple[str, ...]  # what goes on their shopping list
    timers: tuple[tuple[str, int], ...]  # habitual timers: (what, minutes)
    alarm_times: tuple[str, ...]  # usual alarm times, spoken
    assistant_name: str  # what they call the assistant in their wake phrase
    prefixes: tuple[str, ...]  # habitual openings, e.g. "hey jarvis"
    suffixes: tuple[str, ...]  # habitual closings, e.g. "thanks pal"
    prefix_rate: float  # chance an utterance opens with one of `prefixes`
    suffix_rate: float  # chance an utterance closes with one of `suffixes`
    own_phrasing_rate: float  # chance a core intent is said with one of their own templates (else CLINC's)
    templates: dict[str, tuple[str, ...]]  # intent -> the persona's own phrasings (slots in braces)
    intent_weights: tuple[tuple[str, float], ...]  # core intent -> relative frequency for this persona
    favourite_intents: tuple[str, ...]  # the intents they use most
    trip: Trip  # destination of their trip

    @property
    def display_name(self) -> str:
        """Name for summaries: 'Maya Okafor'."""
        return self.name.title()

    def entities(self) -> tuple[str, ...]:
        """Every personal entity that can appear in their utterances (people, places, meds, employer, music)."""
        return (self.home_address, self.employer, self.gym, self.cafe, self.pharmacy, self.bank, self.doctor,
                *self.contacts, *self.coworkers, *self.medications, *self.artists)

    def to_dict(self) -> dict:
        """JSON-ready form (dataclasses to dicts, tuples to lists through json)."""
        return asdict(self)


def _pick(rng: random.Random, pool: tuple, k: int) -> tuple:
    """`k` distinct items of `pool`, in pool order (so the tuple does not depend on draw order)."""
    chosen = set(rng.sample(range(len(pool)), k))
    return tuple(x for i, x in enumerate(pool) if i in chosen)


def make_persona(seed: int) -> Persona:
    """Draw a persona from `seed` (an int >= 0). Same seed, same persona, on any machine.

    >>> p = make_persona(3)
    >>> p == make_persona(3), p == make_persona(4)
    (True, False)
    >>> p.doctor.startswith("dr "), len(p.contacts) >= 4
    (True, True)
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BadInput(f"persona seed must be an integer >= 0, got {seed!r}")
    rng = random.Random(f"device_sim.persona:{seed}")
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    friends = [n for n in FIRST_NAMES if n != first]
    contacts = _pick(rng, tuple(FAMILY), rng.randint(1, 2)) + _pick(rng, tuple(friends), rng.randint(3, 4))
    coworkers = _pick(rng, tuple(n for n in friends if n not in contacts), 2)
    doctor = "dr " + rng.choice([n for n in LAST_NAMES if n != last])
    city, tz = rng.choice(HOMES)
    weights = {i: w * rng.lognormvariate(0.0, 0.5) for i, w in CORE_INTENTS.items()}
    favourites = tuple(sorted(rng.sample(sorted(CORE_INTENTS), 3)))
    for i in favourites:
        weights[i] *= 4.0
    templates = {intent: _pick(rng, pool, min(TEMPLATES_PER_INTENT, len(pool)))
                 for intent, pool in sorted(OWN_TEMPLATES.items())}
    assistant = rng.choice(ASSISTANT_NAMES)
    hour = rng.choice((5, 6, 6, 7, 7, 8))
    alarm_times = tuple(f"{h}:{m:02d}" for h, m in sorted({(hour, rng.choice((0, 15, 30, 45))),
                                                           (hour + 1, rng.choice((0, 15, 30, 45)))}))
    return Persona(
        seed=seed,
        name=f"{first} {last}",
        home_city=city,
        tz=tz,
        home_address=f"{rng.randint(2, 480)} {rng.choice(STREETS)}",
        employer=rng.choice(EMPLOYERS),
        gym=rng.choice(GYMS),
        cafe=rng.choice(CAFES),
        pharmacy=rng.choice(PHARMACIES),
        bank=rng.choice(BANKS),
        doctor=doctor,
        contacts=contacts,
        coworkers=coworkers,
        medications=_pick(rng, MEDICATIONS, rng.randint(1, 2)),
        artists=_pick(rng, ARTISTS, 3),
        staples=_pick(rng, STAPLES, 5),
        timers=_pick(rng, TIMER_DISHES, 3),
        alarm_times=alarm_times,
        assistant_name=assistant,
        prefixes=(f"hey {assistant}",) + _pick(rng, PREFIXES, 1),
        suffixes=_pick(rng, SUFFIXES, 2),
        prefix_rate=round(rng.uniform(0.25, 0.5), 3),
        suffix_rate=round(rng.uniform(0.15, 0.35), 3),
        own_phrasing_rate=round(rng.uniform(0.6, 0.8), 3),
        templates=templates,
        intent_weights=tuple((i, round(weights[i], 4)) for i in sorted(weights)),
        favourite_intents=favourites,
        trip=Trip(*rng.choice(TRIPS)),
    )
