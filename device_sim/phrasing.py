"""How synthetic users phrase things: template pools with slots, and the slot filler.

Each persona keeps a few templates per everyday intent as its own idiosyncratic phrasing (plus habitual
openings and closings); the rest of what it says comes from CLINC150's public training utterances. Slots in
braces name persona entities ({contact}, {cafe}, {med}) or small value pools ({minutes}, {day}, {amount}).
"""

from __future__ import annotations

import random
import string
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .persona import Persona

TEMPLATES_PER_INTENT = 3  # how many of an intent's pool a persona adopts as its own phrasing

# intent -> pool of phrasings; a persona adopts TEMPLATES_PER_INTENT of each.
OWN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "alarm": ("wake me at {alarm_time}", "set an alarm for {alarm_time} tomorrow", "buzz me at {alarm_time}",
              "alarm {alarm_time} please", "get me up at {alarm_time} before {gym}",
              "i need to be up by {alarm_time}", "alarm for {alarm_time} on weekdays"),
    "timer": ("{timer_minutes} minute timer for the {timer_what}", "timer {timer_minutes} minutes {timer_what}",
              "start the {timer_what} timer {timer_minutes} minutes", "count down {timer_minutes} minutes",
              "set a timer for {timer_minutes} minutes for my {timer_what}",
              "{timer_what} timer, {timer_minutes} minutes"),
    "reminder": ("what reminders do i have {day}", "read me my reminders", "anything i need to remember {day}",
                 "what did i ask you to remind me about", "list my reminders for {day}"),
    "reminder_update": ("remind me to call {contact} {day}", "remind me to grab {item} on the way home",
                        "nudge me to text {contact} at {time}", "reminder to pack my bag before {gym}",
                        "remind me to stop by {cafe} {day}", "don't let me forget to call {contact}"),
    "text": ("text {contact} {message}", "tell {contact} {message}", "send {contact} a text saying {message}",
             "message {contact} {message}", "shoot {contact} a text {message}", "ping {contact} {message}"),
    "make_call": ("call {contact}", "ring {contact}", "get {contact} on the phone", "dial {contact}",
                  "call {contact} on speaker", "give {contact} a call"),
    "play_music": ("play some {artist}", "put on {artist}", "throw on some {artist}", "play my {artist} mix",
                   "i want to hear {artist}", "blast some {artist}", "play {genre} music"),
    "weather": ("what's it doing outside", "do i need a jacket today", "is it gonna rain in {home_city} {day}",
                "how cold is it out", "weather for {day}", "will it be nice enough to walk to {cafe}"),
    "directions": ("how do i get to {place}", "directions to {place}", "fastest way to {place}",
                   "take me to {place}", "route to {place} avoiding the highway", "navigate home to {home}"),
    "traffic": ("how's traffic to {place}", "is the drive to {place} bad right now",
                "traffic on my way to {employer}", "any jams between {home} and {employer}",
                "how long to drive to {place}"),
    "uber": ("get me an uber to {place}", "uber to {place} please", "call a car to {home}",
             "book me a ride to {place}", "i need a ride to {employer}"),
    "calendar": ("what's on my calendar {day}", "am i free {day}", "anything on the books {day}",
                 "what do i have {day} at {employer}", "read me my schedule for {day}"),
    "calendar_update": ("put lunch with {contact} on the calendar {day}", "add {gym} at {time} {day}",
                        "block {time} {day} for coffee at {cafe}", "move my {time} to {day}",
                        "add dinner with {contact} {day} at {time}"),
    "meeting_schedule": ("when am i meeting {coworker}", "what time is my sync with {coworker}",
                         "do i have a meeting with {coworker} {day}", "when's the standup at {employer}",
                         "is my one on one with {coworker} still on"),
    "schedule_meeting": ("find a room for me and {coworker} at {time}", "book a meeting room {day} at {time}",
                         "is there a room free at {time} for {coworker} and me",
                         "set up a meeting with {coworker} {day}"),
    "shopping_list": ("what's on the grocery list", "read me the shopping list",
                      "what do we need from the store", "is {item} on my list", "shopping list please"),
    "shopping_list_update": ("add {item} to the list", "put {item} on my shopping list",
                             "we're out of {item}", "add {item} and {item2} to groceries",
                             "take {item} off the list", "grocery list add {item}"),
    "todo_list": ("what's on my to do list", "what do i still have to do {day}", "read my tasks",
                  "anything left on my list for {day}"),
    "todo_list_update": ("add call {contact} to my to do list", "put book a class at {gym} on my tasks",
                         "cross off grocery run", "add pick up dry cleaning to my list {day}"),
    "smart_home": ("turn off the {room}", "turn on the {room}", "set the thermostat to {temp}",
                   "dim the {room}", "lock the front door", "is the {room} still on"),
    "share_location": ("send {contact} my location", "let {contact} know where i am",
                       "share where i am with {contact}", "drop my location to {contact}"),
    "time": ("what time is it", "time check", "what time is it in {home_city}", "what's the time"),
    "recipe": ("how do i make {dish}", "recipe for {dish}", "walk me through making {dish}"),
    "restaurant_suggestion": ("somewhere good to eat near {cafe}", "where should we get dinner {day}",
                              "suggest a place for lunch near {employer}"),
}
PREFIXES = ("okay so", "um", "quick one", "alright", "so", "hey", "yo", "listen", "real quick")
SUFFIXES = ("please", "thanks", "thank you", "for me", "real quick", "if you can", "cheers", "thanks pal",
            "asap", "when you get a sec")
# Sensitive content: (intent, template). Health days draw from HEALTH, money days from MONEY.
HEALTH = (
    ("reminder_update", "remind me to take my {med} at {time}"),
    ("reminder_update", "remind me to pick up my {med} refill at {pharmacy}"),
    ("make_call", "call {doctor}"),
    ("make_call", "call {doctor}'s office about my results"),
    ("make_call", "call {pharmacy} about my {med}"),
    ("calendar", "when is my appointment with {doctor}"),
    ("calendar_update", "add my appointment with {doctor} {day} at {time}"),
    ("directions", "how do i get to {pharmacy}"),
    ("text", "text {contact} my appointment with {doctor} went fine"),
    ("reminder_update", "remind me my blood pressure was {bp} this morning"),
    ("todo_list_update", "add ask {doctor} about the {med} dose to my list"),
)
MED_REMINDER = ("reminder_update", "remind me to take my {med} at {time}")
MONEY = (
    ("balance", "what's my balance at {bank}"),
    ("balance", "how much is in my {bank} checking"),
    ("transfer", "transfer {amount} from savings to checking at {bank}"),
    ("transfer", "send {contact} {amount} for dinner"),
    ("pay_bill", "pay my {bill} bill with my {bank} account"),
    ("bill_due", "when is my {bill} bill due"),
    ("spending_history", "how much did i spend at {cafe} this month"),
    ("transactions", "show my last few transactions at {bank}"),
    ("credit_score", "what's my credit score"),
    ("payday", "when do i get paid from {employer}"),
    ("min_payment", "what's the minimum payment on my {bank} card"),
)
TRAVEL = (
    ("flight_status", "is my flight to {trip_city} on time"),
    ("plug_type", "what plug do they use in {trip_country}"),
    ("exchange_rate", "how many {currency} do i get for a dollar"),
    ("international_fees", "will {bank} charge me fees in {trip_country}"),
    ("weather", "what's the weather in {trip_city} {day}"),
    ("time", "what time is it back in {home_city}"),
    ("text", "text {contact} landed safe in {trip_city}"),
    ("translate", "how do you say thank you in {language}"),
    ("directions", "how do i get to the old town from here"),
    ("restaurant_suggestion", "good place for dinner in {trip_city}"),
)
DEPARTURE = (
    ("flight_status", "is my flight to {trip_city} on time"),
    ("carry_on", "what's the carry on limit for my flight"),
    ("travel_notification", "i'm going to be in {trip_country} this week"),
    ("uber", "get me an uber to the airport"),
    ("text", "text {contact} boarding now see you in a week"),
)
MESSAGES = (
    "i'm running late", "on my way", "i'll be home by {time}", "can you grab {item} on the way",
    "love you", "see you at {cafe}", "call me when you can", "running ten minutes behind",
    "leaving {employer} now", "at {gym}, back soon", "did you eat yet", "happy birthday",
    "want to get coffee {day}", "just got home",
)
DAYS = ("today", "tomorrow", "tonight", "this weekend", "monday", "tuesday", "wednesday", "thursday",
        "friday", "saturday", "sunday", "next week")
GENRES = ("jazz", "lofi", "country", "workout", "chill", "indie", "classical", "hip hop")
ROOMS = ("living room lights", "kitchen lights", "porch light", "bedroom fan", "hallway lamp", "tv")
DISHES = ("banana bread", "chicken curry", "pad thai", "lentil soup", "pancakes", "chili", "guacamole")
BILLS = ("electric", "phone", "internet", "water", "credit card", "rent", "car insurance")
AMOUNTS = (20, 40, 50, 75, 100, 120, 250, 500, 1200)


def _timer(p: "Persona", rng: random.Random, memo: dict) -> tuple[str, int]:
    """One habitual timer per utterance, shared by {timer_what} and {timer_minutes}."""
    if "timer" not in memo:
        memo["timer"] = rng.choice(p.timers)
    return memo["timer"]


def _clock(rng: random.Random) -> str:
    """A spoken clock time between 6 am and 9:45 pm, such as '7:30', '11 am' or '6:15 pm'."""
    h24, m = rng.randint(6, 21), rng.choice((0, 0, 15, 30, 45))
    h, half = h24 % 12 or 12, " am" if h24 < 12 else " pm"
    if m:
        return f"{h}:{m:02d}" + rng.choice(("", half))
    return f"{h}" + rng.choice((half, half, " o'clock"))


def _item2(p: "Persona", rng: random.Random, memo: dict) -> str:
    """A second staple, different from {item} when the template uses both."""
    first = memo.setdefault("item", rng.choice(p.staples))
    return rng.choice([s for s in p.staples if s != first] or list(p.staples))


SLOTS: dict[str, Callable[["Persona", random.Random, dict], str]] = {
    "contact": lambda p, r, m: r.choice(p.contacts),
    "coworker": lambda p, r, m: r.choice(p.coworkers),
    "doctor": lambda p, r, m: p.doctor,
    "med": lambda p, r, m: r.choice(p.medications),
    "pharmacy": lambda p, r, m: p.pharmacy,
    "bank": lambda p, r, m: p.bank,
    "employer": lambda p, r, m: p.employer,
    "gym": lambda p, r, m: p.gym,
    "cafe": lambda p, r, m: p.cafe,
    "home": lambda p, r, m: p.home_address,
    "home_city": lambda p, r, m: p.home_city,
    "place": lambda p, r, m: r.choice((p.gym, p.cafe, p.employer, p.pharmacy, p.home_address)),
    "artist": lambda p, r, m: r.choice(p.artists),
    "item": lambda p, r, m: m.setdefault("item", r.choice(p.staples)),
    "item2": _item2,
    "alarm_time": lambda p, r, m: r.choice(p.alarm_times),
    "timer_what": lambda p, r, m: _timer(p, r, m)[0],
    "timer_minutes": lambda p, r, m: str(_timer(p, r, m)[1]),
    "time": lambda p, r, m: _clock(r),
    "day": lambda p, r, m: r.choice(DAYS),
    "genre": lambda p, r, m: r.choice(GENRES),
    "room": lambda p, r, m: r.choice(ROOMS),
    "temp": lambda p, r, m: str(r.randint(64, 75)),
    "dish": lambda p, r, m: r.choice(DISHES),
    "bill": lambda p, r, m: r.choice(BILLS),
    "amount": lambda p, r, m: r.choice(("${}", "{} dollars")).format(r.choice(AMOUNTS)),
    "bp": lambda p, r, m: f"{r.randint(116, 152)} over {r.randint(70, 98)}",
    "message": lambda p, r, m: fill(r.choice(MESSAGES), p, r),
    "trip_city": lambda p, r, m: p.trip.city,
    "trip_country": lambda p, r, m: p.trip.country,
    "currency": lambda p, r, m: p.trip.currency,
    "language": lambda p, r, m: p.trip.language,
}


def slot_names(template: str) -> list[str]:
    """The slot names a template uses, in order.

    >>> slot_names("text {contact} {message}")
    ['contact', 'message']
    """
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def fill(template: str, persona: "Persona", rng: random.Random, **fixed: str) -> str:
    """Fill every slot of `template` from the persona and `rng`; `fixed` pins slots (e.g. med="metformin")."""
    memo: dict = dict(fixed)
    values = {}
    for name in slot_names(template):
        if name not in values:
            values[name] = fixed[name] if name in fixed else SLOTS[name](persona, rng, memo)
    return template.format(**values)


def decorate(text: str, persona: "Persona", rng: random.Random) -> str:
    """Add the persona's habitual opening and closing words, at its own rates."""
    if rng.random() < persona.prefix_rate:
        text = f"{rng.choice(persona.prefixes)} {text}"
    if rng.random() < persona.suffix_rate:
        text = f"{text} {rng.choice(persona.suffixes)}"
    return text
