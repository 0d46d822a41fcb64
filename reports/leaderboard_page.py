"""The leaderboard's HTML page (`reports.leaderboard`): autoescaped, self-contained (inline CSS, one inline script,
figures as data: URIs), so it works from `file://` with the network off."""

from __future__ import annotations

import pandas as pd

SCRIPT = """
document.querySelectorAll("th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), col = +th.dataset.col, up = th.dataset.dir !== "asc";
    th.dataset.dir = up ? "asc" : "desc";
    var groups = [], current = null;
    Array.from(table.tBodies[0].rows).forEach(function (row) {
      if (row.classList.contains("group")) { current = {head: row, rows: []}; groups.push(current); }
      else if (current) { current.rows.push(row); }
    });
    groups.forEach(function (g) {
      g.rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        if (x === "") { c = 1; } else if (y === "") { c = -1; } else if (!up) { c = -c; }
        return c;
      });
      table.tBodies[0].appendChild(g.head);
      g.rows.forEach(function (r) { table.tBodies[0].appendChild(r); });
    });
  });
});
document.getElementById("filter").addEventListener("input", function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll("tbody tr:not(.group)").forEach(function (row) {
    row.style.display = row.textContent.toLowerCase().indexOf(q) < 0 ? "none" : "";
  });
});
"""


def _cell(value: object) -> tuple[str, str, bool]:
    """(sort value, shown text, is text) of one cell."""
    if value is None or (isinstance(value, float) and value != value):
        return "", "", False
    if isinstance(value, float):
        return repr(value), f"{value:.2f}", False
    return str(value), str(value), not isinstance(value, int)


def render_page(table: pd.DataFrame, figures: dict[str, str], generator: str, stem: str = "leaderboard") -> str:
    """The page's HTML for `leaderboard`'s table (its "Setting" column becomes the group rows)."""
    from segbench.reports.render import environment

    template = environment().get_template("leaderboard.html.j2")
    columns = [c for c in table.columns if c != "Setting"]
    groups = [
        (setting, [[_cell(v) for v in row] for row in rows[columns].itertuples(index=False)])
        for setting, rows in table.groupby("Setting", sort=False)
    ]
    text = {c for c in columns if not pd.api.types.is_numeric_dtype(table[c])}
    return template.render(
        generator=generator,
        runs=table["Run"].nunique(),
        rows=len(table),
        settings=len(groups),
        columns=columns,
        text=text,
        groups=groups,
        figures=figures,
        script=SCRIPT,
        stem=stem,
    )
