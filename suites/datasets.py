"""Suites on datasets beyond Cityscapes: ADE20K, Pascal VOC 2012, COCO-Stuff 164k and the user's own folder, each
clean (`<name>`) and under the 16 corruptions at severities 1-5 (`<name>-c`).

No canonical ADE20K-C, VOC-C or COCO-Stuff-C was ever released (Kamann & Rother's images are not public; DUSA's
ADE20K-C tarball holds severity 5 only and cannot be regenerated), so the corrupted suites are seeded per image,
corruption and severity (`bench.data.corruptions.condition_seed`): the same bytes on every machine, on the fly or
through `generate-c`.

Protocol (mmseg's test pipelines, `bench.data.datasets.Protocol`): the image is resized with keep-ratio to scale
(2048, 512), so its short side is 512 unless the long side would pass 2048; labels keep their size and predictions are
resized to them. Whole-image inference for every model: SegFormer's protocol (the paper's Table 1). mmseg evaluates
its sliding-window ADE20K models (UperNet and the like) with 512x512 crops at stride 341 instead (`Protocol.crop`,
`Protocol.stride`); these suites do not switch protocol per model. The folder suites take the protocol of the
folder's dataset.json (`bench.run.plan`).
"""

from __future__ import annotations

from segbench.bench.results.axes import CORRUPTIONS, SEVERITIES, Condition
from segbench.bench.run.config import InferenceSpec
from segbench.bench.spec import EfficiencySpec, SuiteSpec
from segbench.suites.registry import register_suite

CORRUPTED = (Condition(),) + tuple(Condition(c, s) for c in CORRUPTIONS for s in SEVERITIES)
"""Clean, then the 16 corruptions at severities 1-5 (the Cityscapes-C corruptions; all severities, noise included)."""

# The SegFormer paper's Figure 1 / Table 1 axes: parameters and MACs at 512x512 (its "GFLOPs" count multiply-adds).
PAPER_512 = EfficiencySpec(resolutions=((512, 512),), batch_sizes=(1,), warmup=3, iters=10)

_ROOTS = {
    "ade20k": "--data ade20k=PATH (the folder holding images/ and annotations/) or ADE20K_DATASET",
    "voc": "--data voc=PATH (the VOC2012 folder) or VOC_DATASET",
    "coco_stuff": "--data coco-stuff=PATH or COCO_STUFF_DATASET",
    "folder": "--data folder=PATH (images/, labels/ and dataset.json)",
}
_WHAT = {
    "ade20k": "ADE20K val (2,000 images, 150 classes, label 0 not scored)",
    "voc": "Pascal VOC 2012 val (the 1,449 ids of val.txt, 21 classes with background, borders not scored)",
    "coco_stuff": "COCO-Stuff 164k val2017 (5,000 images, 171 classes)",
    "folder": "your own images and labels in a folder, with their classes in dataset.json",
}


def _register(dataset: str, name: str, efficiency: EfficiencySpec | None) -> None:
    protocol = "the dataset.json protocol (default: whole image at its own size)"
    if dataset != "folder":
        protocol = "whole image resized with keep-ratio to short side 512 (mmseg scale (2048, 512))"
    register_suite(
        SuiteSpec(
            name=name,
            version="1",
            description=f"{_WHAT[dataset]}, clean; {protocol}. Root: {_ROOTS[dataset]}.",
            dataset=dataset,
            conditions=(Condition(),),
            inference=InferenceSpec(mode="whole"),
            efficiency=efficiency,
            default_models=("segformer-b0",),
        )
    )
    register_suite(
        SuiteSpec(
            name=f"{name}-c",
            version="1",
            description=f"{_WHAT[dataset]}, clean and under the 16 corruptions at severities 1-5, generated "
            f"reproducibly (seeded per image, corruption and severity); {protocol}. Root: {_ROOTS[dataset]}.",
            dataset=dataset,
            conditions=CORRUPTED,
            inference=InferenceSpec(mode="whole"),
            default_models=("segformer-b0",),
        )
    )


_register("ade20k", "ade20k", PAPER_512)
_register("voc", "voc", None)
_register("coco_stuff", "coco-stuff", None)
_register("folder", "folder", None)
