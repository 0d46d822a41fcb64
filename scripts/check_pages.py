"""Open a run's report and a leaderboard in headless Chromium with the network off, and check that they load, that
their script runs without an error, and that a header click sorts a table.

    python -m scripts.check_pages runs/demo/index.html leaderboard.html [--screenshot docs/leaderboard.png]

The network is cut with `unshare -n` (a process without any network interface; needs root or user namespaces), so a
page that reached for a CDN would fail here. For each page a copy is made beside it with a few lines appended that
click the first sortable header twice and write what they saw into the page's title; `--dump-dom` prints the DOM
after the scripts ran. Chromium's own console errors (an uncaught exception, a failed request) are collected from its
log. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
<script>
(function () {
  var headers = Array.from(document.querySelectorAll("table.sortable tr.columns th, th[data-col]"));
  var th = headers.find(function (h) { return h.textContent.trim() === "Clean mIoU"; }) || headers[1];
  if (!th) { document.title = "probe: no sortable header"; return; }
  var table = th.closest("table"), col = Array.from(th.parentNode.children).indexOf(th);
  function column() {
    return Array.from(table.tBodies[0].rows).filter(function (r) { return !r.classList.contains("group"); })
      .map(function (r) { return (r.cells[col] || {}).textContent; });
  }
  var before = column(); th.click(); var up = column(); th.click(); var down = column();
  document.title = "probe: " + JSON.stringify({header: th.textContent, before: before, up: up, down: down});
})();
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("no Chromium here: apt-get install chromium (or give a machine with one)")


def load(page: Path, extra: list[str]) -> tuple[str, str]:
    """(DOM after the scripts ran, Chromium's log) of `page`, opened with the network cut."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", *extra]
    if shutil.which("unshare"):
        command = ["unshare", "-n", *command]
    done = subprocess.run([*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr


def check(page: Path) -> list[str]:
    """The problems found on `page` (none: it passed)."""
    with tempfile.TemporaryDirectory(dir=page.parent) as tmp:
        probed = Path(tmp) / page.name
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom, log = load(probed, ["--dump-dom"])
    problems = [line for line in log.splitlines() if re.search(r"Uncaught|ERR_|Failed to load", line)]
    title = re.search(r"<title>probe: (.*?)</title>", dom, re.S)
    if title is None:
        problems.append("the probe did not run (no probe title in the DOM)")
    else:
        print(f"{page}: {title.group(1)[:400]}")
        if "no sortable header" in title.group(1):
            problems.append("no sortable table header")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pages", nargs="+", type=Path)
    p.add_argument("--screenshot", type=Path, help="also save a screenshot of the last page here (1400x900)")
    args = p.parse_args(argv)
    failed = 0
    for page in args.pages:
        problems = check(page)
        print(f"{page}: {'OK' if not problems else 'FAILED'}" + "".join(f"\n  {line}" for line in problems))
        failed += bool(problems)
    if args.screenshot:
        load(args.pages[-1], [f"--screenshot={args.screenshot.resolve()}", "--window-size=1400,900"])
        print(f"screenshot: {args.screenshot}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
