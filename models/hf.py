"""`hf:FOLDER` and `hf:org/name[@revision]`: a transformers segmentation model as a segbench model.

The model comes from a folder written by `save_pretrained` (`config.json` + weights) or from a snapshot in the local
Hugging Face cache, looked up with local files only (`models.checkpoint.hub_snapshot`): nothing is downloaded.
Supported are the semantic-segmentation heads (per-pixel class logits) and the universal mask-classification models
(per-query class and mask logits), listed in `SUPPORTED`.

What segbench takes from transformers and what it does not:

* **Scores.** Semantic models give `outputs.logits`. Universal models are turned into per-class score maps exactly as
  their image processor's `post_process_semantic_segmentation` does before its resize: class probabilities without
  the last (null) class, times the sigmoid of the mask logits, summed over queries
  (`einsum("bqc, bqhw -> bchw")`). Mask2Former's post-processing first resizes the mask logits to 384x384 (whatever
  the input's shape); the wrapper does too. segbench then resizes the scores bilinearly (`align_corners=False`) to
  the label size and takes the argmax, as transformers does with `target_sizes`, so the labels are the same.
  (OneFormer's torchvision post-processing resizes with antialiasing, which only differs when shrinking; its mask
  logits are at 1/4 of the input, so label maps at input size are enlargements.)
* **Normalisation only** from the processor config (`preprocessor_config.json`, or the `image_processor` entry of a
  `processor_config.json`): `do_rescale`/`rescale_factor`, `do_normalize`/`image_mean`/`image_std` and the channel
  order (MobileViT's `do_flip_channel_order`: the model sees BGR). A key the file leaves out takes its image
  processor's default. Resizing, cropping and padding are the suite's protocol: every model sees the same pixels.
* **Labels** are matched to the dataset's classes by name through `config.id2label` (`sources.map_labels`): a
  model whose classes come in another order scores right; one whose labels do not cover the dataset is refused,
  unless `--label-map FILE` says how. A dataset without class names takes the model's classes in order, if they
  are as many.
* **Weights** load strictly: any missing, unexpected or wrongly shaped key is an error naming them. `--weights`
  (a safetensors or weights-only torch state dict) replaces the folder's weights, through the same strict check.
* **OneFormer** is conditioned on the task text "the task is semantic", tokenized once at load with the folder's own
  tokenizer exactly as `OneFormerProcessor` does (ids times attention mask, padded to `config.task_seq_len`).

Input sizes: most models take any size. DPT's semantic head reshapes its tokens into a square grid, so it takes
square inputs only; Data2Vec-Vision's reshapes them into the grid of `config.image_size`, so it takes exactly that
size. For those two, and for BEiT (whose relative position tables were learnt at `config.image_size`; transformers
interpolates them for other sizes), the default sliding window (`meta.eval_crop`) is `config.image_size`, with a
stride of two thirds of it (mmseg's BEiT protocol: 640 crops, stride 426). Whole-image inference on an input these
models cannot take raises a one-line error that says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, WeightsInfo
from segbench.models.checkpoint import (
    CheckpointError,
    hf_cache_dir,
    hub_snapshot,
    read_state_dict,
    resolve_weights,
    sha256_file,
    split_hub_id,
)
from segbench.models.sources import BuildRequest, SourceError, SourceInfo, map_labels

INSTALL_HINT = "hf: needs the transformers package: pip install 'segbench[hf]' (or pip install transformers)"

FLOP_CONVENTIONS = ("fvcore", "torch")
"""FLOP conventions that apply to `hf:` models: counted on the real forward; there is no paper convention for them."""

ONEFORMER_TASK = "the task is semantic"
"""The task text OneFormer is conditioned on (what `OneFormerProcessor` builds for task "semantic")."""

MASK2FORMER_MASK_SIZE = (384, 384)
"""Mask2Former's post-processing resizes the mask logits to this size before the sigmoid ("preprocessed image size")."""


@dataclass(frozen=True)
class Architecture:
    """How segbench runs one transformers `model_type`.

    Attributes:
        model_class: the transformers class that loads it (the one its Auto class picks).
        kind: "semantic" (`outputs.logits` are class scores) or "universal" (per-query class and mask logits).
        processor: its image processor class (the defaults of keys a processor config leaves out).
        backbone: the backbone's name when the config has no `backbone_config`.
        encoder: attribute path of the backbone inside the model (the backbone / head split of the parameters).
        output_stride: input size / score size; 0 takes `config.output_stride`.
        input: "any", "square" (any square size) or "fixed" (exactly `config.image_size`).
        window_at_image_size: default sliding window of `config.image_size` (see the module docstring).
        mask_size: size the mask logits are resized to before the sigmoid (universal models), or None.
    """

    model_class: str
    kind: str
    processor: str
    backbone: str
    encoder: str
    output_stride: int = 4
    input: str = "any"
    window_at_image_size: bool = False
    mask_size: tuple[int, int] | None = None


_PIXEL_ENCODER = "model.pixel_level_module.encoder"

SUPPORTED: dict[str, Architecture] = {
    "segformer": Architecture("SegformerForSemanticSegmentation", "semantic", "SegformerImageProcessor", "mit",
                              "segformer"),
    # UperNet upsamples its logits to the input inside forward
    "upernet": Architecture("UperNetForSemanticSegmentation", "semantic", "SegformerImageProcessor", "", "backbone",
                            output_stride=1),
    # DPT's head ends at the input size (patch 16); its neck reshapes tokens into a square grid
    "dpt": Architecture("DPTForSemanticSegmentation", "semantic", "DPTImageProcessor", "vit", "dpt",
                        output_stride=1, input="square", window_at_image_size=True),
    # BEiT / Data2Vec-Vision: UperNet head on 4x upsampled patch-16 tokens
    "beit": Architecture("BeitForSemanticSegmentation", "semantic", "BeitImageProcessor", "beit", "beit",
                         window_at_image_size=True),
    "data2vec-vision": Architecture("Data2VecVisionForSemanticSegmentation", "semantic", "BeitImageProcessor",
                                    "data2vec-vision", "data2vec_vision", input="fixed", window_at_image_size=True),
    "mobilenet_v2": Architecture("MobileNetV2ForSemanticSegmentation", "semantic", "MobileNetV2ImageProcessor",
                                 "mobilenet_v2", "mobilenet_v2", output_stride=0),
    "mobilevit": Architecture("MobileViTForSemanticSegmentation", "semantic", "MobileViTImageProcessor", "mobilevit",
                              "mobilevit", output_stride=0),
    "mobilevitv2": Architecture("MobileViTV2ForSemanticSegmentation", "semantic", "MobileViTImageProcessor",
                                "mobilevitv2", "mobilevitv2", output_stride=0),
    # universal models: mask logits at 1/4 of the input (Mask2Former's resized to 384x384, see MASK2FORMER_MASK_SIZE)
    "mask2former": Architecture("Mask2FormerForUniversalSegmentation", "universal", "Mask2FormerImageProcessor", "",
                                _PIXEL_ENCODER, mask_size=MASK2FORMER_MASK_SIZE),
    "maskformer": Architecture("MaskFormerForInstanceSegmentation", "universal", "MaskFormerImageProcessor", "",
                               _PIXEL_ENCODER),
    "oneformer": Architecture("OneFormerForUniversalSegmentation", "universal", "OneFormerImageProcessor", "",
                              _PIXEL_ENCODER),
}  # fmt: skip

NO_NORMALIZE_STEP = ("MobileViTImageProcessor", "MobileViTFeatureExtractor")
"""Image processors whose preprocessing has no normalisation step (whatever `do_normalize` says)."""

PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def supported_text() -> str:
    """The supported model types, for messages: ``semantic: beit, ...; universal: mask2former, ...``."""
    kinds = {k: sorted(t for t, a in SUPPORTED.items() if a.kind == k) for k in ("semantic", "universal")}
    return "; ".join(f"{kind}: {', '.join(types)}" for kind, types in kinds.items())


# --------------------------------------------------------------------------------------------------------------------
# The model segbench runs
# --------------------------------------------------------------------------------------------------------------------


class HFSegmenter(nn.Module):
    """A transformers segmentation model behind segbench's interface: normalised RGB in, dataset-order scores out.

    Args:
        model: the transformers model (eval mode).
        arch: its `SUPPORTED` entry.
        index: for each dataset class, the model's class index that scores it (`sources.map_labels`).
        flip_channels: feed the model BGR (its processor flips the channel order).
        fixed_size: the only input size the model takes, or None.
        task_inputs: OneFormer's tokenized task text `(1, task_seq_len)`, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        arch: Architecture,
        index: Sequence[int],
        flip_channels: bool = False,
        fixed_size: tuple[int, int] | None = None,
        task_inputs: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        self.arch = arch
        self.flip_channels = flip_channels
        self.fixed_size = fixed_size
        num_model_classes = model.config.num_labels
        self.keep_all = list(index) == list(range(num_model_classes))  # identity: no channel selection needed
        self.register_buffer("index", torch.tensor(list(index), dtype=torch.long), persistent=False)
        self.register_buffer("task_inputs", task_inputs, persistent=False)

    @property
    def backbone(self) -> nn.Module:
        """The model's backbone (not registered twice: `count_params` splits backbone and head with it)."""
        module = self.model
        for name in self.arch.encoder.split("."):
            module = getattr(module, name)
        return module

    def _check_size(self, x: torch.Tensor) -> None:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        name = type(self.model).__name__
        if self.fixed_size is not None and (h, w) != tuple(self.fixed_size):
            fh, fw = self.fixed_size
            raise ValueError(
                f"{name} takes {fh}x{fw} inputs only (its head reshapes tokens to config.image_size), got {h}x{w}; "
                f"use slide inference with a {fh}x{fw} crop (its meta.eval_crop)"
            )
        if self.arch.input == "square" and h != w:
            raise ValueError(
                f"{name} takes square inputs only (its neck reshapes tokens to a square grid), got {h}x{w}; "
                "use slide inference with a square crop (its meta.eval_crop)"
            )

    def _mask_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class scores of a universal model, as its `post_process_semantic_segmentation` computes them."""
        extra = {} if self.task_inputs is None else {"task_inputs": self.task_inputs.expand(x.shape[0], -1)}
        out = self.model(pixel_values=x, **extra)
        masks = out.masks_queries_logits  # B, Q, h, w
        if self.arch.mask_size is not None:
            masks = F.interpolate(masks, size=self.arch.mask_size, mode="bilinear", align_corners=False)
        classes = out.class_queries_logits.softmax(dim=-1)[..., :-1]  # B, Q, C: the null class removed
        if not self.keep_all:  # only the dataset's classes (each class's sum over queries is independent)
            classes = classes.index_select(-1, self.index)
        return torch.einsum("bqc, bqhw -> bchw", classes, masks.sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB `(B, 3, H, W)` -> class scores `(B, num_dataset_classes, h, w)` in the dataset's order."""
        self._check_size(x)
        if self.flip_channels:
            x = x.flip(1)  # RGB -> BGR
        if self.arch.kind == "universal":
            return self._mask_scores(x)
        logits = self.model(pixel_values=x).logits
        return logits if self.keep_all else logits.index_select(1, self.index)


# --------------------------------------------------------------------------------------------------------------------
# Finding the folder, reading its configs
# --------------------------------------------------------------------------------------------------------------------


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise SourceError(INSTALL_HINT) from None
    return transformers


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def resolve_target(target: str) -> tuple[Path, dict[str, str]]:
    """`hf:` target -> (model folder, provenance): an existing folder, else `org/name[@revision]` in the local cache.

    Raises:
        SourceError: neither; the message says where it looked and how to supply the model.
    """
    path = Path(target).expanduser()
    if path.is_dir():
        return path, {"folder": str(path.resolve())}
    if path.is_file():
        raise SourceError(f"hf:{target} is a file; hf: takes a model folder (config.json + weights) or a hub id")
    hub = split_hub_id(target)
    if hub is None:
        raise SourceError(
            f"hf:{target}: no such folder, and not a hub id (org/name or org/name@revision); "
            "pass a folder written by save_pretrained or a model id in the local Hugging Face cache"
        )
    repo_id, revision = hub
    folder = hub_snapshot(repo_id, revision)
    if folder is None:
        where = f"{repo_id} at revision {revision!r}" if revision else repo_id
        fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
        raise SourceError(
            f"hf:{target}: no such folder, and {where} is not in the local Hugging Face cache ({hf_cache_dir()}); "
            f"segbench never downloads: on a machine with network run `{fetch}` and bring that cache here "
            "(HF_HUB_CACHE or HF_HOME), or pass a local folder"
        )
    return folder, {"repo_id": repo_id, "revision": revision or "main", "commit": folder.name}


def _read_json(path: Path, target: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SourceError(f"hf:{target}: {path} is not readable JSON ({_first_line(e)})") from None
    if not isinstance(data, dict):
        raise SourceError(f"hf:{target}: {path} is not a JSON object")
    return data


def _architecture(folder: Path, target: str) -> tuple[str, Architecture]:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise SourceError(
            f"hf:{target}: {folder} has no config.json; an hf: folder holds config.json and the weights "
            "(model.safetensors), as save_pretrained writes them"
        )
    model_type = _read_json(config_file, target).get("model_type")
    if model_type not in SUPPORTED:
        raise SourceError(
            f"hf:{target}: model_type {model_type!r} is not a supported segmentation architecture "
            f"(supported: {supported_text()})"
        )
    return model_type, SUPPORTED[model_type]


def _processor_class(transformers: Any, name: str | None) -> Any:
    """The image processor class named `name` (a legacy `...FeatureExtractor` name too), or None."""
    if not name:
        return None
    for candidate in (name, name.replace("FeatureExtractor", "ImageProcessor").removesuffix("Fast")):
        try:
            return getattr(transformers, candidate)
        except (AttributeError, ImportError, RuntimeError):
            continue
    return None


@dataclass(frozen=True)
class Normalisation:
    """A processor config in segbench's convention: `(img / 255 - mean) / std` in RGB, then maybe RGB -> BGR."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip_channels: bool
    description: str


def read_normalisation(transformers: Any, folder: Path, arch: Architecture, target: str) -> Normalisation:
    """The normalisation a model's processor config asks for, converted to segbench's convention.

    transformers computes `(img * rescale_factor - m) / s` (each step only when `do_rescale` / `do_normalize`),
    which is `(img / 255 - m / (255 r)) / (s / (255 r))`: segbench's mean is `m / (255 r)` and its std `s / (255 r)`.
    """
    found = None
    for name in PROCESSOR_FILES:
        if (folder / name).is_file():
            data = _read_json(folder / name, target)
            data = data.get("image_processor") if name == "processor_config.json" else data  # nested there
            if isinstance(data, dict):
                found = name, data
                break
    if found is None:
        return Normalisation(IMAGENET_MEAN, IMAGENET_STD, False, "ImageNet default: no preprocessor_config.json")
    source, data = found
    cls_name = data.get("image_processor_type") or data.get("feature_extractor_type") or arch.processor
    cls = _processor_class(transformers, cls_name) or _processor_class(transformers, arch.processor)
    fallback = {
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "do_flip_channel_order": False,
    }

    def get(key: str) -> Any:
        if key in data:
            return data[key]
        return getattr(cls, key, fallback[key]) if cls is not None else fallback[key]

    rescale = float(get("rescale_factor")) if get("do_rescale") else 1.0
    normalize = bool(get("do_normalize")) and not str(cls_name).startswith(NO_NORMALIZE_STEP)
    mean = _triple(get("image_mean"), target) if normalize else (0.0, 0.0, 0.0)
    std = _triple(get("image_std"), target) if normalize else (1.0, 1.0, 1.0)
    scale = 1.0 if abs(255.0 * rescale - 1.0) < 1e-9 else 255.0 * rescale  # rescale 1/255: the convention already
    mean = tuple(m / scale for m in mean)
    std = tuple(s / scale for s in std)
    flip = bool(get("do_flip_channel_order"))
    description = (
        f"{source} ({cls_name}): rescale {rescale:.6g}, "
        + (f"mean {list(get('image_mean'))}, std {list(get('image_std'))}" if normalize else "no normalisation")
        + f", {'BGR (channel order flipped)' if flip else 'RGB'}"
    )
    return Normalisation(mean, std, flip, description)


def _triple(values: Any, target: str) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        values = [values] * 3
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise SourceError(f"hf:{target}: image_mean / image_std must hold 3 values (RGB), got {values!r}")
    return tuple(float(v) for v in values)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def _weight_files(folder: Path) -> list[Path]:
    """The weight files transformers reads from `folder` (safetensors first, as it prefers them; shards included)."""
    return sorted(folder.glob("model*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def _weights_sha256(files: Sequence[Path]) -> str:
    """sha256 of one file, or of several (relative names and hashes, sorted, as `bench.run.provenance.sha256_path`)."""
    if len(files) == 1:
        return sha256_file(files[0])
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _some(keys: Sequence[str], n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _check_loading(info: Mapping[str, Any], what: str) -> None:
    """Strict loading: fail on any key transformers reports missing, unexpected or of the wrong shape."""
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing keys {_some(list(info['missing_keys']))}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected keys {_some(list(info['unexpected_keys']))}")
    if info.get("mismatched_keys"):
        shapes = [f"{k} {tuple(a)} vs the model's {tuple(b)}" for k, a, b in info["mismatched_keys"]]
        problems.append(f"wrongly shaped keys {_some(shapes, 3)}")
    if info.get("error_msgs"):
        problems.append(f"errors {_some([str(m).splitlines()[0] for m in info['error_msgs']], 2)}")
    if problems:
        raise SourceError(f"{what}: {'; '.join(problems)} (segbench loads weights strictly)")


def _load_model(
    transformers: Any, arch: Architecture, config: Any, folder: Path, request: BuildRequest, target: str
) -> tuple[nn.Module, WeightsInfo]:
    model_class = getattr(transformers, arch.model_class)
    if request.weights:
        try:
            resolved = resolve_weights(request.weights)
            state_dict = read_state_dict(resolved.file)
        except CheckpointError as e:
            raise SourceError(f"hf:{target}: --weights: {e}") from None
        files, what = [resolved.file], f"hf:{target}: --weights {request.weights}"
        source, state = None, {"state_dict": state_dict}
    else:
        files, what = _weight_files(folder), f"hf:{target}: the weights in {folder}"
        if not files:
            raise SourceError(
                f"hf:{target}: {folder} has config.json but no weights (model.safetensors or pytorch_model.bin); "
                "add them, or pass --weights FILE"
            )
        source, state = str(folder), {}
    try:
        # mismatched shapes are reported in `info` (instead of raised without naming them), then refused below
        model, info = model_class.from_pretrained(
            source,
            config=config,
            local_files_only=True,
            dtype=torch.float32,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
            **state,
        )
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear line
        raise SourceError(f"{what}: transformers cannot load them into {arch.model_class} ({_first_line(e)})") from None
    _check_loading(info, f"{what} do not fit {arch.model_class}")
    weights = WeightsInfo(
        source=f"hf:{target}",
        path=str(files[0] if len(files) == 1 else folder),
        format="huggingface" if not request.weights else f"huggingface config + {Path(files[0]).suffix.lstrip('.')}",
        sha256=_weights_sha256(files),
        random=False,
        notes=[f"weights from --weights {request.weights}"] if request.weights else [],
    )
    return model.eval(), weights


def _task_inputs(transformers: Any, folder: Path, config: Any, target: str) -> torch.Tensor:
    """OneFormer's task tokens for "the task is semantic", as `OneFormerProcessor` makes them: `(1, task_seq_len)`."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise SourceError(
            f"hf:{target}: a OneFormer model needs its tokenizer for the task text {ONEFORMER_TASK!r}, and {folder} "
            f"has none ({' or '.join(TOKENIZER_FILES)}); save the model's OneFormerProcessor into the folder"
        )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        tokens = tokenizer([ONEFORMER_TASK], padding="max_length", max_length=config.task_seq_len, truncation=True)
    except Exception as e:  # noqa: BLE001 - any tokenizer failure becomes one clear line
        raise SourceError(f"hf:{target}: cannot tokenize the OneFormer task text ({_first_line(e)})") from None
    # OneFormerProcessor._preprocess_text: ids times attention mask (padding ids become 0)
    return torch.tensor(tokens["input_ids"]) * torch.tensor(tokens["attention_mask"])


def _label_index(model_labels: Sequence[str], request: BuildRequest, target: str) -> list[int]:
    """For each dataset class, the model class that scores it: matched by name (`sources.map_labels`), or, when the
    dataset's classes have no names (a placeholder class table), the model's classes in order if they are as many.

    Raises:
        SourceError: labels that do not map, or unnamed dataset classes of another count than the model's.
    """
    if request.class_names:
        return map_labels(model_labels, request.class_names, request.label_map, what=f"hf:{target}")
    if request.label_map:
        raise SourceError(f"hf:{target}: --label-map needs the dataset's class names, and this dataset has none")
    if len(model_labels) != request.num_classes:
        raise SourceError(
            f"hf:{target}: the model predicts {len(model_labels)} classes, the run's dataset has {request.num_classes} "
            "without names, so they cannot be matched by name; run it on a dataset with named classes"
        )
    return list(range(len(model_labels)))


def _label_summary(model_labels: Sequence[str], index: Sequence[int], request: BuildRequest) -> dict[str, Any]:
    used = set(index)
    return {
        "matched": f"{len(index)} dataset classes from {len(model_labels)} model classes, "
        + ("by name" if request.class_names else "in order (the dataset's classes have no names)"),
        "order": "same as the dataset" if list(index) == list(range(len(index))) else "permuted",
        "renamed": dict(request.label_map or {}),
        "unused_model_classes": [model_labels[i] for i in range(len(model_labels)) if i not in used],
    }


def load_hf(request: BuildRequest) -> nn.Module:
    """Build `hf:<target>`: a transformers segmentation model, loaded strictly from local files only.

    Returns:
        An `HFSegmenter` (eval mode) with `meta`, `weights_info` and `source_info`.

    Raises:
        SourceError: transformers missing, no such folder or cached id, no config.json, an unsupported architecture,
            labels that do not map, weights that do not fit, or a OneFormer folder without a tokenizer.
    """
    transformers = _import_transformers()
    target = request.spec.target
    if request.model_args:
        raise SourceError(f"hf:{target}: takes no --model-args (its settings are in config.json)")
    folder, provenance = resolve_target(target)
    model_type, arch = _architecture(folder, target)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a config transformers rejects becomes one clear line
        raise SourceError(f"hf:{target}: transformers cannot read its config.json ({_first_line(e)})") from None
    try:
        model_labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    except KeyError as e:
        raise SourceError(f"hf:{target}: config.json's id2label lacks class {e}") from None
    index = _label_index(model_labels, request, target)
    norm = read_normalisation(transformers, folder, arch, target)
    task_inputs = _task_inputs(transformers, folder, config, target) if model_type == "oneformer" else None
    model, weights = _load_model(transformers, arch, config, folder, request, target)
    # The auxiliary FCN head (UperNet, DPT, BEiT, Data2Vec) is a training loss only: it would run on every forward
    # and count in params and latency, never in the prediction. Loaded strictly first, then dropped for evaluation.
    auxiliary = getattr(model, "auxiliary_head", None)
    dropped = sum(p.numel() for p in auxiliary.parameters()) if isinstance(auxiliary, nn.Module) else 0
    if auxiliary is not None:
        model.auxiliary_head = None

    image_size = _pair(config.image_size) if arch.input == "fixed" or arch.window_at_image_size else None
    fixed = image_size if arch.input == "fixed" else None
    backbone_config = getattr(config, "backbone_config", None)
    backbone = getattr(backbone_config, "model_type", None) or getattr(config, "backbone", None) or arch.backbone
    window = {}
    if arch.window_at_image_size:  # two-thirds overlap, as mmseg's BEiT protocol (640 crops, stride 426)
        window = {"eval_crop": image_size, "eval_stride": tuple(max(1, side * 2 // 3) for side in image_size)}
    wrapper = HFSegmenter(model, arch, index, norm.flip_channels, fixed, task_inputs).eval()
    wrapper.meta = ModelMeta(
        name=request.spec.name,
        family=f"hf-{model_type}",
        backbone=str(backbone),
        head=arch.model_class,
        num_classes=len(index),
        mean=norm.mean,
        std=norm.std,
        output_stride=arch.output_stride or int(getattr(config, "output_stride", 32)),
        **window,
    )
    wrapper.weights_info = weights
    wrapper.source_info = SourceInfo(
        kind="hf",
        target=target,
        detail={
            "architecture": arch.model_class,
            "model_type": model_type,
            "kind": arch.kind,
            **provenance,
            "transformers": transformers.__version__,
            "normalisation": norm.description,
            "labels": _label_summary(model_labels, index, request),
            "input": f"exactly {fixed[0]}x{fixed[1]}" if fixed else arch.input + " size",
            **({"mask_logits_resized_to": list(arch.mask_size)} if arch.mask_size else {}),
            **({"task_text": ONEFORMER_TASK} if task_inputs is not None else {}),
            **({"auxiliary_head": f"dropped for evaluation ({dropped} parameters)"} if dropped else {}),
        },
        flop_conventions=FLOP_CONVENTIONS,
    )
    return wrapper
