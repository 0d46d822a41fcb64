"""Every model source segbench takes, in one process: architecture x {predictions equal, params, GMACs, CPU latency}.

    python -m benchmarks.bench_any_model                          # every row (about 2 minutes on 2 idle CPU cores)
    python -m benchmarks.bench_any_model --only segformer,dpt,onnx

One row per architecture of the `hf:` source (`models.hf.SUPPORTED`; UperNet twice, with ConvNeXt and with Swin),
plus `py:` (a tiny conv net in a temporary .py file) and the same net as `torchscript:` and `onnx:` files. For each:

1. a small random-init model (widths 16-64; nothing is downloaded) with the 19 Cityscapes classes as `id2label` is
   saved into a temporary folder (`save_pretrained`, with its image processor; OneFormer with a tokenizer) and
   loaded through segbench as a user would: `build_from_source(BuildRequest(parse_model_spec("hf:<folder>"), ...))`;
2. predictions equal: segbench's `predict(model, images, InferenceSpec(mode="whole"))` on 2 synthetic Cityscapes
   scenes (`bench.data.synthetic.draw_scene`) against transformers alone (the processor's preprocessing without
   resizing, the model's forward, the processor's `post_process_semantic_segmentation` at the image size), or, for
   py/torchscript/onnx, against the plain torch module (forward, bilinear upsampling, argmax);
3. params (M): `bench.measure.efficiency.count_params` (for ONNX: the graph's weight initializers, `num_parameters`);
4. GMACs: `bench.measure.flops.count_flops(..., convention="fvcore")` at batch 1; "n/a" where the source says no counter
   traces it (`source_info.flop_conventions` empty: TorchScript, ONNX);
5. CPU latency: `bench.measure.latency.measure_latency` (batch 1, fp32, warm-up 2, 5 timed calls, no re-measurement),
   the median in ms.

Sizes: 4 and 5 at 512x1024, except for models that cannot take it: a fixed input size (Data2Vec-Vision:
`config.image_size`) or square inputs only (DPT) are measured at their `meta.eval_crop` (the window the suite's
slide mode runs them on), and the row says so. Predictions are compared at 256x512 (at the eval crop for those).

The tiny models are made to predict several classes (weights of unit gain, class layers standardised on other
scenes, as tests/test_hf.py does; the column says how many the reference predicts): a model predicting one class
everywhere would prove little. The mask-classification models (Mask2Former, MaskFormer, OneFormer) still predict only
a few, their random queries being much alike. The numbers are the pipeline's (segbench's wrapper, normalisation,
resizing, counters), not the published models'. The allocator is set as run_bench.py sets it (`retain_freed_memory`;
`SEGBENCH_MALLOC=system` for the C library's default), which changes CPU latency.

A row whose build fails shows the error's first line and the others still run. Exit status 1 when a prediction
differs or any cell failed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub read it: never download

import numpy as np
import torch
import torch.nn.functional as F

from segbench.bench.data.synthetic import draw_scene
from segbench.bench.measure.efficiency import count_params
from segbench.bench.measure.flops import count_flops
from segbench.bench.measure.inference import normalize, predict
from segbench.bench.measure.latency import cpu_model_name, measure_latency
from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.run.allocator import retain_freed_memory
from segbench.bench.run.config import InferenceSpec
from segbench.models import build_from_source
from segbench.models.hf_tiny import calibrate_classifiers, liven, make_processor, model_type
from segbench.models.sources import BuildRequest, parse_model_spec

CLASSES = CITYSCAPES.names
BENCH_SIZE = (512, 1024)  # GMACs and latency (Cityscapes at half resolution)
CHECK_SIZE = (256, 512)  # predictions compared on 2 scenes of this size
VIT_IMAGE_SIZE = 512  # DPT / BEiT / Data2Vec-Vision: config.image_size, their default sliding window
MEAN, STD = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)  # not ImageNet's: a processor config segbench ignored would show
NOTE = "random-init tiny configs: the numbers are the pipeline's, not the published models'"


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    return (f"{type(e).__name__}: {line}" if line else type(e).__name__)[:160].replace("|", "/")


# --------------------------------------------------------------------------------------------------------------------
# Tiny transformers models (wider than tests/test_hf.py's: 16-64 channels, a few layers per stage)
# --------------------------------------------------------------------------------------------------------------------


def configs(transformers: Any) -> dict[str, Callable[[], Any]]:
    t = transformers

    def swin() -> Any:
        return t.SwinConfig(
            image_size=224,
            embed_dim=16,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 2, 4],
            window_size=7,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        )

    def vit_like(cls: type, **kwargs: Any) -> Any:
        return cls(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=128,
            image_size=VIT_IMAGE_SIZE,
            patch_size=16,
            **kwargs,
        )

    return {
        "segformer": lambda: t.SegformerConfig(
            depths=[2, 2, 2, 2],
            hidden_sizes=[16, 32, 48, 64],
            num_attention_heads=[1, 1, 2, 2],
            decoder_hidden_size=64,
        ),
        "upernet-convnext": lambda: t.UperNetConfig(
            backbone_config=t.ConvNextConfig(
                hidden_sizes=[16, 32, 48, 64],
                depths=[1, 1, 2, 1],
                out_features=["stage1", "stage2", "stage3", "stage4"],
            ),
            hidden_size=64,
            auxiliary_channels=32,
            pool_scales=[1, 2, 3, 6],
        ),
        "upernet-swin": lambda: t.UperNetConfig(
            backbone_config=swin(), hidden_size=64, auxiliary_channels=32, pool_scales=[1, 2, 3, 6]
        ),
        "dpt": lambda: vit_like(
            t.DPTConfig,
            backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[16, 32, 48, 64],
            fusion_hidden_size=64,
        ),
        "beit": lambda: vit_like(
            t.BeitConfig,
            out_indices=[1, 2, 3, 4],
            pool_scales=[1, 2, 3, 6],
            auxiliary_channels=32,
            use_relative_position_bias=True,
        ),
        "data2vec-vision": lambda: vit_like(
            t.Data2VecVisionConfig,
            out_indices=[1, 2, 3, 4],
            pool_scales=[1, 2, 3, 6],
            auxiliary_channels=32,
            use_relative_position_bias=True,
        ),
        "mobilenet_v2": lambda: t.MobileNetV2Config(depth_multiplier=0.35, image_size=512, output_stride=8),
        "mobilevit": lambda: t.MobileViTConfig(
            image_size=512,
            hidden_sizes=[32, 48, 64],
            neck_hidden_sizes=[16, 16, 24, 32, 48, 64, 128],
            num_attention_heads=2,
            aspp_out_channels=64,
            output_stride=8,
        ),
        "mobilevitv2": lambda: t.MobileViTV2Config(
            image_size=512, width_multiplier=0.5, aspp_out_channels=64, output_stride=8
        ),
        "mask2former": lambda: t.Mask2FormerConfig(
            backbone_config=swin(),
            feature_size=64,
            mask_feature_size=64,
            hidden_dim=64,
            encoder_feedforward_dim=128,
            encoder_layers=2,
            decoder_layers=4,
            num_attention_heads=2,
            dim_feedforward=128,
            num_queries=50,
        ),
        "maskformer": lambda: t.MaskFormerConfig(
            backbone_config=swin(),
            decoder_config=t.DetrConfig(
                d_model=64,
                encoder_layers=1,
                decoder_layers=2,
                encoder_ffn_dim=128,
                decoder_ffn_dim=128,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                num_queries=50,
            ),
            fpn_feature_size=64,
            mask_feature_size=64,
            num_queries=50,
        ),
        "oneformer": lambda: t.OneFormerConfig(
            backbone_config=swin(),
            num_queries=50,
            text_encoder_width=32,
            text_encoder_num_layers=1,
            text_encoder_vocab_size=64,
            text_encoder_n_ctx=0,
            text_encoder_proj_layers=1,
            conv_dim=64,
            mask_dim=64,
            hidden_dim=64,
            encoder_feedforward_dim=128,
            encoder_layers=2,
            decoder_layers=4,
            num_attention_heads=2,
            dim_feedforward=128,
            query_dec_layers=1,
            task_seq_len=8,
            text_encoder_context_length=8,
        ),
    }


def scenes(size: tuple[int, int], first: int, count: int = 2) -> torch.Tensor:
    """uint8 RGB `(count, 3, H, W)`: synthetic Cityscapes scenes `first, first + 1, ...` (seed 0)."""
    return torch.stack([torch.from_numpy(draw_scene(size, 0, first + i)[0]).permute(2, 0, 1) for i in range(count)])


def processor_inputs(processor: Any, mtype: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What transformers' own processor makes of `images` (no resizing or cropping)."""
    kwargs: dict[str, Any] = {"do_resize": False}
    if mtype in ("mobilenet_v2", "mobilevit", "mobilevitv2"):
        kwargs["do_center_crop"] = False
    if mtype == "oneformer":
        kwargs["task_inputs"] = ["semantic"] * len(images)
    inputs = processor(images=list(images.permute(0, 2, 3, 1).numpy()), return_tensors="pt", **kwargs)
    return {k: inputs[k] for k in ("pixel_values", "task_inputs") if k in inputs}


# --------------------------------------------------------------------------------------------------------------------
# The tiny user model (py:, torchscript:, onnx:)
# --------------------------------------------------------------------------------------------------------------------

PY_MEAN, PY_STD = [0.45, 0.45, 0.45], [0.25, 0.25, 0.25]
PY_FILE = f'''"""A tiny two-scale conv net, as a user would write one for `py:tiny_net.py:build`."""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

segbench_meta = {{"mean": {PY_MEAN}, "std": {PY_STD}, "output_stride": 4}}


def _block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Sequential(_block(3, 16, 2), _block(16, 32, 2))  # 1/4
        self.deep = nn.Sequential(_block(32, 64, 2), _block(64, 64, 1), _block(64, 64, 2))  # 1/16
        self.fuse = _block(64 + 32, 64, 1)
        self.classifier = nn.Conv2d(64, num_classes, 1)

    def forward(self, x):
        s4 = self.stem(x)
        deep = F.interpolate(self.deep(s4), size=s4.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([s4, deep], 1)))


WEIGHTS = Path(__file__).with_name("tiny_net_weights.pt")


def build(num_classes=19):
    torch.manual_seed(0)  # the same weights on every call
    model = TinyNet(num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    if WEIGHTS.is_file():  # random weights, their classifier calibrated by the benchmark
        model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()
'''


def import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("_bench_tiny_net_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    source: str = ""
    equal: str = ""
    params: str = ""
    gmacs: str = ""
    latency: str = ""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def cells(self) -> list[str]:
        return [self.name, self.source, self.equal, self.params, self.gmacs, self.latency]


@dataclass
class Built:
    """A model loaded through segbench, and its reference: `reference(images) -> labels` at the images' size."""

    model: torch.nn.Module
    reference: Callable[[torch.Tensor], torch.Tensor]
    check_size: tuple[int, int]


def hf_builder(transformers: Any, name: str, root: Path) -> Callable[[], Built]:
    def build() -> Built:
        from segbench.models.hf import SUPPORTED

        mtype = model_type(name)
        arch = SUPPORTED[mtype]
        config = configs(transformers)[name]()
        config.id2label = dict(enumerate(CLASSES))
        config.label2id = {label: i for i, label in enumerate(CLASSES)}
        processor = make_processor(transformers, mtype, MEAN, STD, getattr(config, "task_seq_len", 8))
        square = mtype in ("dpt", "data2vec-vision")
        check = (VIT_IMAGE_SIZE, VIT_IMAGE_SIZE) if square else CHECK_SIZE
        torch.manual_seed(0)
        hf_model = liven(getattr(transformers, arch.model_class)(config).eval())
        calibration = processor_inputs(processor, mtype, scenes(check, first=10))  # other scenes than the check's
        calibrate_classifiers(hf_model, lambda: hf_model(**calibration), config.num_labels)
        folder = root / name
        hf_model.save_pretrained(folder)
        processor.save_pretrained(folder)
        spec = parse_model_spec(f"hf:{folder}")
        model = build_from_source(BuildRequest(spec=spec, num_classes=len(CLASSES), class_names=CLASSES))

        def reference(images: torch.Tensor) -> torch.Tensor:
            inputs = processor_inputs(processor, mtype, images)
            with torch.no_grad():
                outputs = hf_model(**inputs)
            sizes = [tuple(images.shape[-2:])] * len(images)
            return torch.stack(processor.post_process_semantic_segmentation(outputs, target_sizes=sizes))

        return Built(model, reference, check)

    return build


@dataclass
class UserFiles:
    """The tiny net's .py file, its TorchScript and ONNX exports, and the plain module they come from."""

    py: Path
    torchscript: Path
    onnx: Path
    module: torch.nn.Module


def user_files(root: Path) -> UserFiles:
    py = root / "tiny_net.py"
    py.write_text(PY_FILE)
    user_module = import_file(py)
    module = user_module.build(len(CLASSES))
    x = normalize(scenes(CHECK_SIZE, first=10), PY_MEAN, PY_STD)  # other scenes than the check's
    calibrate_classifiers(module, lambda: module(x), len(CLASSES))
    torch.save(module.state_dict(), user_module.WEIGHTS)  # what build() loads from now on
    declaration = json.dumps({"mean": PY_MEAN, "std": PY_STD, "output_stride": 4})
    ts, onnx = root / "tiny_net.pt", root / "tiny_net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit and the TorchScript-based ONNX exporter are deprecated
        torch.jit.save(torch.jit.script(module), str(ts))
        torch.onnx.export(
            module,
            (torch.randn(1, 3, *CHECK_SIZE),),
            str(onnx),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "h", 3: "w"}},
        )
    for file in (ts, onnx):
        Path(f"{file}.segbench.json").write_text(declaration)  # the sidecar declaration
    return UserFiles(py, ts, onnx, module)


def user_builder(kind: str, root: Path, files: Callable[[], UserFiles]) -> Callable[[], Built]:
    def build() -> Built:
        f = files()
        target = {"py": f"{f.py}:build", "torchscript": str(f.torchscript), "onnx": str(f.onnx)}[kind]
        spec = parse_model_spec(f"{kind}:{target}")
        model = build_from_source(BuildRequest(spec=spec, num_classes=len(CLASSES), class_names=CLASSES))

        def reference(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                logits = f.module(normalize(images, PY_MEAN, PY_STD))
                logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
            return logits.argmax(1)

        return Built(model, reference, CHECK_SIZE)

    return build


def source_label(name: str) -> str:
    """The Source column: the kind and what it loads (the temporary folder left out)."""
    if name in USER_ROWS:
        return {
            "py": "py: tiny_net.py:build",
            "torchscript": "torchscript: tiny_net.pt",
            "onnx": "onnx: tiny_net.onnx (ONNX Runtime)",
        }[name]
    from segbench.models.hf import SUPPORTED

    return f"hf: {SUPPORTED[model_type(name)].model_class}"


def bench_size(model: torch.nn.Module) -> tuple[tuple[int, int], str]:
    """512x1024, or the eval crop of a model that takes only a fixed size or square inputs (with the reason)."""
    fixed = getattr(model, "fixed_size", None)
    arch = getattr(model, "arch", None)
    onnx_size = getattr(getattr(model, "model", None), "size", None)  # a fixed-size ONNX graph
    if fixed or onnx_size:
        return tuple(model.meta.eval_crop), "eval_crop: fixed input size"
    if arch is not None and arch.input == "square":
        return tuple(model.meta.eval_crop), "eval_crop: square inputs only"
    return BENCH_SIZE, ""


def at(size: tuple[int, int], why: str) -> str:
    return f"@{size[0]}x{size[1]}" + (f" ({why})" if why else "")


def run_row(row: Row, build: Callable[[], Built], log: Callable[[str], None]) -> None:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = build()
    except Exception as e:  # noqa: BLE001 - a failing row is reported in the table, the next row goes on
        row.equal = f"build failed: {first_line(e)}"
        row.params = row.gmacs = row.latency = "-"
        row.problems.append(f"{row.name}: build failed: {first_line(e)}")
        log(traceback.format_exc(limit=4))
        return
    model = built.model
    stamp = time.perf_counter()

    # 2. predictions
    try:
        images = scenes(built.check_size, first=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = predict(model, images, InferenceSpec(mode="whole"))
            ref = built.reference(images)
        h, w = built.check_size
        if ours.shape != ref.shape:
            row.equal = f"NO: shapes {tuple(ours.shape)} vs {tuple(ref.shape)}"
            row.problems.append(f"{row.name}: predictions differ")
        else:
            differ = int((ours != ref).sum())
            classes = int(ref.unique().numel())
            if differ == 0:
                row.equal = f"yes ({ours.numel()} px, 2x{h}x{w}, {classes} class{'es' if classes > 1 else ''})"
            else:
                row.equal = f"NO: {differ} of {ours.numel()} px differ (2x{h}x{w})"
                row.problems.append(f"{row.name}: predictions differ ({differ} px)")
    except Exception as e:  # noqa: BLE001 - a failing row is reported in the table, the next row goes on
        row.equal = f"error: {first_line(e)}"
        row.problems.append(f"{row.name}: predictions: {first_line(e)}")
    t_check = time.perf_counter() - stamp

    # 3. params
    try:
        row.params = f"{count_params(model).total / 1e6:.4f}"
    except Exception as e:  # noqa: BLE001 - a failing row is reported in the table, the next row goes on
        row.params = f"error: {first_line(e)}"
        row.problems.append(f"{row.name}: params: {first_line(e)}")

    size, why = bench_size(model)
    # 4. GMACs
    stamp = time.perf_counter()
    source_info = getattr(model, "source_info", None)
    if source_info is not None and "fvcore" not in source_info.flop_conventions:
        row.gmacs = "n/a (no counter traces it)"
    else:
        try:
            row.gmacs = f"{count_flops(model, size, convention='fvcore').gmacs:.2f} {at(size, why)}"
        except Exception as e:  # noqa: BLE001 - a failing row is reported in the table, the next row goes on
            row.gmacs = f"error: {first_line(e)}"
            row.problems.append(f"{row.name}: GMACs: {first_line(e)}")
    t_flops = time.perf_counter() - stamp

    # 5. latency
    stamp = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = measure_latency(model, size, device="cpu", warmup=2, iters=5, cv_threshold=1.0, max_retries=0)
        row.latency = f"{stats.median_ms:.1f} {at(size, why)}"
    except Exception as e:  # noqa: BLE001 - a failing row is reported in the table, the next row goes on
        row.latency = f"error: {first_line(e)}"
        row.problems.append(f"{row.name}: latency: {first_line(e)}")
    t_latency = time.perf_counter() - stamp
    row.seconds = time.perf_counter() - start
    log(f"  {row.name}: {row.seconds:.1f} s (check {t_check:.1f}, GMACs {t_flops:.1f}, latency {t_latency:.1f})")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line.format(*header), rule] + [line.format(*r) for r in rows])


HF_ROWS = ("segformer", "upernet-convnext", "upernet-swin", "dpt", "beit", "data2vec-vision", "mobilenet_v2",
           "mobilevit", "mobilevitv2", "mask2former", "maskformer", "oneformer")  # fmt: skip
USER_ROWS = ("py", "torchscript", "onnx")
ROWS = HF_ROWS + USER_ROWS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help=f"comma list of rows (default: all): {', '.join(ROWS)}")
    args = ap.parse_args()
    chosen = ROWS if args.only is None else tuple(r.strip() for r in args.only.split(",") if r.strip())
    unknown = sorted(set(chosen) - set(ROWS))
    if unknown:
        ap.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    chosen = tuple(r for r in ROWS if r in chosen)

    start = time.perf_counter()
    malloc = retain_freed_memory()  # as run_bench.py does; SEGBENCH_MALLOC=system for the C library's default
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    rows = [Row(name, source_label(name)) for name in chosen]
    with tempfile.TemporaryDirectory(prefix="segbench-any-model-") as tmp:
        root = Path(tmp)
        cache: dict[str, UserFiles] = {}

        def files() -> UserFiles:  # made once, for the first user row that needs them
            if "files" not in cache:
                cache["files"] = user_files(root)
            return cache["files"]

        for i, row in enumerate(rows, 1):
            log(f"[{i}/{len(rows)}] {row.name}")
            build = (
                hf_builder(transformers, row.name, root) if row.name in HF_ROWS else user_builder(row.name, root, files)
            )
            run_row(row, build, log)
            gc.collect()

    wall = time.perf_counter() - start
    print(
        f"# torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {ort_version}, "
        f"numpy {np.__version__}, python {platform.python_version()}\n"
        f"# CPU: {cpu_model_name()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}; "
        f"allocator: {malloc}\n"
        f"# {NOTE}\n"
        f"# predictions: segbench predict (whole) vs transformers' processor + forward + "
        f"post_process_semantic_segmentation (py/torchscript/onnx: the plain torch module + upsample + argmax), "
        f"2 synthetic Cityscapes scenes\n"
        f"# GMACs: count_flops fvcore, batch 1; latency: measure_latency CPU fp32 batch 1, warm-up 2, median of 5\n"
    )
    header = [
        "architecture",
        "source",
        "predictions equal",
        "params (M)",
        "GMACs [fvcore] @size",
        "CPU latency ms @size",
    ]
    print(markdown(header, [r.cells() for r in rows]))
    problems = [p for r in rows for p in r.problems]
    print(f"\n{len(rows)} rows in {wall:.0f} s; " + ("no problems" if not problems else f"{len(problems)} problem(s):"))
    for p in problems:
        print(f"- {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
