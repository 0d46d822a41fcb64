"""The built-in suites. Each is data; `bench/` does the work. Bump a suite's version when its numbers would change."""

from __future__ import annotations

from pathlib import Path

from segbench.bench.results.axes import CORRUPTIONS, Condition, attack_grid, real_conditions
from segbench.bench.run.config import InferenceSpec
from segbench.bench.spec import DeploySpec, EfficiencySpec, SuiteSpec, SyntheticData, paper_conditions
from segbench.suites.registry import register_suite

DEMO_WEIGHTS = Path(__file__).resolve().parent / "demo_weights"  # made by scripts/train_demo.py
DEMO_MODELS = ("segformer-b0", "deeplabv3plus-mobilenetv2")

# Cityscapes evaluation as in the SegFormer and mmseg configs: 1024x1024 windows, stride 768, on 1024x2048 images.
CITYSCAPES_SLIDE = InferenceSpec(mode="slide", crop=(1024, 1024), stride=(768, 768))
# Short sides 512 / 640 / 768 / 1024 at Cityscapes' 1:2 aspect: the resolutions people deploy at.
CITYSCAPES_RESOLUTIONS = ((512, 1024), (640, 1280), (768, 1536), (1024, 2048))

register_suite(
    SuiteSpec(
        name="cityscapes-c",
        version="1",
        description="Cityscapes val, clean and under the 16 Cityscapes-C corruptions (SegFormer protocol: noise at "
        "severities 1-3, the others at 1-5), sliding-window inference, plus the cost probe at 1024x2048.",
        data="real",
        conditions=paper_conditions(),
        inference=CITYSCAPES_SLIDE,
        efficiency=EfficiencySpec(resolutions=((1024, 2048),), batch_sizes=(1,), warmup=3, iters=10),
        default_models=("segformer-b0",),
    )
)

register_suite(
    SuiteSpec(
        name="cityscapes",
        version="1",
        description="Clean Cityscapes val, sliding-window inference, plus the cost probe at 1024x2048.",
        data="real",
        conditions=(Condition(),),
        inference=CITYSCAPES_SLIDE,
        efficiency=EfficiencySpec(resolutions=((1024, 2048),), batch_sizes=(1,), warmup=3, iters=10),
        default_models=("segformer-b0",),
    )
)

# The real adverse-condition datasets, labelled in Cityscapes' 19 classes, evaluated with the Cityscapes protocol (a
# Cityscapes-trained model needs no retraining). Clean Cityscapes val is the reference point of each condition's drop.
register_suite(
    SuiteSpec(
        name="acdc",
        version="1",
        description="ACDC val under real fog, night, rain and snow (1080x1920), plus clean Cityscapes val as the "
        "reference for the drops; sliding-window inference. Roots: --data cityscapes=PATH,acdc=PATH or "
        "CITYSCAPES_DATASET and ACDC_DATASET.",
        data="real",
        conditions=(Condition(),) + real_conditions(("acdc",)),
        inference=CITYSCAPES_SLIDE,
        default_models=("segformer-b0",),
    )
)

register_suite(
    SuiteSpec(
        name="dark-zurich",
        version="1",
        description="Dark Zurich val (night, 1080x1920), sliding-window inference. Root: --data PATH or "
        "DARK_ZURICH_DATASET.",
        data="real",
        conditions=real_conditions(("dark_zurich",)),
        inference=CITYSCAPES_SLIDE,
        default_models=("segformer-b0",),
    )
)

register_suite(
    SuiteSpec(
        name="foggy-cityscapes",
        version="1",
        description="Foggy Cityscapes-DBF val at fog densities beta 0.005, 0.01 and 0.02, plus clean Cityscapes val; "
        "sliding-window inference. Root: the Cityscapes root holding leftImg8bit_foggyDBF/ (--data PATH or "
        "CITYSCAPES_DATASET).",
        data="real",
        conditions=(Condition(),) + real_conditions(("foggy_cityscapes",)),
        inference=CITYSCAPES_SLIDE,
        default_models=("segformer-b0",),
    )
)

register_suite(
    SuiteSpec(
        name="robustness",
        version="1",
        description="Synthetic and real robustness in one run, sharing the loaded models and the clean reference: "
        "Cityscapes-C (as the cityscapes-c suite), ACDC and Foggy Cityscapes, plus the cost probe at 1024x2048. "
        "Roots: --data cityscapes=PATH,acdc=PATH (or the environment variables).",
        data="real",
        conditions=paper_conditions() + real_conditions(("acdc", "foggy_cityscapes")),
        inference=CITYSCAPES_SLIDE,
        efficiency=EfficiencySpec(resolutions=((1024, 2048),), batch_sizes=(1,), warmup=3, iters=10),
        default_models=("segformer-b0",),
    )
)

# Every backend and precision a user would ship, each re-measured for accuracy. Whole-image inference: exported
# engines run the image they were built for (sliding windows are the accuracy suites' protocol).
DEPLOY_CONDITIONS = (Condition(),) + tuple(
    Condition(c, 3) for c in ("gaussian_noise", "motion_blur", "fog", "jpeg_compression")
)

register_suite(
    SuiteSpec(
        name="deploy",
        version="4",  # 4: the fast path's CPU bf16 is a bf16 copy of the model (was autocast); 3: OpenVINO joined
        description="The deployment grid: each model under eager, SegFormer's fast path, torch.compile, CUDA graphs, "
        "ONNX Runtime, OpenVINO and TensorRT at fp32, bf16, fp16 and int8 where the machine runs them; each checked "
        "against eager fp32 on the first images, then timed at 1024x2048 (latency at batch 1, throughput at batch 2, "
        "4, ... until it stops growing or memory runs out; end to end from the PNG on disk to labels, whole image and "
        "sliding window, per stage), at 512x1024 and 768x1536 for the latency curve, and re-measured (clean mIoU, "
        "and mPC over four corruptions at severity 3) on the first 50 Cityscapes val images; beside latency, each "
        "variant's GMAC/s (paper convention) as a share of the device's measured GEMM peak in its precision. "
        "--backends and --precisions narrow it.",
        data="real",
        conditions=DEPLOY_CONDITIONS,
        inference=InferenceSpec(mode="whole"),
        efficiency=EfficiencySpec(
            resolutions=((1024, 2048),),
            batch_sizes=(1, 2, 4, 8, 16, 32),
            saturation=0.05,
            curve=((512, 1024), (768, 1536)),
            conventions=("paper",),  # GMACs for each variant's share of the GEMM peak (meta device: seconds)
            warmup=3,
            iters=20,
            end_to_end=True,
        ),
        default_models=("segformer-b0",),
        max_images=50,
        gallery=False,
        deploy=DeploySpec(),
    )
)

# The deployment grid where every CPU can run it: the demo's scenes and weights at a small size. Eager fp32 and the
# variants each measure the same images, so the accuracy a backend or precision costs is a difference of numbers the
# run wrote (still synthetic scenes, not Cityscapes).
register_suite(
    SuiteSpec(
        name="deploy-demo",
        version="2",  # 2: the fast path's CPU bf16 is a bf16 copy of the model (was autocast)
        description="The deploy suite on the demo's synthetic scenes and SegFormer-B0 demo weights, at 256x512: each "
        "backend and precision this machine runs, checked against eager fp32, timed at batch 1 and 2, and "
        "re-measured (clean mIoU, mPC over four corruptions at severity 3) on 8 scenes, each variant's GMAC/s set "
        "against the device's GEMM peak; minutes on a CPU (not Cityscapes numbers). --backends and --precisions "
        "narrow it.",
        data="synthetic",
        synthetic=SyntheticData(num_images=8, size=(256, 512), seed=0),
        conditions=DEPLOY_CONDITIONS,
        inference=InferenceSpec(mode="whole"),
        efficiency=EfficiencySpec(
            resolutions=((256, 512),), batch_sizes=(1, 2), conventions=("paper",), warmup=2, iters=10
        ),
        default_models=("segformer-b0",),
        weights={"segformer-b0": str(DEMO_WEIGHTS / "segformer-b0.safetensors")},
        gallery=False,
        deploy=DeploySpec(calibration_images=4),
    )
)

register_suite(
    SuiteSpec(
        name="efficiency",
        version="1",
        description="Parameters, FLOPs (fvcore and paper conventions) and latency over Cityscapes resolutions and "
        "batch sizes; needs no data.",
        data="none",
        efficiency=EfficiencySpec(resolutions=CITYSCAPES_RESOLUTIONS, batch_sizes=(1, 2), warmup=3, iters=10),
        default_models=("segformer-b0",),
        gallery=False,
    )
)

register_suite(
    SuiteSpec(
        name="demo",
        version="2",
        description="Runs anywhere in minutes: synthetic scenes in the Cityscapes layout, all 16 corruptions at "
        "severities 1, 3 and 5, synthetic scenes in the ACDC, Dark Zurich and Foggy Cityscapes layouts, a small cost "
        "probe; SegFormer-B0 and DeepLabV3+ (MobileNetV2) with demo weights trained on synthetic scenes (not "
        "Cityscapes numbers; the adverse conditions are simple renderings, not the real datasets' appearance).",
        data="synthetic",
        synthetic=SyntheticData(num_images=8, size=(128, 256), seed=0, real_images=2, real_size=(108, 192)),
        conditions=(Condition(),) + tuple(Condition(c, s) for c in CORRUPTIONS for s in (1, 3, 5)) + real_conditions(),
        inference=InferenceSpec(mode="whole"),
        efficiency=EfficiencySpec(resolutions=((256, 512),), batch_sizes=(1,), warmup=2, iters=5),
        default_models=DEMO_MODELS,
        weights={m: str(DEMO_WEIGHTS / f"{m}.safetensors") for m in DEMO_MODELS},
    )
)

# Every attack at the L-inf grid from SEA's small budgets to SemSegBench's 8/255, 10 steps, seeded random start, and
# the per-image worst case at each budget (`bench.results.axes.DEFAULT_EPS`).
ADVERSARIAL_CONDITIONS = (Condition(),) + attack_grid()

register_suite(
    SuiteSpec(
        name="adversarial",
        version="1",
        description="Cityscapes val, clean and under PGD, SegPGD and CosPGD at L-inf 0.25/255 to 8/255 (10 steps, "
        "seeded random start) with the per-image worst case at each budget; the gradient flows through the same "
        "sliding window as evaluation, in fp32. --attacks, --norm, --eps, --attack-steps, --attack-step-size and "
        "--no-random-start change the grid. A GPU is advised: each attack step costs about three forward passes.",
        data="real",
        conditions=ADVERSARIAL_CONDITIONS,
        inference=CITYSCAPES_SLIDE,
        default_models=("segformer-b0",),
    )
)

register_suite(
    SuiteSpec(
        name="adversarial-demo",
        version="1",
        description="The adversarial suite on the demo's synthetic scenes and weights: runs on a CPU in minutes "
        "(not Cityscapes numbers).",
        data="synthetic",
        synthetic=SyntheticData(num_images=8, size=(128, 256), seed=0),
        conditions=ADVERSARIAL_CONDITIONS,
        inference=InferenceSpec(mode="whole"),
        default_models=DEMO_MODELS,
        weights={m: str(DEMO_WEIGHTS / f"{m}.safetensors") for m in DEMO_MODELS},
    )
)

register_suite(
    SuiteSpec(
        name="ci",
        version="1",
        description="Small, fast and deterministic, for regression tracking: tiny synthetic scenes, clean plus "
        "three corruptions, and a latency probe.",
        data="synthetic",
        synthetic=SyntheticData(num_images=4, size=(96, 192), seed=0),
        conditions=(Condition(), Condition("gaussian_noise", 2), Condition("motion_blur", 3), Condition("fog", 2)),
        inference=InferenceSpec(mode="whole"),
        # speed is tracked by calibrated latency (model vs a fixed workload, timed alternately;
        # bench/track/regression.py)
        efficiency=EfficiencySpec(
            resolutions=((128, 256),), conventions=("fvcore",), latency=False, calibrated=True, warmup=5, iters=30
        ),
        default_models=("segformer-b0",),
        weights={"segformer-b0": str(DEMO_WEIGHTS / "segformer-b0.safetensors")},
        gallery=False,
    )
)
