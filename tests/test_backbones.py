"""The backbone interface: declared channels and strides match the maps; timm and MiT sources; weights offline."""

import math

import pytest
import timm
import torch

from segbench.models.backbones import TimmBackbone, create_backbone
from segbench.models.checkpoint import CheckpointError


def run(backbone, size=(65, 97)):
    backbone.eval()
    with torch.no_grad():
        return backbone(torch.randn(1, 3, *size))


def assert_declared(backbone, feats, size=(65, 97)):
    assert [f.shape[1] for f in feats] == backbone.out_channels
    assert [tuple(f.shape[2:]) for f in feats] == [
        (math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in backbone.strides
    ]


@pytest.mark.parametrize(
    ("name", "output_stride", "strides"),
    [
        ("test_resnet", 32, [4, 8, 16, 32]),  # timm's tiny test networks: every code path, milliseconds
        ("test_resnet", 8, [4, 8, 8, 8]),
        ("test_efficientnet", 16, [4, 8, 16, 16]),
    ],
)
def test_timm_backbone_drops_the_stride2_stem_and_declares_what_it_returns(name, output_stride, strides):
    backbone = TimmBackbone(name, output_stride=output_stride)
    assert backbone.strides == strides
    assert_declared(backbone, run(backbone))


def test_resnet_c_is_the_mmseg_v1c_deep_stem():
    with torch.device("meta"):
        backbone = TimmBackbone("resnet50c", output_stride=8)
    stem = backbone.body.conv1
    assert [stem[i].out_channels for i in (0, 3, 6)] == [32, 32, 64]
    assert stem[0].stride == (2, 2)
    assert backbone.body.layer1[0].downsample[0].kernel_size == (1, 1)  # no avg-down shortcut (that is V1d)
    # dilation (1, 1, 2, 4) with the first block of a dilated stage at half the dilation (mmseg contract_dilation)
    assert [b.conv2.dilation[0] for b in backbone.body.layer3][:2] == [1, 2]
    assert [b.conv2.dilation[0] for b in backbone.body.layer4] == [2, 4, 4]
    assert backbone.out_channels == [256, 512, 1024, 2048]


def test_mit_backbone_and_errors():
    backbone, info = create_backbone("mit-tiny")
    assert info == {} and backbone.strides == [4, 8, 16, 32]
    assert_declared(backbone, run(backbone))
    with pytest.raises(ValueError, match="mit-b0"):
        create_backbone("mit-b9")
    with pytest.raises(ValueError, match="fixed output stride"):
        create_backbone("mit-tiny", output_stride=8)
    with pytest.raises(ValueError, match="resnet50"):
        create_backbone("resnet5O")  # letter O: close timm names are listed


def test_timm_weights_load_from_a_local_file_strictly(tmp_path):
    name = "test_byobnet"  # its feature net renames modules (stages.0 -> stages_0): keys differ from the classifier's
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False)
    file = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(file))
    backbone, info = create_backbone(name, weights=file)
    assert info["format"] == "timm" and len(info["sha256"]) == 64
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    reference.eval()
    backbone.eval()
    with torch.no_grad():
        ref_feats = reference.forward_intermediates(x, intermediates_only=True)
        ours = backbone(x)
    assert torch.allclose(ours[-1], ref_feats[-1], atol=1e-5)

    sd = reference.state_dict()
    first = next(iter(sd))
    del sd[first]
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(bad))
    with pytest.raises(CheckpointError, match=first.replace(".", r"\.")):
        create_backbone(name, weights=bad)


def test_timm_default_weights_come_only_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="never downloads"):
        create_backbone("test_resnet", weights="timm")


def test_mit_weights_from_a_segformer_checkpoint(tmp_path):
    from segbench import models
    from segbench.models.checkpoint import save_checkpoint

    seg = models.create_model("segformer-tiny")
    file = save_checkpoint(seg, tmp_path / "seg.safetensors")
    backbone, info = create_backbone("mit-tiny", weights=file)
    assert info["format"] == "mit:native"
    for k, v in seg.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[k], v), k
