"""The privacy dashboard: a local web page over the library API (`assistant-forget serve --device DIR`).

It shows the device's logged days on a calendar, forgets a day, a range, a phrase or utterances after a
dry-run preview, and shows the model's state, the receipts and the verification of each forget. It sits
above `api.py` (tests/test_layers.py): it calls the library, never the simulator, and the library never
imports it. The modules:

    security.py   the guard every request passes: Host check, the per-launch token and cookie, CSRF,
                  no-store and Content-Security-Policy headers (docs/dashboard.md, "Security")
    views.py      what the pages show, computed from the library's read-only calls (no torch)
    jobs.py       forget, maintain and verify in a background thread, one at a time, with progress
    app.py        the Starlette application: pages, fragments and JSON endpoints
    server.py     binding 127.0.0.1, the token URL, uvicorn
    command.py    the `serve` command, added to the CLI through the `assistant_forget.commands` entry point

Its web dependencies are the optional extra `dashboard` (pyproject.toml).
"""
