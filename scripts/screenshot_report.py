#!/usr/bin/env python
"""Open a run's index.html in headless Chromium and save a full-page screenshot (PNG).

    python -m scripts.screenshot_report runs/demo-20261125-180000
    python -m scripts.screenshot_report RUN_DIR --out report.png --render --height 6000

Chromium comes from the distribution's packages (Debian: `apt-get install -y chromium`). The browser runs with
networking features off and a throw-away profile, so the screenshot shows what the report looks like offline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium(path: str | None = None) -> str:
    """The Chromium binary: `path`, else /usr/bin/chromium, else `chromium` on PATH."""
    candidate = path or (CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium"))
    if not candidate or not Path(candidate).is_file():
        raise FileNotFoundError(
            f"Chromium not found at {path or CHROMIUM}: install it with `apt-get install -y chromium` "
            "(Debian/Ubuntu) or pass --chromium PATH"
        )
    return candidate


def screenshot(run_dir: Path, out: Path, width: int = 1400, height: int = 4000, chromium: str | None = None) -> Path:
    """Screenshot `run_dir/index.html` into `out` (PNG) with headless Chromium; returns `out`.

    Raises:
        TargetError: `out` is something other than a PNG image (a folder, a report, ...); it is left as it is.
    """
    from segbench.bench.results.targets import check_target, describe

    check_target(out, "--out", "a PNG image", "give a new .png file", lambda p: describe(p) == "a PNG image")
    index = run_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(
            f"{index} not found: render it first (`python run_bench.py report {run_dir}` or --render)"
        )
    binary = find_chromium(chromium)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="segbench-chromium-") as profile:
        command = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            index.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not out.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"Chromium failed (exit {result.returncode}) on {index}: " + " | ".join(tail))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="run folder holding index.html")
    parser.add_argument("--out", type=Path, help="PNG to write (default: RUN_DIR/screenshot.png)")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels (default 1400)")
    parser.add_argument("--height", type=int, default=4000, help="window height in pixels (default 4000)")
    parser.add_argument("--chromium", help=f"Chromium binary (default {CHROMIUM})")
    parser.add_argument("--render", action="store_true", help="(re-)render index.html from the run's results first")
    args = parser.parse_args(argv)
    try:
        if args.render:
            from segbench.reports import render_report

            render_report(args.run_dir)
        out = args.out or args.run_dir / "screenshot.png"
        path = screenshot(args.run_dir, out, args.width, args.height, args.chromium)
    except (FileNotFoundError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
