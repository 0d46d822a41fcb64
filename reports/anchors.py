"""Published anchors of a run's dataset beyond Cityscapes: the numbers a reader holds the run's clean and corrupted mIoU
against, each labelled with the protocol it was measured under (pandas only; no torch).

Cityscapes' anchors are drawn where their layout is (Table 5 in the Cityscapes-C table, Table 1 and the mmseg zoo on
the efficiency curves, SemSegBench in the real-world table). For ADE20K and Pascal VOC the anchors are the SegFormer
paper's Table 1 (ADE20K single-scale mIoU) and SemSegBench's clean and severity-3 corruption means, read through
`tables.read_reference` from `reports/reference/` like every published number, and matched to the run's models by
registry name (`segformer-b0`; SemSegBench's mmseg checkpoints as `segformer-b0-mmseg`: `realworld.semsegbench_match`).
The run's side is rows it wrote (clean mIoU, Gaussian noise at severity 3) and summary.csv's mPC: no score is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.bench.results.classes import UNNAMED
from segbench.bench.results.schema import MPC
from segbench.reports.realworld import SEMSEGBENCH, semsegbench_match
from segbench.reports.tables import read_reference, reference_table1, summary_wide

DATASET_NAMES = {
    "cityscapes": "Cityscapes",
    "ade20k": "ADE20K",
    "voc": "Pascal VOC",
    "coco_stuff": "COCO-Stuff",
    "folder": "a folder dataset",
    UNNAMED: "the run's dataset",
}
"""How the report names the dataset of run.json's class table (others by their own name)."""

ANCHORED = ("ade20k", "voc")
"""The datasets with published anchors in this module."""

COLUMNS = {
    "clean": "Clean mIoU (%)",
    "mPC": "mPC (%): this run's corruptions, severities averaged",
    "corruptions_sev3": "Mean of 15 corruptions at severity 3 (%)",
    "gaussian_noise-3": "Gaussian noise, severity 3 (%)",
}
"""The anchor table's columns (key: head). A published source fills the columns it has; the run fills the others."""

THIS_RUN = "this run"

TABLE1 = "SegFormer Table 1 (Xie et al., NeurIPS 2021)"

SEMSEGBENCH_PROTOCOL = (
    "mmseg checkpoint{trained}, evaluated by SemSegBench's own mmseg code under fp16 autocast; corruptions: 15 of "
    "its own (zoom, elastic and pixelate among them; not the 16 of Cityscapes-C) at severity 3 only"
)


def dataset_name(dataset: str) -> str:
    """`ade20k` -> "ADE20K" (a name the report does not know is shown as it is)."""
    return DATASET_NAMES.get(dataset, dataset)


def table1_protocol(crop: str) -> str:
    """The protocol of a Table 1 ADE20K row, from its training crop ("512x512")."""
    short = crop.split("x")[0]
    return (
        f"{crop} training crops, whole-image inference at short side {short}, 160k iterations, single scale; "
        "the authors' checkpoint"
    )


@dataclass
class Anchors:
    """Per run model that has a published anchor: its own row, then the published rows it is held against.

    Attributes:
        dataset: the run's dataset (`ANCHORED`).
        rows: `model, source, protocol` and the `COLUMNS` keys (NaN where a source has no such figure); a published
            row's `model` is the published name, `anchor_of` the run model it stands beside ("" on the run's rows).
    """

    dataset: str
    rows: pd.DataFrame

    @property
    def matched(self) -> list[str]:
        """The run's models that have an anchor, in order."""
        return list(self.rows.loc[self.rows["source"] == THIS_RUN, "model"])


def _published(dataset: str) -> list[pd.DataFrame]:
    """The published tables of `dataset`, each indexed by published name, with `source`, `protocol` and the `COLUMNS`
    keys it has."""
    out = []
    if dataset == "ade20k":
        t1 = reference_table1()
        protocol = t1["ade20k_input"].map(table1_protocol)
        out.append(pd.DataFrame({"source": TABLE1, "protocol": protocol, "clean": t1["ade20k_miou_ss"]}))
    ssb = read_reference("semsegbench_ade20k_voc.csv", "model")
    ssb = ssb[ssb["dataset"] == dataset]
    trained = " (its own VOC-aug-trained model)" if dataset == "voc" else ""
    protocol = [SEMSEGBENCH_PROTOCOL.format(trained=f"{trained}, {c}x{c} crops") for c in ssb["crop"]]
    columns = {"clean_miou": "clean", "corruptions_sev3_mean_miou": "corruptions_sev3"}
    columns["gaussian_noise_sev3_miou"] = "gaussian_noise-3"
    out.append(ssb[list(columns)].rename(columns=columns).assign(source=SEMSEGBENCH, protocol=protocol))
    return out


def dataset_anchors(
    dataset: str, models: Sequence[str], conditions: pd.DataFrame, summary: pd.DataFrame
) -> Anchors | None:
    """The anchor table of a run (None when its dataset has no anchors or none of `models` matches one).

    Args:
        dataset: run.json's class table name.
        models: the run's models held against published figures (the report leaves out random and demo weights).
        conditions: mIoU per model and condition (`tables.miou_conditions`): clean, and Gaussian noise at 3.
        summary: summary.csv (its mPC rows).
    """
    if dataset not in ANCHORED:
        return None
    published = _published(dataset)
    mpc = summary_wide(summary, MPC, by="condition") if not summary.empty else pd.DataFrame()
    rows = []
    for model in models:
        matches = []
        for frame in published:
            name = semsegbench_match(model, list(frame.index))  # the same name, else `<name>-mmseg`
            if name is not None:
                matches.append({"model": name, "anchor_of": model, **frame.loc[name].to_dict()})
        if not matches:
            continue
        own = _run_values(model, conditions, mpc)
        rows.append({"model": model, "anchor_of": "", "source": THIS_RUN, "protocol": "", **own})
        rows += matches
    if not rows:
        return None
    frame = pd.DataFrame(rows).reindex(columns=["model", "anchor_of", "source", "protocol", *COLUMNS])
    return Anchors(dataset, frame)


def _run_values(model: str, conditions: pd.DataFrame, mpc: pd.DataFrame) -> dict[str, float]:
    """The run's own figures of a model for the anchor columns (NaN where it has none)."""
    mine = conditions[conditions["model"] == model]
    clean = mine.loc[mine["corruption"] == "clean", "miou"]
    noise = mine.loc[(mine["corruption"] == "gaussian_noise") & (mine["severity"] == 3), "miou"]
    has_mpc = model in mpc.index and "corrupted" in mpc.columns
    return {
        "clean": clean.iloc[0] if len(clean) else np.nan,
        "mPC": mpc.loc[model, "corrupted"] if has_mpc else np.nan,
        "corruptions_sev3": np.nan,
        "gaussian_noise-3": noise.iloc[0] if len(noise) else np.nan,
    }


def anchor_notes(anchors: Anchors) -> list[str]:
    """What the published rows are and why they are anchors, not comparisons."""
    notes = [
        f"Published anchors for {dataset_name(anchors.dataset)} (grey, italic): numbers from the papers, not measured "
        "in this run, each under its own protocol (in its row). A published name ending in '-mmseg' is mmseg's "
        "re-implemented checkpoint (its decoder 256 wide with a conv + BN + ReLU per branch), not the weights this "
        "run evaluated."
    ]
    if (anchors.rows["source"] == SEMSEGBENCH).any():
        notes.append(
            "SemSegBench's corruption figures are the mean over 15 corruptions of its own at severity 3 only, not the "
            "16 corruptions of Cityscapes-C averaged over severities 1-5: they are not comparable with this run's mPC, "
            "which is shown in its own column. Its Gaussian noise figure is at severity 3; this run's is its "
            "gaussian_noise-3 row where measured."
        )
    return notes
