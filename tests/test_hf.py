"""`hf:` models (models/hf.py) against transformers itself: tiny random-init models saved with `save_pretrained`.

For every supported architecture, segbench's labels (`bench.measure.inference.predict`, whole-image mode) must equal
those of a direct transformers forward on the image processor's own pixel values, followed by the processor's
`post_process_semantic_segmentation` at the same size (upsampling and argmax; for universal models the mask-class
combination too). Nothing is downloaded: every model, processor and tokenizer is built here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub read it; the loader is local-only anyway

import pytest
import torch

from segbench.bench.measure.efficiency import count_params
from segbench.bench.measure.inference import normalize, predict
from segbench.bench.results.classes import CITYSCAPES
from segbench.bench.run.config import InferenceSpec
from segbench.models import build_from_source
from segbench.models.checkpoint import sha256_file
from segbench.models.sources import BuildRequest, SourceError, parse_model_spec

transformers = pytest.importorskip("transformers")

from segbench.models.hf import INSTALL_HINT, SUPPORTED  # noqa: E402 - after the importorskip
from segbench.models.hf_tiny import calibrate_classifiers, liven, make_processor  # noqa: E402
from segbench.models.hf_tiny import model_type as tiny_model_type  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

CLASSES = tuple(CITYSCAPES.names)
MEAN, STD = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)  # not ImageNet's: a processor config that is ignored shows
SIZE = (64, 128)
SQUARE = {"dpt", "data2vec-vision"}  # DPT takes square inputs, Data2Vec-Vision exactly config.image_size (64)


# --------------------------------------------------------------------------------------------------------------------
# Tiny configurations (widths 8-32, one layer per stage)
# --------------------------------------------------------------------------------------------------------------------


def _swin() -> transformers.SwinConfig:
    return transformers.SwinConfig(
        image_size=64,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )


def _vit_like(cls: type, **kwargs) -> transformers.PretrainedConfig:
    return cls(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=1,
        intermediate_size=32,
        image_size=64,
        patch_size=8,
        **kwargs,
    )


CONFIGS: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "segformer": lambda: transformers.SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 16, 32], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16
    ),
    "upernet-convnext": lambda: transformers.UperNetConfig(
        backbone_config=transformers.ConvNextConfig(
            hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
        ),
        hidden_size=16, auxiliary_channels=8, pool_scales=[1, 2],
    ),
    "upernet-swin": lambda: transformers.UperNetConfig(
        backbone_config=_swin(), hidden_size=16, auxiliary_channels=8, pool_scales=[1, 2]
    ),
    "dpt": lambda: _vit_like(
        transformers.DPTConfig, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
    ),
    "beit": lambda: _vit_like(
        transformers.BeitConfig, out_indices=[1, 2, 3, 4], pool_scales=[1, 2], auxiliary_channels=8,
        use_relative_position_bias=True,
    ),
    "data2vec-vision": lambda: _vit_like(
        transformers.Data2VecVisionConfig, out_indices=[1, 2, 3, 4], pool_scales=[1, 2], auxiliary_channels=8
    ),
    "mobilenet_v2": lambda: transformers.MobileNetV2Config(depth_multiplier=0.25, image_size=64, output_stride=8),
    "mobilevit": lambda: transformers.MobileViTConfig(
        image_size=64, hidden_sizes=[16, 16, 16], neck_hidden_sizes=[8, 8, 8, 8, 8, 16, 16], num_attention_heads=1,
        aspp_out_channels=16, output_stride=8,
    ),
    "mobilevitv2": lambda: transformers.MobileViTV2Config(
        image_size=64, width_multiplier=0.25, aspp_out_channels=16, output_stride=8
    ),
    "mask2former": lambda: transformers.Mask2FormerConfig(
        backbone_config=_swin(), feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32,
        encoder_layers=1, decoder_layers=2, num_attention_heads=1, dim_feedforward=16, num_queries=20,
    ),
    "maskformer": lambda: transformers.MaskFormerConfig(
        backbone_config=_swin(),
        decoder_config=transformers.DetrConfig(
            d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=16, decoder_ffn_dim=16,
            encoder_attention_heads=1, decoder_attention_heads=1, num_queries=20,
        ),
        fpn_feature_size=32, mask_feature_size=32, num_queries=20,
    ),
    "oneformer": lambda: transformers.OneFormerConfig(
        backbone_config=_swin(), num_queries=20, text_encoder_width=32, text_encoder_num_layers=1,
        text_encoder_vocab_size=64, text_encoder_n_ctx=0, text_encoder_proj_layers=1, conv_dim=32, mask_dim=32,
        hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, num_attention_heads=1,
        dim_feedforward=16, query_dec_layers=1, task_seq_len=8, text_encoder_context_length=8,
    ),
}  # fmt: skip


def _processor(mtype: str):
    return make_processor(transformers, mtype, MEAN, STD, CONFIGS["oneformer"]().task_seq_len)


def save_tiny(folder: Path, name: str, labels=CLASSES, seed: int = 0, processor: bool = True) -> torch.nn.Module:
    """Save a tiny random-init model `name` (a `CONFIGS` key) with its processor into `folder`; return the model."""
    config = CONFIGS[name]()
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    model_type = tiny_model_type(name)
    torch.manual_seed(seed)
    model = liven(getattr(transformers, SUPPORTED[model_type].model_class)(config).eval())
    inputs = model_inputs(name, images_for(name, seed=seed + 100))
    calibrate_classifiers(model, lambda: model(**inputs), model.config.num_labels)
    model.save_pretrained(folder)
    if processor:
        _processor(model_type).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, torch.nn.Module]]:
    """`saved(name)`: the folder of tiny model `name` and the transformers model in it (made once per module)."""
    cache: dict[str, tuple[Path, torch.nn.Module]] = {}

    def get(name: str) -> tuple[Path, torch.nn.Module]:
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            cache[name] = folder, save_tiny(folder, name)
        return cache[name]

    return get


def build(target: str | Path, classes=CLASSES, **kwargs) -> torch.nn.Module:
    spec = parse_model_spec(f"hf:{target}")
    return build_from_source(BuildRequest(spec=spec, num_classes=len(classes), class_names=classes, **kwargs))


def images_for(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """uint8 RGB images with structure at 8 px and above (random colours upsampled), plus a little pixel noise."""
    size = (64, 64) if name in SQUARE else SIZE
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size[0] // 8, size[1] // 8, generator=g) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return (smooth + torch.randn(smooth.shape, generator=g) * 8).round().clamp(0, 255).to(torch.uint8)


def model_inputs(name: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What transformers' own processor makes of `images` for model `name` (no resizing or cropping)."""
    model_type = tiny_model_type(name)
    kwargs = {"do_resize": False}
    if model_type in ("mobilenet_v2", "mobilevit", "mobilevitv2"):
        kwargs["do_center_crop"] = False
    if model_type == "oneformer":
        kwargs["task_inputs"] = ["semantic"] * len(images)
    inputs = _processor(model_type)(images=list(images.permute(0, 2, 3, 1).numpy()), return_tensors="pt", **kwargs)
    return {k: inputs[k] for k in ("pixel_values", "task_inputs") if k in inputs}


def reference(name: str, model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, object]:
    """transformers alone: (pixel values, labels at the image size, raw outputs) from its processor and model."""
    inputs = model_inputs(name, images)
    with torch.no_grad():
        outputs = model(**inputs)
    sizes = [tuple(images.shape[-2:])] * len(images)
    labels = _processor(tiny_model_type(name)).post_process_semantic_segmentation(outputs, target_sizes=sizes)
    return inputs["pixel_values"], torch.stack(labels), outputs


# --------------------------------------------------------------------------------------------------------------------
# Every architecture: the same labels as transformers
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_labels_as_transformers(name: str, saved) -> None:
    folder, hf_model = saved(name)
    model = build(folder)
    images = images_for(name)
    pixel_values, ref_labels, _ = reference(name, hf_model, images)

    # normalisation: the processor's pixel values are segbench's normalised input (BGR where the processor flips)
    x = normalize(images, model.meta.mean, model.meta.std)
    assert torch.allclose(x.flip(1) if model.flip_channels else x, pixel_values, atol=1e-5)

    labels = predict(model, images, InferenceSpec(mode="whole"))
    assert labels.shape == ref_labels.shape
    assert ref_labels.unique().numel() > 1  # a model predicting one class everywhere would prove little
    assert torch.equal(labels, ref_labels)

    info = model.source_info
    assert (info.kind, info.detail["model_type"]) == ("hf", tiny_model_type(name))
    assert info.detail["architecture"] == type(hf_model).__name__ == model.meta.head
    assert info.flop_conventions == ("fvcore", "torch")
    assert model.weights_info.random is False
    assert model.weights_info.sha256 == sha256_file(folder / "model.safetensors")


def test_count_params_equals_the_transformers_model(saved) -> None:
    """Params are the evaluated model's: the transformers model's, less its auxiliary head (a training loss that
    would otherwise run on every forward and count in params and latency)."""
    for name in ("segformer", "upernet-swin", "mask2former"):
        folder, hf_model = saved(name)
        model = build(folder)
        params = count_params(model)
        auxiliary = getattr(hf_model, "auxiliary_head", None)
        dropped = sum(p.numel() for p in auxiliary.parameters()) if auxiliary is not None else 0
        assert params.total == sum(p.numel() for p in hf_model.parameters()) - dropped
        assert (dropped > 0) == (name == "upernet-swin")  # UperNet's configs default to use_auxiliary_head=True
        if dropped:
            assert model.source_info.detail["auxiliary_head"] == f"dropped for evaluation ({dropped} parameters)"
        assert 0 < params.backbone < params.total
        assert params.backbone == sum(p.numel() for p in model.backbone.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["segformer", "upernet-swin", "beit", "mobilevit", "mask2former", "oneformer"])
def test_flops_fvcore_and_torch_counter(name: str, saved) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from segbench.bench.measure.flops import count_flops

    folder, _ = saved(name)
    model = build(folder)
    size = (64, 64) if name in SQUARE else SIZE
    assert count_flops(model, size, convention="fvcore").gmacs > 0
    # grad mode on: under no_grad, torch's module tracker fails on a parameter passed as a module input (OneFormer
    # hands its query embedding to its query transformer): "Expected gradient function to be set"
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, 3, *size))
    assert counter.get_total_flops() > 0


# --------------------------------------------------------------------------------------------------------------------
# Labels: by name, permuted, refused, renamed
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["segformer", "mask2former"])
def test_permuted_id2label_still_scores_dataset_ids(name: str, tmp_path: Path) -> None:
    perm = torch.randperm(len(CLASSES), generator=torch.Generator().manual_seed(1))
    hf_model = save_tiny(tmp_path, name, labels=[CLASSES[i] for i in perm])  # model class k is dataset class perm[k]
    model = build(tmp_path)
    assert model.source_info.detail["labels"]["order"] == "permuted"
    images = images_for(name)
    _, ref_labels, _ = reference(name, hf_model, images)
    assert torch.equal(predict(model, images, InferenceSpec(mode="whole")), perm[ref_labels])


ADE_LIKE = ("wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
            "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair")  # fmt: skip


def test_labels_that_do_not_cover_the_dataset_are_refused(tmp_path: Path) -> None:
    save_tiny(tmp_path, "segformer", labels=ADE_LIKE)
    with pytest.raises(SourceError) as err:
        build(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "--label-map" in message
    for missing in ("vegetation", "terrain", "traffic light", "bicycle"):
        assert missing in message


def test_label_map_renames_and_unused_classes_are_left_out(tmp_path: Path) -> None:
    renamed = {"vegetation": "tree", "terrain": "grass", "motorcycle": "motorbike", "traffic sign": "signboard"}
    labels = [renamed.get(c, c) for c in CLASSES] + ["floor", "ceiling"]  # two classes the dataset does not have
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(2))
    labels = [labels[i] for i in order]
    hf_model = save_tiny(tmp_path, "segformer", labels=labels)
    with pytest.raises(SourceError, match="vegetation"):
        build(tmp_path)
    model = build(tmp_path, label_map=renamed)
    detail = model.source_info.detail["labels"]
    assert sorted(detail["unused_model_classes"]) == ["ceiling", "floor"] and detail["renamed"] == renamed

    images = images_for("segformer")
    _, _, outputs = reference("segformer", hf_model, images)
    index = torch.tensor([labels.index(renamed.get(c, c)) for c in CLASSES])
    scores = torch.nn.functional.interpolate(
        outputs.logits[:, index], size=SIZE, mode="bilinear", align_corners=False
    )  # the model's scores for the dataset's classes only, in the dataset's order
    assert torch.equal(predict(model, images, InferenceSpec(mode="whole")), scores.argmax(1))


# --------------------------------------------------------------------------------------------------------------------
# Sources, weights, processors
# --------------------------------------------------------------------------------------------------------------------


def _fake_hub_cache(root: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """The local cache layout `huggingface_hub` reads: refs/main -> commit, snapshots/<commit>/<files>."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return root


def test_hub_id_from_the_local_cache(saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = saved("segformer")
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub_cache(tmp_path / "hub", "acme/tiny-seg", folder)))
    model = build("acme/tiny-seg")
    detail = model.source_info.detail
    assert (detail["repo_id"], detail["revision"], detail["commit"]) == ("acme/tiny-seg", "main", "a" * 40)
    assert build(f"acme/tiny-seg@{'a' * 40}").source_info.detail["commit"] == "a" * 40
    images = images_for("segformer")
    local = build(folder)
    assert torch.equal(predict(model, images, InferenceSpec()), predict(local, images, InferenceSpec()))

    with pytest.raises(SourceError) as err:
        build("acme/not-cached")
    message = str(err.value)
    assert "\n" not in message and "never downloads" in message and str(tmp_path / "hub") in message


def test_bad_targets_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no config.json"):
        build(empty)
    detr = tmp_path / "detr"
    transformers.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False).save_pretrained(detr)
    with pytest.raises(SourceError) as err:
        build(detr)
    message = str(err.value)
    assert "'detr'" in message and "\n" not in message
    for model_type in SUPPORTED:
        assert model_type in message
    with pytest.raises(SourceError, match="no such folder, and not a hub id"):
        build(tmp_path / "nowhere" / "deeper" / "still")
    with pytest.raises(SourceError, match="no --model-args"):
        build(empty, model_args={"depth": 3})


def test_missing_transformers_says_how_to_install(saved, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = saved("segformer")
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(SourceError) as err:
        build(folder)
    assert str(err.value) == INSTALL_HINT
    assert "pip install 'segbench[hf]'" in INSTALL_HINT


def test_weights_load_strictly(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_tiny(tmp_path, "segformer")
    weights = load_file(tmp_path / "model.safetensors")
    broken = {k: v for k, v in weights.items() if k != "decode_head.classifier.weight"}
    broken["decode_head.extra.weight"] = torch.zeros(3)
    broken["decode_head.classifier.bias"] = torch.zeros(7)
    save_file(broken, tmp_path / "model.safetensors")
    with pytest.raises(SourceError) as err:
        build(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "strictly" in message
    for key in ("decode_head.classifier.weight", "decode_head.extra.weight", "decode_head.classifier.bias"):
        assert key in message


def test_weights_override_the_folder(saved, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder, _ = saved("segformer")
    other = save_tiny(tmp_path / "other", "segformer", seed=5, processor=False)
    file = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, file)
    model = build(folder, weights=str(file))
    assert model.weights_info.sha256 == sha256_file(file) and model.weights_info.path == str(file)
    images = images_for("segformer")
    _, ref_labels, _ = reference("segformer", other, images)
    assert torch.equal(predict(model, images, InferenceSpec()), ref_labels)
    truncated = tmp_path / "truncated.safetensors"
    save_file({k: v.contiguous() for k, v in list(other.state_dict().items())[1:]}, truncated)
    with pytest.raises(SourceError, match="missing keys"):
        build(folder, weights=str(truncated))


def test_no_processor_config_means_imagenet_and_says_so(tmp_path: Path) -> None:
    save_tiny(tmp_path, "segformer", processor=False)
    model = build(tmp_path)
    assert (model.meta.mean, model.meta.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert model.source_info.detail["normalisation"] == "ImageNet default: no preprocessor_config.json"


def test_processor_config_keys_and_defaults(tmp_path: Path) -> None:
    save_tiny(tmp_path, "segformer", processor=False)
    # rescale to [0, 1] skipped, mean/std in 0..255 units; an absent key takes the processor class's default
    config = {"image_processor_type": "SegformerImageProcessor", "do_rescale": False, "image_mean": [76.5, 102, 127.5]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    model = build(tmp_path)
    assert model.meta.mean == pytest.approx(MEAN)
    assert model.meta.std == pytest.approx(tuple(s / 255 for s in (0.229, 0.224, 0.225)))  # SegformerImageProcessor's


def test_oneformer_without_tokenizer_is_refused(saved, tmp_path: Path) -> None:
    folder, _ = saved("oneformer")
    shutil.copytree(folder, tmp_path / "oneformer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "oneformer" / name).unlink()
    with pytest.raises(SourceError, match="tokenizer"):
        build(tmp_path / "oneformer")


def test_fixed_and_square_input_models(saved) -> None:
    for name, crop in (("dpt", (64, 64)), ("data2vec-vision", (64, 64)), ("beit", (64, 64))):
        model = build(saved(name)[0])
        assert model.meta.eval_crop == crop and model.meta.eval_stride == (42, 42)
    dpt = build(saved("dpt")[0])
    wide = torch.randint(0, 256, (1, 3, 64, 128), dtype=torch.uint8)
    with pytest.raises(ValueError, match="square inputs only"):
        predict(dpt, wide, InferenceSpec(mode="whole"))
    assert predict(dpt, wide, InferenceSpec(mode="slide")).shape == (1, 64, 128)  # meta.eval_crop windows
    data2vec = build(saved("data2vec-vision")[0])
    with pytest.raises(ValueError, match="64x64 inputs only"):
        predict(data2vec, torch.zeros(1, 3, 96, 96, dtype=torch.uint8), InferenceSpec(mode="whole"))
