"""The deployment section: per model, the grid of backend x precision variants (status against eager fp32, latency
distribution, throughput, closeness to the GEMM peak, memory, energy, speed-up, build, agreement and accuracy) with the
latency / accuracy-change figure and the share-of-peak figure, and beside it throughput against batch size, latency
against resolution and model only against end to end."""

from __future__ import annotations

import pandas as pd

from segbench.bench.results.schema import DEPLOY_BACKENDS, DEPLOY_PRECISIONS, variant_name
from segbench.reports import deploy as D
from segbench.reports import figures
from segbench.reports import tables as T
from segbench.reports.page import Cell, HtmlTable, Outputs, Page, Row, Section, builds, sig
from segbench.reports.sections.efficiency import MEMORY_KINDS

DEPLOY_COLUMNS = [
    ("Precision", ""),
    ("Status", "agrees / DISAGREES with eager fp32 (logits on the first images), or why it was not built here"),
    ("p50", "median latency per batch (ms)"),
    ("p90", "90th percentile latency per batch (ms)"),
    ("p99", "99th percentile latency per batch (ms)"),
    ("IQR", "jitter: interquartile range of the latency, p75 - p25 (ms)"),
    ("Throughput (img/s)", "images per second at the batch size"),
    ("Peak memory (MiB)", ""),
    ("Speed-up vs eager fp32", "eager fp32's median latency / this variant's, same setting; none for a variant that "
     "disagrees"),
    ("Build (s)", "export, quantisation, engine build or compilation, session creation; 'cached': the artifact came "
     "from the cache"),
    ("File (MiB)", "the exported artifact (ONNX file, TensorRT engine); eager, fast and compile have none"),
    ("Max rel. diff", "max |logit - eager fp32 logit| / max |eager fp32 logit| over the checked images"),
    ("Argmax agree (%)", "pixels whose predicted class equals eager fp32's"),
    ("Clean mIoU (%)", "the variant's own clean mIoU on this run's images"),
    ("\u0394 clean (pp)", "clean mIoU minus eager fp32's (summary.csv delta_miou)"),
    ("mPC (%)", "mean mIoU over the run's corruptions (summary.csv)"),
    ("\u0394 mPC (pp)", "mPC minus eager fp32's, over the conditions both measured (summary.csv delta_mPC)"),
]  # fmt: skip
"""The grid table's columns after the row label (Backend): head and tooltip."""

ENERGY_COLUMNS = [
    ("Energy (J/image)", "GPU energy per image over the timed calls at the setting above (NVML; the whole board's)"),
    ("Power (W)", "mean GPU power over the timed calls at the setting above (NVML)"),
]
"""Beside peak memory in the grid table, when a variant has energy or power rows (GPU with NVML only)."""


NO_PEAK = "\u2020"
"""The footnote mark of a variant whose precision has no measured GEMM peak (int8; bf16 or fp16 where not native)."""


def _peak_columns(conventions: list[str]) -> list[tuple[str, str]]:
    """The two closeness-to-the-hardware columns; the GMAC/s head names the FLOP convention when there is one."""
    named = f" [{conventions[0]}]" if len(conventions) == 1 else ""
    return [
        (f"GMAC/s{named}", "the architecture's multiply-adds per image under the named FLOP convention / the median "
         "latency at batch 1 (the same for every backend of a model, whatever graph it runs)"),
        ("% of GEMM peak", "GMAC/s x 2 FLOPs per MAC / the measured GEMM peak (GFLOP/s) of the variant's precision "
         f"on this device; {NO_PEAK}: no peak measured for that precision"),
    ]  # fmt: skip


def _grid_columns(energy: bool, peak: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """`DEPLOY_COLUMNS`, with the `peak` columns (`_peak_columns`) after throughput and `ENERGY_COLUMNS` after peak
    memory when `energy`."""
    names = [c for c, _ in DEPLOY_COLUMNS]
    at, mem = names.index("Throughput (img/s)") + 1, names.index("Peak memory (MiB)") + 1
    power = ENERGY_COLUMNS if energy else []
    return [*DEPLOY_COLUMNS[:at], *(peak or []), *DEPLOY_COLUMNS[at:mem], *power, *DEPLOY_COLUMNS[mem:]]


DISAGREES_TITLE = (
    "its logits differ from eager fp32 beyond the {precision} tolerance: it is not the same model; its speed is "
    "shown for information only"
)


def _signed(value: float, digits: int = 2) -> str:
    """A difference in pp with its sign: +0.03, \u22120.06, 0.00."""
    if pd.isna(value):
        return "\u2013"
    text = f"{abs(value):.{digits}f}"
    return text if float(text) == 0 else ("+" if value > 0 else "\u2212") + text


def _rel(value: float) -> str:
    return "\u2013" if pd.isna(value) else "0" if value == 0 else f"{value:.1e}"


def _peak_cells(row: pd.Series, conventions: list[str]) -> list[Cell]:
    """A grid row's GMAC/s (its convention named when the grid has several) and share of the GEMM peak: a dash
    without GMACs, a dash with `NO_PEAK` when its precision has no measured peak."""
    convention = row["convention"] if isinstance(row["convention"], str) else ""
    if pd.isna(row["gmacs_per_s"]):
        return [Cell("\u2013", title="no GMACs or no median latency at batch 1 for this variant")] * 2
    text = sig(row["gmacs_per_s"]) + (f" [{convention}]" if len(conventions) > 1 and convention else "")
    how = f"{row['gmacs']:.4g} GMAC per image ({convention or '?'} convention) / {sig(row['latency_median_ms'])} ms"
    if pd.isna(row["peak_share_pct"]):
        why = f"no GEMM peak measured for {row['precision']} on this device"
        return [Cell(text, title=how), Cell("\u2013" + NO_PEAK, title=why)]
    peak = f"of the {row['precision']} GEMM peak, {row['peak_gflops']:.1f} GFLOP/s"
    return [Cell(text, title=how), Cell(f"{row['peak_share_pct']:.1f}%", title=peak)]


def _deploy_cells(row: pd.Series, energy: bool = False, peak: list[str] | None = None) -> list[Cell]:
    """A grid row's cells after the row label (the texts the Markdown file holds too); with `energy`, the energy and
    power cells after peak memory; with `peak` (the grid's FLOP conventions), GMAC/s and the share of the GEMM peak
    after throughput."""
    status = str(row["status"])
    reference = (row["backend"], row["precision"]) == D.DEPLOY_REFERENCE
    if status in D.NOT_BUILT:
        reason = D.short_reason(row["reason"])
        columns = _grid_columns(energy, _peak_columns(peak) if peak is not None else None)
        return [
            Cell(row["precision"]),
            Cell(status, "status", str(row["reason"]) if not pd.isna(row["reason"]) else ""),
            Cell(reason, "reason", span=len(columns) - 2),
        ]
    disagrees = status == "disagrees"
    tolerance = (
        f"tolerance ({row['precision']}): max rel. diff \u2264 {row['tolerance_rel']:g}, argmax \u2265 "
        f"{row['tolerance_argmax_pct']:g}% over {T.format_number(row['agreement_images'], 0)} image(s); max abs. "
        f"diff {row['agreement_max_abs']:.3g} (logit)"
        if not pd.isna(row["tolerance_rel"])
        else ""
    )
    noisy = bool(row["noisy"]) if not pd.isna(row["noisy"]) else False
    timing = [
        Cell(
            sig(row[c]) + (" \u26a0" if noisy else ""),
            "noisy" if noisy else "",
            "timing was noisy (high coefficient of variation)" if noisy else "",
        )
        for c in ("latency_median_ms", "latency_p90_ms", "latency_p99_ms")
    ]
    cv = row["latency_cv"]
    timing.append(
        Cell(sig(row["latency_iqr_ms"]), title=f"coefficient of variation {cv:.3f}" if not pd.isna(cv) else "")
    )
    if reference:
        speedup = Cell("1 (reference)")
    elif disagrees:
        speedup = Cell("\u2014 (disagrees)", "disagrees", DISAGREES_TITLE.format(precision=row["precision"]))
    else:
        speedup = Cell(
            "\u2013" if pd.isna(row["speedup_vs_eager_fp32"]) else f"{row['speedup_vs_eager_fp32']:.2f}\u00d7"
        )
    build = sig(row["build_time_s"])
    build_title = ""
    if D.is_true(row["cache_hit"]):
        build += " (cached)"
        if not pd.isna(row["artifact_build_s"]):
            build_title = f"loaded from the artifact cache; building it took {row['artifact_build_s']:.3g} s"
    status_cell = (
        Cell("DISAGREES \u26a0", "status disagrees", DISAGREES_TITLE.format(precision=row["precision"]))
        if disagrees
        else Cell(status, "status", tolerance or D.short_reason(row["reason"]))
    )
    delta = "ref." if reference else None
    source = row["energy_source"] if isinstance(row["energy_source"], str) and row["energy_source"] else "unknown"
    power = [Cell(sig(row[c]), title=f"read from {source}") for c in D.ENERGY] if energy else []
    return [
        Cell(row["precision"]),
        status_cell,
        *timing,
        Cell(sig(row["throughput_img_s"])),
        *(_peak_cells(row, peak) if peak is not None else []),
        Cell(sig(row["peak_memory_MiB"])),
        *power,
        speedup,
        Cell(build, title=build_title),
        Cell(sig(row["artifact_size_MiB"])),
        Cell(_rel(row["agreement_max_rel"]), title=tolerance),
        Cell(T.format_number(row["argmax_agreement_pct"], 1), title=tolerance),
        Cell(T.format_number(row["clean_miou"], 2)),
        Cell(delta or _signed(row["delta_miou_pp"])),
        Cell(T.format_number(row["mPC"], 2)),
        Cell(delta or _signed(row["delta_mPC_pp"])),
    ]


def _machine(setting: dict[str, str]) -> str:
    """`cpu, AMD EPYC, 2 threads`: where a setting was timed."""
    parts = [setting.get("device", ""), setting.get("device_name", "")]
    parts.append(f"{setting['threads']} threads" if setting.get("threads") else "")
    return ", ".join(p for p in parts if p)


def _setting_text(setting: dict[str, str]) -> str:
    if not setting:
        return "no timing rows"
    device = setting["device"] + (f" ({setting['device_name']})" if setting.get("device_name") else "")
    threads = f", {setting['threads']} threads" if setting.get("threads") else ""
    return f"timed at {setting['resolution'] or '?'}, batch {setting['batch_size'] or '?'}, on {device}{threads}"


def _grid_tables(grid: D.DeployGrid, page: Page) -> tuple[list[HtmlTable], pd.DataFrame]:
    """The grid as one table per model (eager fp32 first), and the same texts as the Markdown file's frame."""
    energy = grid.has_energy
    peak = grid.conventions if grid.has_peak else None
    columns = _grid_columns(energy, _peak_columns(peak) if peak is not None else None)
    header = ["Backend", *[c for c, _ in columns]]
    titles = ["", *[t for _, t in columns]]
    power = len(ENERGY_COLUMNS) if energy else 0
    groups = [("", 3), ("Latency per batch (ms)", 4)]
    groups += [("", 1), ("Closeness to the hardware", 2), ("", 2 + power)] if peak is not None else [("", 3 + power)]
    groups += [("Build", 2), ("Agreement", 2), ("Accuracy", 4)]
    tables, markdown = [], []
    for model in grid.models:
        info = page.infos.get(variant_name(model, *D.DEPLOY_REFERENCE))
        flag = f" [{info.badge}]" if info is not None and info.badge else ""
        divider = f"{model}{flag}: {_setting_text(grid.settings.get(model, {}))}"
        rows = []
        for i, (_, row) in enumerate(grid.table[grid.table["model"] == model].iterrows()):
            cells = _deploy_cells(row, energy, peak)
            status = str(row["status"])
            cls = "disagrees" if status == "disagrees" else "not-built" if status in D.NOT_BUILT else ""
            rows.append(Row(cells, label=row["backend"], cls=cls, divider=divider if i == 0 else ""))
            texts = [c.text for c in cells] if cls != "not-built" else [row["precision"], f"{status}: {cells[-1].text}"]
            markdown.append({"model": model, "backend": row["backend"], **dict(zip(header[1:], texts))})
        tables.append(HtmlTable(header, rows, groups, titles=titles, cls="deploy"))
    return tables, pd.DataFrame(markdown)


@builds("deployment", "Deployment: backends and precisions")
def deployment(page: Page, sec: Section) -> Section:
    eff, out = page.eff, page.out
    grid = D.deploy_grid(page.frame, eff, page.summary, page.clean)
    if grid is None:
        sec.missing = (
            f"Not measured in this run: no deployment rows; the `{D.DEPLOY_SUITE}` suite measures each model per "
            f"backend \u00d7 precision ({', '.join(DEPLOY_BACKENDS)} at {', '.join(DEPLOY_PRECISIONS)})."
        )
        return sec
    sec.notes = _deploy_notes(grid) + (_peak_notes(grid) if grid.has_peak else [])
    sec.tables, markdown = _grid_tables(grid, page)
    fig = out.figure(
        figures.deploy_trade_off,
        "deployment.png",
        "median latency against \u0394 clean mIoU from eager fp32, one point per backend \u00d7 precision",
        D.trade_off_points(grid),
        figures.model_colors(grid.models),
    )
    if fig is not None:
        sec.figures.append(fig)
        sec.notes.append(
            "Figure: each built variant's median latency (ms, at the setting above) against its \u0394 clean mIoU "
            "(pp) from eager fp32 (drawn at 0); a red cross marks a variant that disagrees with eager fp32."
        )
    fig = out.figure(
        figures.deploy_peak_share,
        "deployment_peak.png",
        "each variant's share of the measured GEMM peak in its precision, with its GMAC/s",
        D.peak_points(grid),
        figures.model_colors(grid.models),
        f"GEMM peak: {peak_statement(grid.peaks)}",
    )
    if fig is not None:
        sec.figures.append(fig)
    title = "Deployment: backends and precisions (latency in ms, \u0394 in pp)"
    sec.files = out.table(grid.table, "deployment", title, digits=3, markdown=markdown)
    if not grid.peaks.empty:
        sec.files += out.table(grid.peaks, "deployment_gemm_peak", "GEMM peak of the run's device (GFLOP/s)", 3)
    parts = (
        _deploy_batches(D.batch_sweep(eff, grid), out),
        _deploy_curves(D.latency_curve(eff, grid), out),
        _deploy_end_to_end(D.end_to_end(eff, grid), out),
    )
    sec.extra["parts"] = [p for p in parts if p is not None]
    sec.files += [f for p in sec.extra["parts"] for f in p.files]
    return sec


def _deploy_notes(grid: D.DeployGrid) -> list[str]:
    """What the grid table shows and how it was measured; which variants disagree; what this machine could not run."""
    table = grid.table
    notes = [
        "One row per backend \u00d7 precision of each model: a variant, named <model>@<backend>-<precision> in the "
        "other sections, where it is a model of its own. Each built variant was compared with the model's eager fp32 "
        "on the suite's first images: it agrees when its largest logit difference relative to the largest eager "
        "logit (max rel. diff) and the share of pixels with the same predicted class (argmax agree) stay within its "
        "precision's tolerance (hover a status for the numbers). Only a variant that agrees gets a speed-up."
    ]
    bad = grid.status("disagrees")
    if not bad.empty:
        notes.append(
            "\u26a0 DISAGREES (rows in red): "
            + ", ".join(bad["variant"])
            + ": its logits differ from eager fp32 beyond its precision's tolerance, so it is not the same model. Its "
            "speed is shown for information only and no speed-up is claimed; its own clean mIoU and mPC, and their "
            "\u0394 from eager fp32, say what the difference costs on this run's images."
        )
    missing = grid.not_built()
    if missing:
        machines = [_machine(s) for s in grid.settings.values()] or [str(d) for d in table["device"].dropna()]
        devices = "; ".join(dict.fromkeys(machines)) or "device unknown"
        parts = [f"{', '.join(labels)}: {status}, {reason}" for status, reason, labels in missing]
        count = int(table["status"].isin(D.NOT_BUILT).sum())
        notes.append(
            f"Not measured on this machine ({devices}), {count} of {len(table)} grid cells, greyed below: "
            + "; ".join(parts)
            + "."
        )
    unchecked = grid.status(D.UNCHECKED)
    if not unchecked.empty:
        notes.append(
            f"No deploy cell for {', '.join(unchecked['variant'])}: whether it agrees with eager fp32 is unknown, so "
            "it gets no speed-up."
        )
    notes.append(
        "Latency measured with segbench's clock on the model call only (normalised input in, logits out), after "
        "warm-up, per batch: p50 (median), p90 and p99 in ms; jitter is the interquartile range (IQR = p75 \u2212 "
        "p25, ms; the coefficient of variation is its tooltip). Throughput in images per second at that batch. "
        "Speed-up = eager fp32's median latency / the variant's (ratio of medians, same setting)."
    )
    kinds = [k for k in dict.fromkeys(table["memory_kind"].dropna()) if k]
    if kinds:
        notes.append("Peak memory: " + "; ".join(MEMORY_KINDS.get(k, k) for k in kinds) + ".")
    notes.append(
        "Build time in s (export, quantisation, engine build or compilation; 'cached' when the artifact came from "
        "the cache, its tooltip says what building it took); file size of the exported artifact in MiB. FLOPs are "
        "not counted per backend: the architecture's parameters and GMACs are in the Efficiency section."
    )
    notes.append(
        "Clean mIoU and mPC (%) are each variant's own measurement on this run's images; \u0394 (pp) is the "
        "difference from the model's eager fp32 as the run's summary.csv holds it (delta_miou, delta_mPC)."
    )
    if grid.has_energy:
        sources = ", ".join(str(s) for s in dict.fromkeys(table["energy_source"].dropna()) if s) or "source unknown"
        notes.append(
            f"Energy per image (J) and mean power (W): the GPU board's, over the timed calls at the setting above, "
            f"read through NVML ({sources}); a dash where a variant has none."
        )
    if grid.other_settings:
        others = ", ".join(grid.other_settings)
        notes.append(
            f"{others}: timed at other settings too (batch sizes, resolutions): below, and in the Efficiency table."
        )
    return notes


CONVENTION_WORDS = {
    "paper": "the SegFormer paper's (mmcv's module rules plus the attention matmuls it adds by hand)",
    "fvcore": "fvcore's (a traced forward: matmuls, convolutions, attention, norms)",
    "torch": "PyTorch's FlopCounterMode (matmul, convolution and attention kernels)",
}
"""How the closeness notes name each FLOP convention (`bench.measure.flops`)."""


def peak_statement(peaks: pd.DataFrame) -> str:
    """`fp32 131.8, bf16 310.0 GFLOP/s on cpu (Xeon), 2 threads, 4096x4096 matrices, best of 3`: the run's GEMM peaks
    (`D.gemm_peak_table`), one clause per machine setting; "none measured" without any."""
    if peaks.empty:
        return "none measured in this run"
    keys = ["device", "device_name", "threads", "size", "repeats"]
    texts = peaks.assign(**{k: [_count(v) for v in peaks[k]] for k in keys})
    clauses = []
    for (device, name, threads, size, repeats), rows in texts.groupby(keys, sort=False):
        values = ", ".join(f"{p} {float(g):.1f}" for p, g in zip(rows["precision"], rows["gflops"]))
        where = device + (f" ({name})" if name else "") + (f", {threads} threads" if threads else "")
        clauses.append(f"{values} GFLOP/s on {where}, {size}\u00d7{size} matrices, best of {repeats}")
    return "; ".join(clauses)


def _count(value: object) -> str:
    """A key as text: '' when missing, a whole number without its '.0'."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _peak_notes(grid: D.DeployGrid) -> list[str]:
    """What the GMAC/s and % of GEMM peak columns are, the peaks themselves, and why a precision has none."""
    conventions = "; ".join(f"{c}: {CONVENTION_WORDS.get(c, c)}" for c in grid.conventions) or "none counted"
    notes = [
        "Closeness to the hardware: GMAC/s = the architecture's multiply-adds per image under the named FLOP "
        f"convention ({conventions}) / the variant's median latency at batch 1 at the setting above; % of GEMM peak "
        "= 2 FLOPs \u00d7 GMAC/s / the GEMM peak of the variant's precision, a dense square matrix product timed "
        f"on this run's device (the practical ceiling, not the datasheet's): {peak_statement(grid.peaks)}. Every "
        "backend of a model is divided by the same GMACs, so a backend that runs fewer multiply-adds (the fast "
        "path's folded decoder) shows as closer to the peak than its kernels are."
    ]
    built = grid.table[~grid.table["status"].isin(D.NOT_BUILT) & grid.table["gmacs_per_s"].notna()]
    missing = list(dict.fromkeys(built.loc[built["peak_share_pct"].isna(), "precision"]))
    if missing:
        why = [
            "int8: integer kernels (VNNI/AMX dot products, TensorRT, ONNX Runtime's QLinear ops) are not a float "
            "matrix product, and no int8 peak is invented"
            if p == "int8"
            else f"{p}: the run measures the bf16 peak on a GPU or a CPU with native bf16, fp16 on a GPU only"
            for p in missing
        ]
        notes.append(f"{NO_PEAK} No GEMM peak for " + "; ".join(why) + ": the % column shows a dash.")
    return notes


def _where(row: pd.Series) -> str:
    """`cpu (AMD EPYC), 2 threads`: the machine a view's row was measured on."""
    where = str(row["device"] or "device unknown") + (f" ({row['device_name']})" if row["device_name"] else "")
    return where + (f", {row['threads']} threads" if row["threads"] else "")


def _deploy_batches(sweep: pd.DataFrame, out: Outputs) -> Section | None:
    """Throughput against batch size (`D.batch_sweep`): per model, variant x batch size -> img/s, OOM marked, and the
    best throughput with its batch. None without a sweep."""
    if sweep.empty:
        return None
    sec = Section("deployment-batch", "Throughput against batch size")
    markdown = []
    for model, rows in sweep.groupby("model", sort=False):
        batches = sorted(set(rows["batch_size"]))
        first = rows.iloc[0]
        divider = f"{model}: images per second at {first['resolution']}, on {_where(first)}"
        table = []
        for i, (_, mine) in enumerate(rows.groupby("variant", sort=False)):
            head, last = mine.iloc[0], int(mine["batch_size"].max())
            by = mine.set_index("batch_size")
            cells = [Cell(head["precision"])]
            for batch in batches:
                if batch not in by.index:
                    cells.append(Cell("\u2013", title=f"not timed: this variant's sweep stopped at batch {last}"))
                elif by.loc[batch, "oom"]:
                    where = f"{head['resolution']}, {head['precision']}, {head['device']}"
                    cells.append(Cell("OOM", "flag", f"out of memory at batch {batch} ({where}): larger not tried"))
                else:
                    r = by.loc[batch]
                    cls = " ".join(c for c, on in (("best", r["best"]), ("noisy", r["noisy"])) if on)
                    title = f"median latency {sig(r['latency_median_ms'])} ms per batch of {batch}"
                    title += "; timing was noisy" if r["noisy"] else ""
                    cells.append(Cell(sig(r["throughput_img_s"]) + (" \u26a0" if r["noisy"] else ""), cls, title))
            best = mine[mine["best"]]
            if len(best):
                cells += [Cell(sig(best["throughput_img_s"].iloc[0])), Cell(str(best["batch_size"].iloc[0]))]
            else:
                cells += [Cell("\u2013"), Cell("\u2013")]
            cls = "disagrees" if head["status"] == "disagrees" else ""
            table.append(Row(cells, label=head["backend"], cls=cls, divider=divider if i == 0 else ""))
            texts = dict(
                zip(
                    ["precision", *[f"batch {b}" for b in batches], "best (img/s)", "at batch"], [c.text for c in cells]
                )
            )
            markdown.append(
                {
                    "model": model,
                    "resolution": head["resolution"],
                    "on": _where(head),
                    "backend": head["backend"],
                    **texts,
                }
            )
        header = ["Backend", "Precision", *map(str, batches), "Best (img/s)", "At batch"]
        groups = [("", 2), ("Throughput (img/s) at batch size", len(batches)), ("", 2)]
        sec.tables.append(HtmlTable(header, table, groups, cls="deploy-batch"))
    sec.notes.append(
        "Images per second at each batch size, model call only, each variant at its own precision (the row's). A "
        "variant's sweep times batch 1, 2, 4, \u2026 in turn and stops after the first batch that gains too little "
        "throughput or runs out of memory, so variants list different batches: OOM marks a batch that ran out of "
        "memory (larger ones were not tried), a dash one that was not timed. Bold: the variant's best throughput, "
        "also in the last two columns; each cell's tooltip holds the median latency per batch (ms)."
    )
    if (sweep["status"] == "disagrees").any():
        sec.notes.append("Rows in red disagree with eager fp32: their throughput is for information only.")
    title = "Throughput (img/s) against batch size"
    sec.files = out.table(sweep, "deployment_batch", title, digits=3, markdown=pd.DataFrame(markdown))
    return sec


def _deploy_curves(curve: pd.DataFrame, out: Outputs) -> Section | None:
    """Latency against resolution (`D.latency_curve`): per model a figure (one line per variant) and the numbers.
    None without a model timed at two resolutions."""
    if curve.empty:
        return None
    sec = Section("deployment-resolution", "Latency against resolution")
    markdown = []
    for i, (model, rows) in enumerate(curve.groupby("model", sort=False)):
        first = rows.iloc[0]
        setting = f"batch 1, {_where(first)}, each variant at its own precision"
        alt = f"{model}: median latency at batch 1 against image size, one line per backend \u00d7 precision"
        fig = out.figure(
            figures.deploy_latency_curve, f"deployment_resolution_{i + 1}.png", alt, rows, f"{model}: {setting}"
        )
        if fig is not None:
            sec.figures.append(fig)
        sizes = rows.drop_duplicates("resolution").sort_values("megapixels")
        resolutions = list(sizes["resolution"])
        table = []
        for j, (_, mine) in enumerate(rows.groupby("variant", sort=False)):
            head = mine.iloc[0]
            by = mine.set_index("resolution")
            cells = [Cell(head["precision"])]
            for r in resolutions:
                noisy = r in by.index and by.loc[r, "noisy"]
                text = sig(by.loc[r, "latency_median_ms"]) if r in by.index else "\u2013"
                cells.append(Cell(text + (" \u26a0" if noisy else ""), "noisy" if noisy else ""))
            cls = "disagrees" if head["status"] == "disagrees" else ""
            table.append(Row(cells, label=head["backend"], cls=cls, divider=f"{model}: {setting}" if j == 0 else ""))
            markdown.append(
                {
                    "model": model,
                    "on": _where(head),
                    "backend": head["backend"],
                    "precision": head["precision"],
                    **{f"{r} (ms)": c.text for r, c in zip(resolutions, cells[1:])},
                }
            )
        header = ["Backend", "Precision", *resolutions]
        subheader = ["", "megapixels", *[f"{mp:.3g}" for mp in sizes["megapixels"]]]
        groups = [("", 2), ("Median latency at batch 1 (ms)", len(resolutions))]
        sec.tables.append(HtmlTable(header, table, groups, subheader, cls="deploy-resolution"))
    sec.notes.append(
        "Median latency per image (ms) at batch 1 against the image size (H\u00d7W), model call only, on the machine "
        "named above each table, each variant at its own precision (backend and precision name the line and the "
        "row). The y axis is logarithmic when the latencies span more than a factor of 10; \u26a0 marks a noisy "
        "timing."
    )
    sec.files = out.table(
        curve,
        "deployment_resolution",
        "Median latency at batch 1 (ms) against resolution",
        3,
        markdown=pd.DataFrame(markdown),
    )
    return sec


def _e2e_columns(stages: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The end-to-end table's header, each column's title (a tooltip) and each column's Markdown name."""
    header = [
        "Backend",
        "Precision",
        "Inference",
        "Model only p50",
        "p50",
        "p90",
        "p99",
        *stages,
        "Not the model",
        "End to end (img/s)",
    ]
    titles = [
        "",
        "",
        "",
        "the model call alone at batch 1, same resolution (the grid's timing: random input already on the device)",
        "median end-to-end time per call",
        "90th percentile",
        "99th percentile",
        *[STAGE_TITLES.get(s, s) for s in stages],
        "the share of the stages' sum outside the model stage",
        "images per second, one image per call",
    ]
    names = [
        "precision",
        "inference",
        "model only p50 (ms)",
        "p50 (ms)",
        "p90 (ms)",
        "p99 (ms)",
        *[f"{s} stage (ms, %)" for s in stages],
        "not the model",
        "end to end (img/s)",
    ]
    return header, titles, names


def _e2e_cells(r: pd.Series, stages: list[str]) -> list[Cell]:
    """One end-to-end row's cells (the backend is the row's label)."""
    slide = r["inference"] == "slide"
    if slide:
        crops = f"{r['num_crops']} crops" if r["num_crops"] else "crops"
        mode = f"sliding window: {crops} of {r['crop'] or '?'}, stride {r['stride'] or '?'}"
    else:
        mode = "whole image" if r["inference"] == "whole" else r["inference"] or "?"
    alone = ""
    if pd.isna(r["model_only_ms"]):
        alone = "the grid times the whole image only" if slide else "no model-only timing at this resolution"
    return [
        Cell(r["precision"]),
        Cell(mode, "mode"),
        Cell(sig(r["model_only_ms"]), title=alone),
        *[Cell(sig(r[c])) for c in ("latency_e2e_median_ms", "latency_e2e_p90_ms", "latency_e2e_p99_ms")],
        *[Cell(_stage(r[f"{s}_ms"], r[f"{s}_pct"])) for s in stages],
        Cell("\u2013" if pd.isna(r["not_model_pct"]) else f"{r['not_model_pct']:.0f}%"),
        Cell(sig(r["throughput_e2e_img_s"])),
    ]


def _deploy_end_to_end(e2e: pd.DataFrame, out: Outputs) -> Section | None:
    """Model only vs end to end (`D.end_to_end`): per model, each variant's model-only latency beside its end-to-end
    latency, whole image and sliding window, with the stage split. None without end-to-end rows."""
    if e2e.empty:
        return None
    sec = Section("deployment-e2e", "Model only vs end to end")
    stages = D.e2e_stages(e2e)
    header, titles, names = _e2e_columns(stages)
    groups = [("", 3), ("Latency per image (ms)", 4), ("Stage medians: ms (% of their sum)", len(stages)), ("", 2)]
    markdown = []
    for model, rows in e2e.groupby("model", sort=False):
        resolution = ", ".join(dict.fromkeys(rows["resolution"]))
        divider = f"{model}: one {resolution} PNG per call (batch 1), on {_where(rows.iloc[0])}"
        table = []
        for i, (_, r) in enumerate(rows.iterrows()):
            cells = _e2e_cells(r, stages)
            cls = "disagrees" if r["status"] == "disagrees" else ""
            table.append(Row(cells, label=r["backend"], cls=cls, divider=divider if i == 0 else ""))
            texts = dict(zip(names, [c.text for c in cells]))
            markdown.append(
                {"model": model, "resolution": r["resolution"], "on": _where(r), "backend": r["backend"], **texts}
            )
        sec.tables.append(HtmlTable(header, table, groups, titles=titles, cls="deploy-e2e"))
    sec.notes.append(
        "End to end: one image per call, from the PNG on disk to the label map on the host, each variant at its own "
        "precision, stage by stage: "
        + "; ".join(f"{s}: {STAGE_TITLES.get(s, s)}" for s in stages)
        + ". p50, p90 and p99 are of the per-call totals (ms); a stage's time is its median over the calls, its "
        "share is of the stages' sum (which can differ slightly from p50). Model only: the model call alone at batch "
        "1 and the same resolution, from the grid's timing (a random tensor already on the device). Not the model: "
        "the share of the stages' sum spent outside the model stage."
    )
    sec.files = out.table(
        e2e, "deployment_end_to_end", "Model only vs end to end (ms)", 3, markdown=pd.DataFrame(markdown)
    )
    return sec


def _stage(ms: float, pct: float) -> str:
    """A stage cell: `3.72 (71%)`."""
    return "\u2013" if pd.isna(ms) else sig(ms) + ("" if pd.isna(pct) else f" ({pct:.0f}%)")


STAGE_TITLES = {
    "decode": "the PNG read from disk and decoded",
    "preprocess": "to a tensor on the device, normalised",
    "model": "the forward pass (whole image, or every crop of the sliding window, stitched)",
    "postprocess": "logits resized to the labels, argmax, copied to the host",
}
"""What each end-to-end stage covers (`bench.measure.end_to_end`; a stage not listed here is named as is)."""
