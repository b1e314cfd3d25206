"""Save the dashboard's screenshots for the docs: docs/dashboard-{calendar,preview,receipt,verification}.png.

They are taken by the browser test's own flow (tests/dashboard/test_browser.py) on a longer synthetic log,
so the pictures show what the test checks:

    .venv/bin/python tools/dashboard_screenshots.py [--days 28] [--out docs]

Needs what the browser test needs: the `dashboard` extra and Debian's chromium + chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("calendar", "preview", "receipt", "verification")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=28, help="days of the synthetic log (default 28)")
    p.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default docs/)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AF_DASHBOARD_SCREENSHOTS": str(args.out.resolve()), "AF_DASHBOARD_DAYS": str(args.days)}
    test = f"{ROOT / 'tests' / 'dashboard' / 'test_browser.py'}::test_forget_a_day_through_the_page"
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                           env=env)
    if code:
        print(f"error: the browser test failed (exit {code}); no screenshot is trusted", file=sys.stderr)
        return code
    for name in NAMES:
        print(args.out / f"dashboard-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
