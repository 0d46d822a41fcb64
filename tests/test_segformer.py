"""SegFormer against the reference implementation (transformers, random init), and every checkpoint format."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from segbench import models
from segbench.models.checkpoint import CheckpointError
from segbench.models.segformer import DECODER_WIDTH, MIT_CONFIGS, detect_format

transformers = pytest.importorskip("transformers")

VARIANTS = ["b0", "b1", "b2", "b3"]
"""Compared with transformers: every layout the key mapping meets (B0's widths; B1's with the narrow decoder, B2's with
the wide one; B3's two-digit block indices). B4 and B5 are B3 with more blocks per stage: their transformers models
took a third of this module's time and test no key the others do not (`test_every_segformer_runs_on_odd_sizes` still
builds all six)."""
SIZES = [(64, 64), (67, 130), (96, 33)]  # includes sides that are not multiples of 32


def _hf_model(variant: str, num_classes: int = 19, seed: int = 0):
    cfg = MIT_CONFIGS[variant]
    config = transformers.SegformerConfig(
        hidden_sizes=list(cfg.embed_dims),
        depths=list(cfg.depths),
        num_attention_heads=list(cfg.num_heads),
        decoder_hidden_size=DECODER_WIDTH[variant],
        num_labels=num_classes,
    )
    torch.manual_seed(seed)
    ref = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a mis-mapped BN buffer shows
        bn = ref.decode_head.batch_norm
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1, 0.2)
        bn.bias.normal_(0, 0.2)
    return ref


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    err = (ours - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), f"max abs diff {err} vs ref max {ref.abs().max().item()}"


@pytest.fixture(scope="module")
def hf_checkpoints(tmp_path_factory):
    """One saved Hugging Face model folder per variant, with reference logits on each test size."""
    out = {}
    for variant in VARIANTS:
        ref = _hf_model(variant)
        folder = tmp_path_factory.mktemp(f"hf-{variant}")
        ref.save_pretrained(folder)
        torch.manual_seed(1)
        inputs = [torch.randn(2, 3, h, w) for h, w in SIZES]
        with torch.no_grad():
            logits = [ref(pixel_values=x).logits for x in inputs]
        from safetensors.torch import load_file

        out[variant] = (folder, inputs, logits, load_file(folder / "model.safetensors"))  # the hub's key names
        del ref
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_transformers(variant, hf_checkpoints):
    folder, inputs, logits, _ = hf_checkpoints[variant]
    model = models.create_model(f"segformer-{variant}", num_classes=19, weights=str(folder), ln_eps=1e-5)
    assert model.weights_info.format == "hf" and not model.weights_info.random
    with torch.no_grad():
        for x, ref in zip(inputs, logits):
            out = model(x)
            assert out.shape[2:] == (-(-x.shape[2] // 4), -(-x.shape[3] // 4))
            _close(out, ref)


def _hf_to_nvlabs(sd: dict) -> dict:
    """Write the Hugging Face tensors in the NVlabs release layout (independently of the suite's converter)."""
    out = {}
    for k, v in sd.items():
        m = re.fullmatch(r"segformer\.encoder\.block\.(\d+)\.(\d+)\.(.+)", k)
        if m:
            i, j, rest = int(m[1]) + 1, m[2], m[3]
            rest = (
                rest.replace("layer_norm_1", "norm1")
                .replace("layer_norm_2", "norm2")
                .replace("attention.self.query", "attn.q")
                .replace("attention.self.sr", "attn.sr")
                .replace("attention.self.layer_norm", "attn.norm")
                .replace("attention.output.dense", "attn.proj")
                .replace("mlp.dense1", "mlp.fc1")
                .replace("mlp.dense2", "mlp.fc2")
            )
            if "attention.self.key" in rest:
                value = sd[k.replace(".key.", ".value.")]
                out[f"backbone.block{i}.{j}." + rest.replace("attention.self.key", "attn.kv")] = torch.cat([v, value])
            elif "attention.self.value" not in rest:
                out[f"backbone.block{i}.{j}.{rest}"] = v
            continue
        m = re.fullmatch(r"segformer\.encoder\.patch_embeddings\.(\d)\.(proj|layer_norm)\.(\w+)", k)
        if m:
            out[f"backbone.patch_embed{int(m[1]) + 1}.{'norm' if m[2] == 'layer_norm' else 'proj'}.{m[3]}"] = v
            continue
        m = re.fullmatch(r"segformer\.encoder\.layer_norm\.(\d)\.(\w+)", k)
        if m:
            out[f"backbone.norm{int(m[1]) + 1}.{m[2]}"] = v
            continue
        m = re.fullmatch(r"decode_head\.linear_c\.(\d)\.proj\.(\w+)", k)
        if m:
            out[f"decode_head.linear_c{int(m[1]) + 1}.proj.{m[2]}"] = v
            continue
        k = k.replace("decode_head.linear_fuse.weight", "decode_head.linear_fuse.conv.weight")
        k = k.replace("decode_head.batch_norm.", "decode_head.linear_fuse.bn.")
        k = k.replace("decode_head.classifier.", "decode_head.linear_pred.")
        out[k] = v
    # the release also carries BaseDecodeHead's unused conv_seg
    out["decode_head.conv_seg.weight"] = torch.zeros(sd["decode_head.classifier.weight"].shape)
    out["decode_head.conv_seg.bias"] = torch.zeros(sd["decode_head.classifier.bias"].shape)
    return out


@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_nvlabs_release_loads_to_same_logits(variant, hf_checkpoints, tmp_path):
    _, inputs, logits, hf_sd = hf_checkpoints[variant]
    file = tmp_path / f"segformer.{variant}.1024x1024.city.160k.pth"
    torch.save({"meta": {"CLASSES": list(range(19))}, "state_dict": _hf_to_nvlabs(hf_sd)}, file)
    model = models.create_model(f"segformer-{variant}", weights=str(file), ln_eps=1e-5)
    assert model.weights_info.format == "nvlabs"
    with torch.no_grad():
        _close(model(inputs[1]), logits[1])


def _mmseg_state_dict(variant: str, num_classes: int = 19, seed: int = 0) -> dict:
    """A random state dict in mmseg's MixVisionTransformer + SegformerHead layout."""
    g = torch.Generator().manual_seed(seed)
    cfg = MIT_CONFIGS[variant]
    width = 16 if variant == "tiny" else 256

    def t(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    sd = {}
    cin = 3
    for i, (dim, depth, sr) in enumerate(zip(cfg.embed_dims, cfg.depths, cfg.sr_ratios)):
        k = cfg.patch_sizes[i]
        sd[f"backbone.layers.{i}.0.projection.weight"] = t(dim, cin, k, k)
        sd[f"backbone.layers.{i}.0.projection.bias"] = t(dim)
        sd[f"backbone.layers.{i}.0.norm.weight"] = 1 + t(dim)
        sd[f"backbone.layers.{i}.0.norm.bias"] = t(dim)
        hid = dim * cfg.mlp_ratio
        for j in range(depth):
            p = f"backbone.layers.{i}.1.{j}."
            sd[p + "norm1.weight"], sd[p + "norm1.bias"] = 1 + t(dim), t(dim)
            sd[p + "attn.attn.in_proj_weight"], sd[p + "attn.attn.in_proj_bias"] = t(3 * dim, dim), t(3 * dim)
            sd[p + "attn.attn.out_proj.weight"], sd[p + "attn.attn.out_proj.bias"] = t(dim, dim), t(dim)
            if sr > 1:
                sd[p + "attn.sr.weight"], sd[p + "attn.sr.bias"] = t(dim, dim, sr, sr, scale=0.02), t(dim)
                sd[p + "attn.norm.weight"], sd[p + "attn.norm.bias"] = 1 + t(dim), t(dim)
            sd[p + "norm2.weight"], sd[p + "norm2.bias"] = 1 + t(dim), t(dim)
            sd[p + "ffn.layers.0.weight"], sd[p + "ffn.layers.0.bias"] = t(hid, dim, 1, 1), t(hid)
            sd[p + "ffn.layers.1.weight"], sd[p + "ffn.layers.1.bias"] = t(hid, 1, 3, 3), t(hid)
            sd[p + "ffn.layers.4.weight"], sd[p + "ffn.layers.4.bias"] = t(dim, hid, 1, 1), t(dim)
        sd[f"backbone.layers.{i}.2.weight"], sd[f"backbone.layers.{i}.2.bias"] = 1 + t(dim), t(dim)
        cin = dim

    def bn(prefix, c):
        sd[prefix + "weight"], sd[prefix + "bias"] = 1 + t(c), t(c)
        sd[prefix + "running_mean"], sd[prefix + "running_var"] = t(c), 0.5 + t(c).abs()
        sd[prefix + "num_batches_tracked"] = torch.tensor(1)

    for i, dim in enumerate(cfg.embed_dims):
        sd[f"decode_head.convs.{i}.conv.weight"] = t(width, dim, 1, 1)
        bn(f"decode_head.convs.{i}.bn.", width)
    sd["decode_head.fusion_conv.conv.weight"] = t(width, 4 * width, 1, 1)
    bn("decode_head.fusion_conv.bn.", width)
    sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"] = t(num_classes, width, 1, 1), t(num_classes)
    return sd


def _mmseg_forward(sd: dict, variant: str, x: torch.Tensor) -> torch.Tensor:
    """mmseg's SegFormer written out functionally, with nn.MultiheadAttention and Mix-FFN as 1x1 convs."""
    cfg = MIT_CONFIGS[variant]
    eps = 1e-6  # mmseg's MixVisionTransformer uses LN eps 1e-6 everywhere
    feats = []
    for i, (dim, depth, heads, sr) in enumerate(zip(cfg.embed_dims, cfg.depths, cfg.num_heads, cfg.sr_ratios)):
        L = f"backbone.layers.{i}."
        k = cfg.patch_sizes[i]
        x = F.conv2d(x, sd[L + "0.projection.weight"], sd[L + "0.projection.bias"], cfg.strides[i], k // 2)
        b, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = F.layer_norm(x, (dim,), sd[L + "0.norm.weight"], sd[L + "0.norm.bias"], eps)
        for j in range(depth):
            p = f"{L}1.{j}."
            y = F.layer_norm(x, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
            kv = y
            if sr > 1:
                kv = y.transpose(1, 2).reshape(b, dim, h, w)
                kv = F.conv2d(kv, sd[p + "attn.sr.weight"], sd[p + "attn.sr.bias"], sr).flatten(2).transpose(1, 2)
                kv = F.layer_norm(kv, (dim,), sd[p + "attn.norm.weight"], sd[p + "attn.norm.bias"], eps)
            mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
            mha.load_state_dict(
                {
                    "in_proj_weight": sd[p + "attn.attn.in_proj_weight"],
                    "in_proj_bias": sd[p + "attn.attn.in_proj_bias"],
                    "out_proj.weight": sd[p + "attn.attn.out_proj.weight"],
                    "out_proj.bias": sd[p + "attn.attn.out_proj.bias"],
                }
            )
            x = x + mha.eval()(y, kv, kv, need_weights=False)[0]
            y = F.layer_norm(x, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
            y = y.transpose(1, 2).reshape(b, dim, h, w)
            y = F.conv2d(y, sd[p + "ffn.layers.0.weight"], sd[p + "ffn.layers.0.bias"])
            y = F.conv2d(y, sd[p + "ffn.layers.1.weight"], sd[p + "ffn.layers.1.bias"], padding=1, groups=y.shape[1])
            y = F.conv2d(F.gelu(y), sd[p + "ffn.layers.4.weight"], sd[p + "ffn.layers.4.bias"])
            x = x + y.flatten(2).transpose(1, 2)
        x = F.layer_norm(x, (dim,), sd[L + "2.weight"], sd[L + "2.bias"], eps)
        x = x.transpose(1, 2).reshape(b, dim, h, w)
        feats.append(x)

    def cbr(x, prefix):
        x = F.conv2d(x, sd[prefix + "conv.weight"])
        x = F.batch_norm(
            x,
            sd[prefix + "bn.running_mean"],
            sd[prefix + "bn.running_var"],
            sd[prefix + "bn.weight"],
            sd[prefix + "bn.bias"],
            False,
            0.0,
            1e-5,
        )
        return F.relu(x)

    size = feats[0].shape[2:]
    outs = [
        F.interpolate(cbr(f, f"decode_head.convs.{i}."), size=size, mode="bilinear", align_corners=False)
        for i, f in enumerate(feats)
    ]
    fused = cbr(torch.cat(outs, dim=1), "decode_head.fusion_conv.")
    return F.conv2d(fused, sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"])


@pytest.mark.parametrize("variant", ["tiny", "b0"])
def test_mmseg_checkpoint_reproduces_independent_forward(variant, tmp_path):
    sd = _mmseg_state_dict(variant)
    file = tmp_path / "segformer_mit-b0_8x1_1024x1024_160k_cityscapes.pth"
    torch.save({"meta": {"env_info": "x"}, "state_dict": sd}, file)
    model = models.create_model(f"segformer-{variant}-mmseg", weights=str(file))
    assert model.weights_info.format == "mmseg"
    torch.manual_seed(2)
    x = torch.randn(2, 3, 67, 98)
    with torch.no_grad():
        _close(model(x), _mmseg_forward(sd, variant, x))


def test_flavour_mismatch_names_the_right_variant(tmp_path, hf_checkpoints):
    file = tmp_path / "mmseg.pth"
    torch.save({"state_dict": _mmseg_state_dict("b0")}, file)
    with pytest.raises(CheckpointError, match="use segformer-b0-mmseg"):
        models.create_model("segformer-b0", weights=str(file))
    folder = hf_checkpoints["b0"][0]
    with pytest.raises(CheckpointError, match="use segformer-b0$"):
        models.create_model("segformer-b0-mmseg", weights=str(folder))


def test_wrong_size_and_class_count(hf_checkpoints):
    folder = hf_checkpoints["b0"][0]
    with pytest.raises(CheckpointError, match="hidden_sizes"):
        models.create_model("segformer-b2", weights=str(folder))
    with pytest.raises(CheckpointError, match=r"a 19-class checkpoint \(Cityscapes\), but the run's dataset has 150"):
        models.create_model("segformer-b0", num_classes=150, weights=str(folder))
    with pytest.warns(UserWarning, match="classifier re-initialised"):
        model = models.create_model("segformer-b0", num_classes=150, weights=str(folder), reinit_classifier=True)
    assert model.weights_info.random
    # the encoder was loaded even so
    ref = hf_checkpoints["b0"][3]["segformer.encoder.patch_embeddings.0.proj.weight"]
    assert torch.equal(model.backbone.stages[0].patch_embed.proj.weight, ref)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, hf_checkpoints):
    sd = _hf_to_nvlabs(hf_checkpoints["b0"][3])
    broken = dict(sd)
    del broken["backbone.block2.1.mlp.fc2.bias"]
    torch.save(broken, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"missing keys backbone\.stages\.1\.blocks\.1\.mlp\.fc2\.bias"):
        models.create_model("segformer-b0", weights=str(tmp_path / "a.pth"))
    broken = dict(sd, **{"backbone.block1.0.attn.extra.weight": torch.zeros(1)})
    torch.save(broken, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="not understood by the converter: backbone.block1.0.attn.extra.weight"):
        models.create_model("segformer-b0", weights=str(tmp_path / "b.pth"))
    native = dict(models.create_model("segformer-b0").state_dict())
    native["decode_head.extra.weight"] = torch.zeros(1)
    torch.save(native, tmp_path / "native.pth")
    with pytest.raises(CheckpointError, match="unexpected keys decode_head.extra.weight"):
        models.create_model("segformer-b0", weights=str(tmp_path / "native.pth"))
    broken = dict(sd, **{"backbone.block1.0.attn.q.weight": torch.zeros(32, 31)})
    torch.save(broken, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"attn\.q\.weight has shape \(32, 31\)"):
        models.create_model("segformer-b0", weights=str(tmp_path / "c.pth"))
    broken = dict(sd, **{"something.else": torch.zeros(1)})
    torch.save(broken, tmp_path / "d.pth")
    with pytest.raises(CheckpointError, match="not understood by the converter: something.else"):
        models.create_model("segformer-b0", weights=str(tmp_path / "d.pth"))


def test_unreadable_and_pickled_code_are_refused(tmp_path):
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="trunc.pth: cannot read it"):
        models.create_model("segformer-tiny", weights=str(tmp_path / "trunc.pth"))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth: cannot read it"):
        models.create_model("segformer-tiny", weights=str(tmp_path / "evil.pth"))
    with pytest.raises(CheckpointError, match="no such file"):
        models.create_model("segformer-tiny", weights=str(tmp_path / "nope.pth"))


def test_encoder_only_imagenet_checkpoint(tmp_path, hf_checkpoints):
    sd = _hf_to_nvlabs(hf_checkpoints["b0"][3])
    encoder = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    encoder["head.weight"], encoder["head.bias"] = torch.zeros(1000, 256), torch.zeros(1000)  # ImageNet classifier
    torch.save(encoder, tmp_path / "mit_b0.pth")
    assert detect_format(encoder) == "nvlabs-encoder"
    with pytest.warns(UserWarning, match="decoder is randomly initialised"):
        model = models.create_model("segformer-b0", weights=str(tmp_path / "mit_b0.pth"))
    assert model.weights_info.random and model.weights_info.format == "nvlabs-encoder"
    assert torch.equal(model.backbone.stages[3].norm.weight, sd["backbone.norm4.weight"])


def test_transformers5_in_memory_state_dict_loads(tmp_path):
    ref = _hf_model("b0")
    torch.save(ref.state_dict(), tmp_path / "hf5.pth")
    model = models.create_model("segformer-b0", weights=str(tmp_path / "hf5.pth"), ln_eps=1e-5)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        _close(model(x), ref(pixel_values=x).logits)


def test_hub_id_from_local_cache_only(tmp_path, monkeypatch, hf_checkpoints):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="never downloads"):
        models.create_model("segformer-b0", weights="nvidia/segformer-b0-finetuned-cityscapes-1024-1024")
    snap = tmp_path / "models--nvidia--segformer-b0-finetuned-cityscapes-1024-1024" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    folder = hf_checkpoints["b0"][0]
    for f in folder.iterdir():
        (snap / f.name).symlink_to(f)
    model = models.create_model("segformer-b0", weights="nvidia/segformer-b0-finetuned-cityscapes-1024-1024")
    assert model.weights_info.format == "hf" and len(model.weights_info.sha256) == 64


def test_saved_native_checkpoint_round_trips(tmp_path):
    from segbench.models.checkpoint import save_checkpoint

    model = models.create_model("segformer-tiny")
    save_checkpoint(model, tmp_path / "tiny.safetensors")
    again = models.create_model("segformer-tiny", weights=str(tmp_path / "tiny.safetensors"))
    x = torch.randn(1, 3, 40, 72)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(CheckpointError, match="other decoder flavour; use segformer-tiny-mmseg"):
        models.create_model(
            "segformer-tiny",
            weights=str(save_checkpoint(models.create_model("segformer-tiny-mmseg"), tmp_path / "m.safetensors")),
        )


# Paper, Table 1: parameters in millions with the 150-class ADE20K head.
PAPER_PARAMS_M = {"b0": 3.8, "b1": 13.7, "b2": 27.5, "b3": 47.3, "b4": 64.1, "b5": 84.7}


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts_match_paper(variant):
    model = models.create_model(f"segformer-{variant}", num_classes=150)
    total = sum(p.numel() for p in model.parameters())
    assert f"{total / 1e6:.1f}" == f"{PAPER_PARAMS_M[variant]:.1f}"


@pytest.mark.parametrize("name", models.list_models("segformer-*"))
def test_every_segformer_runs_on_odd_sizes(name):
    model = models.create_model(name, num_classes=7)
    assert model.meta.name == name and model.meta.output_stride == 4 and not model.training
    if name.removeprefix("segformer-").split("-")[0] in ("b3", "b4", "b5"):
        sizes = [(33, 47)]  # deep variants: one small input keeps the suite fast
    else:
        sizes = [(32, 32), (33, 47)]
    with torch.no_grad():
        for h, w in sizes:
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 7, -(-h // 4), -(-w // 4))
            assert torch.isfinite(out).all()


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 32 px"):
        models.create_model("segformer-tiny")(torch.randn(1, 3, 31, 64))


def test_registry_errors():
    with pytest.raises(ValueError, match="closest: segformer-b5"):
        models.create_model("segformer-b55")
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("segformer-b0")(lambda **kw: None)


@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_fast_path_matches_transformers(variant, hf_checkpoints):
    folder, inputs, logits, _ = hf_checkpoints[variant]
    fast = models.create_model(f"segformer-{variant}", weights=str(folder), ln_eps=1e-5, fast=True)
    assert type(fast.decode_head).__name__ == "FoldedMLPDecoder"
    with torch.no_grad():
        for x, ref in zip(inputs, logits):
            _close(fast(x), ref)


def test_fast_path_mmseg_matches_independent_forward(tmp_path):
    sd = _mmseg_state_dict("b0")
    torch.save(sd, tmp_path / "m.pth")
    fast = models.create_model("segformer-b0-mmseg", weights=str(tmp_path / "m.pth"), fast=True)
    x = torch.randn(1, 3, 70, 100)
    with torch.no_grad():
        _close(fast(x), _mmseg_forward(sd, "b0", x))


@pytest.mark.parametrize("name", ["segformer-tiny", "segformer-tiny-mmseg"])
def test_folding_keeps_the_decoder_on_its_device_and_dtype(name):
    """`fold_decoder()` on a model already moved (to CUDA, to float64) makes its new convs there too: the folded
    weights of a float64 model are float64 (and the fold is then exact to float64 rounding), and a model on the
    'meta' device (a stand-in for a GPU here) folds without touching another device."""
    torch.manual_seed(0)
    model = models.create_model(name).to(torch.float64).eval()
    with torch.no_grad():
        for bn in (m for m in model.decode_head.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        model.fold_decoder()
        assert {p.dtype for p in model.parameters()} == {torch.float64}
        err = (model(x) - ref).abs().max().item()
    assert err <= 1e-12 * ref.abs().max().item()

    meta = models.create_model(name).to("meta").fold_decoder()
    assert type(meta.decode_head).__name__ == "FoldedMLPDecoder"
    assert {t.device.type for t in [*meta.parameters(), *meta.buffers()]} == {"meta"}


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_fast_segformer_benchmark_waits_for_any_cuda_device(device, monkeypatch):
    """benchmarks/bench_fast_segformer.py brackets each call with a CUDA sync for every CUDA device spelling, not
    only "cuda" (with "cuda:0" the host clock would time the kernel launches, not the work)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_fast_segformer.py"
    spec = importlib.util.spec_from_file_location("bench_fast_segformer_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    waits = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waits.append(device))
    out = script._time_interleaved([lambda t: t + 1, lambda t: t * 2], torch.ones(2), warmup=1, iters=2, device=device)
    assert len(out) == 2 and len(waits) == 2 * 2 * 3  # before and after each call of each function
    assert set(waits) == {device}
