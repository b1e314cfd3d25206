"""assistant-forget: let an on-device assistant forget a day, a range, an utterance or a person, and prove it."""

__version__ = "0.1.0"
