"""Models on datasets other than Cityscapes: any class count, the SegFormer ADE20K releases in all three formats,
one-line class-count mismatches, and `hf:` labels matched by name on a 150-class table.

Nothing is downloaded. The checkpoints are synthetic: a random-init model written in each release's exact key
layout, checked against the public code that wrote the releases:

- NVlabs `segformer.bX.512x512.ade.160k.pth`: NVlabs/SegFormer `mmseg/models/backbones/mix_transformer.py`
  (`patch_embed{1-4}`, `block{1-4}.j.{norm1,attn.{q,kv,sr,norm,proj},norm2,mlp.{fc1,dwconv.dwconv,fc2}}`,
  `norm{1-4}`) and `mmseg/models/decode_heads/segformer_head.py` (`linear_c{1-4}.proj`, `linear_fuse.{conv,bn}`,
  `linear_pred`, plus BaseDecodeHead's unused `conv_seg`), under `state_dict` beside an mmcv `meta`;
- mmseg 1.x `segformer_mit-bX_512x512_160k_ade20k_*.pth`: open-mmlab/mmsegmentation `mmseg/models/backbones/mit.py`
  (`layers.i.0.{projection,norm}`, `layers.i.1.j.{norm1,attn.attn.{in_proj_*,out_proj},attn.{sr,norm},norm2,
  ffn.layers.{0,1,4}}`, `layers.i.2`) and `mmseg/models/decode_heads/segformer_head.py` (`convs.i.{conv,bn}`,
  `fusion_conv.{conv,bn}`, `conv_seg`);
- Hugging Face `nvidia/segformer-bX-finetuned-ade-512-512`: written by transformers' own `save_pretrained` (the
  key names of huggingface/transformers `convert_segformer_original_to_pytorch.py`), with the id2label of that
  repository's config.json.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub read it; the loaders are local-only anyway

import pytest
import torch

from segbench import models
from segbench.bench.results.classes import CITYSCAPES
from segbench.models.checkpoint import CheckpointError, save_checkpoint
from segbench.models.segformer import DECODER_WIDTH, MIT_CONFIGS
from segbench.models.sources import BuildRequest, SourceError, label_key, parse_model_spec

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# The id2label of nvidia/segformer-b0-finetuned-ade-512-512's config.json (huggingface/label-files
# ade20k-id2label.json), spelling included: class 7 is "bed " with a trailing space.
ADE20K_HF_LABELS = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock",
    "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers",
    "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway",
    "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall",
    "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)  # fmt: skip
ADE = 150


def test_the_ade_label_table_is_the_hub_one():
    assert len(ADE20K_HF_LABELS) == ADE and ADE20K_HF_LABELS[7] == "bed "
    assert len({label_key(name) for name in ADE20K_HF_LABELS}) == ADE  # no two names match each other


# --------------------------------------------------------------------------------------------------------------------
# Any class count; the published parameter counts of the 150-class models
# --------------------------------------------------------------------------------------------------------------------

# mmseg's SegFormer (decoder 256 wide), 150 classes. B0 and B5: SemSegBench's ADE20K table (exact). B1-B4: its
# Cityscapes counts (semsegbench_cityscapes.csv: 13,683,155 / 24,728,019 / 44,603,859 / 61,374,419) plus the
# 131 more classifier rows of 257 weights each (33,667, as the reference README notes).
MMSEG_PARAMS_150 = {
    "b0": 3_753_718,
    "b1": 13_683_155 + 33_667,
    "b2": 24_728_019 + 33_667,
    "b3": 44_603_859 + 33_667,
    "b4": 61_374_419 + 33_667,
    "b5": 82_008_406,
}
# The original decoder (NVlabs / Hugging Face), 150 classes: the paper's Table 1 in millions, rounded.
PAPER_PARAMS_M_150 = {"b0": 3.8, "b1": 13.7, "b2": 27.5, "b3": 47.3, "b4": 64.1, "b5": 84.7}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _hf_config(variant: str, num_labels: int, labels=None) -> transformers.SegformerConfig:
    cfg = MIT_CONFIGS[variant]
    config = transformers.SegformerConfig(
        hidden_sizes=list(cfg.embed_dims),
        depths=list(cfg.depths),
        num_attention_heads=list(cfg.num_heads),
        decoder_hidden_size=DECODER_WIDTH[variant],
        num_labels=num_labels,
    )
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    return config


@pytest.mark.parametrize("variant", sorted(MMSEG_PARAMS_150))
def test_150_class_parameter_counts_are_the_published_ones(variant):
    with torch.device("meta"):  # shapes only: no weights allocated or initialised
        mmseg = models.create_model(f"segformer-{variant}-mmseg", num_classes=ADE)
        original = models.create_model(f"segformer-{variant}", num_classes=ADE)
        reference = transformers.SegformerForSemanticSegmentation(_hf_config(variant, ADE))
    assert _n_params(mmseg) == MMSEG_PARAMS_150[variant]
    assert _n_params(original) == _n_params(reference)
    assert round(_n_params(original) / 1e6, 1) == PAPER_PARAMS_M_150[variant]
    assert mmseg.decode_head.classifier.out_channels == original.decode_head.classifier.out_channels == ADE


def test_every_registered_head_and_backbone_builds_with_the_dataset_class_count():
    """Every registered family and backbone kind (the deeper twins, r101 and mit-b1..b5, share their code)."""
    twins = re.compile(r".*-(r101|mit-b[1-5]|xception(65|71))$|segformer-b[1-5].*")
    for name in (n for n in models.list_models() if not twins.fullmatch(n)):
        for classes in (21, 171):  # Pascal VOC, COCO-Stuff
            with torch.device("meta"):
                model = models.create_model(name, num_classes=classes)
            assert model.meta.num_classes == classes, name
            assert model.decode_head.classifier.out_channels == classes, name


# --------------------------------------------------------------------------------------------------------------------
# The SegFormer ADE20K releases, in their three formats
# --------------------------------------------------------------------------------------------------------------------


def _random(name: str, seed: int = 0) -> torch.nn.Module:
    """A registered SegFormer with 150 classes, random init, and BatchNorm statistics that are not the defaults."""
    torch.manual_seed(seed)
    model = models.create_model(name, num_classes=ADE)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(160_000)
    return model


def _nvlabs_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A native original-decoder state dict in the NVlabs release's key names (stages and linear_c are 1-based)."""
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "backbone":
            stage, rest = int(parts[2]) + 1, parts[3:]
            if rest[0] == "patch_embed":
                out[f"backbone.patch_embed{stage}.{'.'.join(rest[1:])}"] = value
            elif rest[0] == "norm":
                out[f"backbone.norm{stage}.{rest[1]}"] = value
            else:  # blocks.j.<module>...
                inner = (
                    ".".join(rest[2:])
                    .replace("attn.sr_norm.", "attn.norm.")
                    .replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
                )
                out[f"backbone.block{stage}.{rest[1]}.{inner}"] = value
        elif parts[1] == "proj":
            out[f"decode_head.linear_c{int(parts[2]) + 1}.proj.{parts[3]}"] = value
        elif parts[1] == "fuse":
            out[f"decode_head.linear_fuse.{'.'.join(parts[2:])}"] = value
        else:
            out[f"decode_head.linear_pred.{parts[2]}"] = value
    channels = 128  # the release configs' BaseDecodeHead `channels`: its `conv_seg` is built, never called
    out["decode_head.conv_seg.weight"] = torch.randn(ADE, channels, 1, 1)
    out["decode_head.conv_seg.bias"] = torch.randn(ADE)
    return out


def _mmseg_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A native mmseg-decoder state dict in mmseg's MixVisionTransformer / SegformerHead key names."""
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "backbone":
            i, rest = parts[2], parts[3:]
            if rest[0] == "patch_embed":
                out[f"backbone.layers.{i}.0.{'projection' if rest[1] == 'proj' else 'norm'}.{rest[2]}"] = value
            elif rest[0] == "norm":
                out[f"backbone.layers.{i}.2.{rest[1]}"] = value
            else:
                out.update(_mmseg_block(f"backbone.layers.{i}.1.{rest[1]}", ".".join(rest[2:]), value, sd, key))
        elif parts[1] == "convs":
            out[key] = value
        elif parts[1] == "fuse":
            out[key.replace("decode_head.fuse.", "decode_head.fusion_conv.")] = value
        else:
            out[key.replace("decode_head.classifier.", "decode_head.conv_seg.")] = value
    return out


def _mmseg_block(base: str, inner: str, value: torch.Tensor, sd: dict, key: str) -> dict[str, torch.Tensor]:
    """One tensor of a MiT block in mmseg's names: q and kv stacked into `in_proj`, Mix-FFN linears as 1x1 convs."""
    if inner.startswith("attn.q."):
        kv = sd[key.replace(".attn.q.", ".attn.kv.")]
        return {f"{base}.attn.attn.in_proj_{inner.split('.')[-1]}": torch.cat([value, kv])}  # [q; k; v]
    renames = {
        "attn.kv.": None,  # stacked with q above
        "attn.proj.": "attn.attn.out_proj.",
        "attn.sr_norm.": "attn.norm.",
        "attn.sr.": "attn.sr.",
        "mlp.fc1.": "ffn.layers.0.",
        "mlp.dwconv.": "ffn.layers.1.",
        "mlp.fc2.": "ffn.layers.4.",
        "norm1.": "norm1.",
        "norm2.": "norm2.",
    }
    for old, new in renames.items():
        if inner.startswith(old):
            if new is None:
                return {}
            if old in ("mlp.fc1.", "mlp.fc2.") and value.ndim == 2:
                value = value[:, :, None, None]  # linear (out, in) -> 1x1 conv (out, in, 1, 1)
            return {f"{base}.{new}{inner[len(old) :]}": value}
    raise AssertionError(f"no mmseg name for {key}")


def _mmcv_file(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """What mmcv's `save_checkpoint` writes: `meta` (plain Python values) beside the `state_dict`."""
    meta = {"mmcv_version": "1.3.0", "CLASSES": ADE20K_HF_LABELS, "PALETTE": [[120, 120, 120]] * ADE}
    torch.save({"meta": meta, "state_dict": state_dict}, path)
    return path


def _logits(model: torch.nn.Module, seed: int = 3) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        return model(x)


def test_nvlabs_ade_release_loads_strictly_with_150_classes(tmp_path):
    source = _random("segformer-b0")
    file = _mmcv_file(tmp_path / "segformer.b0.512x512.ade.160k.pth", _nvlabs_layout(source.state_dict()))
    model = models.create_model("segformer-b0", num_classes=ADE, weights=str(file))
    assert model.weights_info.format == "nvlabs" and not model.weights_info.random
    assert model.decode_head.classifier.out_channels == ADE
    assert torch.equal(_logits(model), _logits(source))


def test_mmseg_ade_release_loads_strictly_with_150_classes(tmp_path):
    source = _random("segformer-b0-mmseg")
    name = "segformer_mit-b0_512x512_160k_ade20k_20210726_101530-8ffa8fda.pth"
    file = _mmcv_file(tmp_path / name, _mmseg_layout(source.state_dict()))
    model = models.create_model("segformer-b0-mmseg", num_classes=ADE, weights=str(file))
    assert model.weights_info.format == "mmseg" and not model.weights_info.random
    assert model.decode_head.classifier.out_channels == ADE
    assert torch.equal(_logits(model), _logits(source))


def test_release_layouts_leave_nothing_out(tmp_path):
    """A release file missing one tensor, or carrying one more, is refused by name (strict loading)."""
    sd = _nvlabs_layout(_random("segformer-b0").state_dict())
    del sd["backbone.block4.1.mlp.dwconv.dwconv.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys backbone\.stages\.3\.blocks\.1\.mlp\.dwconv\.bias"):
        models.create_model("segformer-b0", num_classes=ADE, weights=str(_mmcv_file(tmp_path / "a.pth", sd)))
    sd = _mmseg_layout(_random("segformer-b0-mmseg").state_dict())
    sd["decode_head.fusion_conv.conv.bias"] = torch.zeros(256)
    with pytest.raises(CheckpointError, match=r"unexpected keys decode_head\.fuse\.conv\.bias"):
        models.create_model("segformer-b0-mmseg", num_classes=ADE, weights=str(_mmcv_file(tmp_path / "b.pth", sd)))


@pytest.fixture(scope="module")
def hf_ade(tmp_path_factory):
    """`nvidia/segformer-b0-finetuned-ade-512-512` in miniature: B0 at random init with 150 ADE labels, saved by
    `save_pretrained` (model.safetensors), and the same tensors as the older `pytorch_model.bin`."""
    torch.manual_seed(0)
    ref = transformers.SegformerForSemanticSegmentation(_hf_config("b0", ADE, ADE20K_HF_LABELS)).eval()
    with torch.no_grad():
        bn = ref.decode_head.batch_norm
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("hf-ade") / "segformer-b0-finetuned-ade-512-512"
    ref.save_pretrained(folder)
    from safetensors.torch import load_file

    bin_folder = folder.with_name("bin") / folder.name
    bin_folder.mkdir(parents=True)
    shutil.copy(folder / "config.json", bin_folder / "config.json")
    torch.save(load_file(folder / "model.safetensors"), bin_folder / "pytorch_model.bin")  # the hub's legacy names
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits = ref(pixel_values=x).logits
    return folder, bin_folder, x, logits


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Two implementations of one function (SDPA vs explicit attention): equal up to float rounding."""
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


@pytest.mark.parametrize("layout", ["safetensors", "bin", "hub-cache"])
def test_hf_ade_release_loads_strictly_with_150_classes(layout, hf_ade, tmp_path, monkeypatch):
    folder, bin_folder, x, logits = hf_ade
    weights = str(bin_folder if layout == "bin" else folder)
    if layout == "hub-cache":
        repo = tmp_path / "models--nvidia--segformer-b0-finetuned-ade-512-512"
        shutil.copytree(folder, repo / "snapshots" / ("c" * 40))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("c" * 40)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
        weights = "nvidia/segformer-b0-finetuned-ade-512-512"
    model = models.create_model("segformer-b0", num_classes=ADE, weights=weights, ln_eps=1e-5)
    assert model.weights_info.format == "hf" and not model.weights_info.random
    assert model.weights_info.path.endswith("pytorch_model.bin" if layout == "bin" else "model.safetensors")
    assert model.decode_head.classifier.out_channels == ADE
    with torch.no_grad():
        _close(model(x), logits)


# --------------------------------------------------------------------------------------------------------------------
# A checkpoint of another label space: one line naming both
# --------------------------------------------------------------------------------------------------------------------


def test_an_ade_checkpoint_on_a_cityscapes_run_is_one_line(tmp_path, hf_ade):
    file = _mmcv_file(
        tmp_path / "segformer.b0.512x512.ade.160k.pth", _nvlabs_layout(_random("segformer-b0").state_dict())
    )
    with pytest.raises(CheckpointError) as err:
        models.create_model("segformer-b0", num_classes=19, weights=str(file))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"{file}: a 150-class checkpoint (ADE20K), but the run's dataset has 19 classes (cityscapes); "
        "run it on --suite ade20k (in Python: num_classes=150"
    )
    assert "reinit_classifier=True" in message
    with pytest.raises(CheckpointError, match=r"150-class checkpoint \(ADE20K\), but the run's dataset has 19"):
        models.create_model("segformer-b0", weights=str(hf_ade[0]))  # the factory's default: 19 classes


@pytest.mark.parametrize(
    ("ckpt", "run", "expected"),
    [
        (19, ADE, "a 19-class checkpoint (Cityscapes), but the run's dataset has 150 classes (ade20k); run it on "
                  "--suite cityscapes"),
        (21, 171, "a 21-class checkpoint (Pascal VOC), but the run's dataset has 171 classes (coco-stuff); run it "
                  "on --suite voc"),
        (171, 21, "a 171-class checkpoint (COCO-Stuff), but the run's dataset has 21 classes (voc); run it on "
                  "--suite coco-stuff"),
        (7, 19, "a 7-class checkpoint, but the run's dataset has 19 classes (cityscapes); run it on a dataset of 7 "
                "classes"),
    ],
)  # fmt: skip
def test_class_count_mismatch_names_both_label_spaces(ckpt, run, expected, tmp_path):
    """Every family says it the same way: a baseline here (the check is the classifier's row count)."""
    file = save_checkpoint(models.create_model("fcn-mit-tiny", num_classes=ckpt), tmp_path / "fcn.safetensors")
    with pytest.raises(CheckpointError) as err:
        models.create_model("fcn-mit-tiny", num_classes=run, weights=str(file))
    assert str(err.value) == f"{file}: {expected} (in Python: num_classes={ckpt})"


# --------------------------------------------------------------------------------------------------------------------
# hf: on a 150-class table
# --------------------------------------------------------------------------------------------------------------------


def _tiny_hf(folder: Path, labels, perm: torch.Tensor | None = None) -> transformers.SegformerForSemanticSegmentation:
    """A tiny random-init transformers SegFormer (seed 0) with `labels`; with `perm`, the same network whose class k
    is the original class perm[k] (classifier rows and labels permuted together)."""
    config = transformers.SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 16, 16], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16
    )
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    if perm is not None:
        config.id2label = {k: labels[int(i)] for k, i in enumerate(perm)}
        config.label2id = {name: k for k, name in config.id2label.items()}
        with torch.no_grad():
            model.decode_head.classifier.weight.copy_(model.decode_head.classifier.weight[perm])
            model.decode_head.classifier.bias.copy_(model.decode_head.classifier.bias[perm])
    model.save_pretrained(folder)
    return model


def _hf(folder: Path, classes) -> torch.nn.Module:
    spec = parse_model_spec(f"hf:{folder}")
    return models.build_from_source(BuildRequest(spec=spec, num_classes=len(classes), class_names=tuple(classes)))


def test_hf_ade_model_matches_an_ade_class_table_by_name(tmp_path):
    ref = _tiny_hf(tmp_path, ADE20K_HF_LABELS)
    for table in (ADE20K_HF_LABELS, [name.strip().upper() for name in ADE20K_HF_LABELS]):
        model = _hf(tmp_path, table)
        assert model.source_info.detail["labels"]["order"] == "same as the dataset"
        assert model.meta.num_classes == ADE
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(model(x), ref(pixel_values=x).logits)


def test_hf_labels_that_read_the_same_are_refused_in_one_line(tmp_path):
    labels = list(ADE20K_HF_LABELS)
    labels[149] = "Bed"  # reads as "bed " (class 7) does
    _tiny_hf(tmp_path, labels)
    with pytest.raises(SourceError) as err:
        _hf(tmp_path, ADE20K_HF_LABELS)
    message = str(err.value)
    assert "\n" not in message and "'bed ' (class 7) and 'Bed' (class 149)" in message


def test_hf_permuted_labels_give_dataset_order_logits(tmp_path):
    perm = torch.randperm(ADE, generator=torch.Generator().manual_seed(1))
    _tiny_hf(tmp_path / "a", ADE20K_HF_LABELS)
    _tiny_hf(tmp_path / "b", ADE20K_HF_LABELS, perm=perm)
    plain, permuted = _hf(tmp_path / "a", ADE20K_HF_LABELS), _hf(tmp_path / "b", ADE20K_HF_LABELS)
    assert permuted.source_info.detail["labels"]["order"] == "permuted"
    assert torch.equal(permuted.index, torch.argsort(perm))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), plain(x), rtol=0, atol=1e-6)


def test_hf_ade_model_on_a_cityscapes_table_names_the_missing_classes(tmp_path):
    _tiny_hf(tmp_path, ADE20K_HF_LABELS)
    with pytest.raises(SourceError) as err:
        _hf(tmp_path, CITYSCAPES.names)
    message = str(err.value)
    assert "\n" not in message and "--label-map" in message
    for missing in ("rider", "train", "motorcycle", "vegetation", "terrain", "traffic sign"):
        assert missing in message


def test_hf_on_a_dataset_without_class_names_takes_its_classes_in_order(tmp_path):
    ref = _tiny_hf(tmp_path, ADE20K_HF_LABELS)
    spec = parse_model_spec(f"hf:{tmp_path}")
    model = models.build_from_source(BuildRequest(spec=spec, num_classes=ADE, class_names=()))
    assert model.meta.num_classes == ADE and "in order" in model.source_info.detail["labels"]["matched"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(pixel_values=x).logits)
    with pytest.raises(SourceError) as err:
        models.build_from_source(BuildRequest(spec=spec, num_classes=19, class_names=()))
    assert "\n" not in str(err.value) and "predicts 150 classes, the run's dataset has 19 without names" in str(
        err.value
    )
