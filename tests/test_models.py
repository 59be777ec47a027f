"""Shared contract tests for every zoo model (one base class, one subclass per model).

``ModelTester`` checks what ``rtseg.models.base`` promises: eval logits at input
resolution for sides that are multiples of 8 but not of 32, the train-mode
dict (``"out"`` + ``train_outputs``), aux heads absent when ``aux=False`` and
unused on the eval path, gradients, determinism, per-sample independence in a
batch, a sane parameter count, and the exact key/shape layout of the public
release checkpoint (``tests/data/checkpoint_keys``), and the deploy export:
ONNX Runtime labels equal to PyTorch's and the metadata read back from the file.

Heavy networks (VGG16 with 4096-channel fc layers, ResNet-50/101) set
``build_kwargs`` to a reduced width for the forward/export checks; their
parameter count and key layout are checked at full size on the meta device
(nothing is allocated).

To add a model: subclass ``ModelTester`` as ``Test<Name>`` and set the class
attributes. To add a check for every model (export, parity...), add a
``test_*`` method to ``ModelTester``; the ``model``/``aux_model`` fixtures
build each model once per class.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

from rtseg.core.errors import UserInputError
from rtseg.models import create_model, list_models
from rtseg.models.base import MIN_SIZE, SIZE_MULTIPLE, SegModel
from rtseg.models.bisenetv1 import BiSeNetV1
from rtseg.models.bisenetv2 import BiSeNetV2

KEYS_DIR = Path(__file__).parent / "data" / "checkpoint_keys"
ALL_MODELS = ("bisenetv1", "bisenetv2", "stdc1", "stdc2")


def parse_key_list(path: Path) -> dict[str, tuple[int, ...]]:
    """Read a ``key (d0, d1, ...)`` list (see tests/data/checkpoint_keys/README.md)."""
    layout: dict[str, tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"(\S+) \(([\d, ]*)\)", line.strip())
        assert m, f"unparseable line in {path.name}: {line!r}"
        layout[m.group(1)] = tuple(int(d) for d in m.group(2).split(",") if d.strip())
    return layout


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # These tensors are tiny: with several test processes sharing 2 cores,
    # intra-op threads spend their time waiting on each other (measured 20x
    # slower forward+backward with 2 threads than with 1 under load).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_input(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=g)


class ModelTester:
    """Base class of the per-model tests (not collected itself: no ``Test`` prefix)."""

    model_name: ClassVar[str]
    #: Inclusive range of the parameter count with 19 classes and aux=False.
    param_range: ClassVar[tuple[int, int]]
    #: File under tests/data/checkpoint_keys with the release layout (aux=True, 19 classes).
    key_list: ClassVar[str | None] = None
    #: Parameter-name prefixes built with aux=True that no forward uses (release-file leftovers).
    unused_params: ClassVar[tuple[str, ...]] = ()
    #: Eval sizes: multiples of 8, neither side a multiple of 32, odd-sized 1/16 and 1/32 maps.
    sizes: ClassVar[tuple[tuple[int, int], ...]] = ((72, 104), (96, 136))
    #: Builder options for the forward/export checks (e.g. a reduced ``width`` for the VGG/ResNet models).
    build_kwargs: ClassVar[dict[str, object]] = {}
    #: Whether ``aux=True`` builds training-only heads (FCN, SegNet, ... have none).
    has_aux: ClassVar[bool] = True
    #: Max-unpooling nets: a float-rounding near-tie inside a pooling window moves that value
    #: by one pixel (a switch flips), which the decoder spreads locally; compare most elements.
    switch_sensitive: ClassVar[bool] = False

    # --- fixtures / hooks ---------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> SegModel:
        """The model with 19 classes, aux=False, in eval mode (built once per class)."""
        torch.manual_seed(0)
        return create_model(cls.model_name, 19, aux=False, **cls.build_kwargs).eval()

    @pytest.fixture(scope="class")
    @classmethod
    def aux_model(cls) -> SegModel:
        """The model with aux heads (built once per class; tests set train/eval themselves)."""
        torch.manual_seed(1)
        return create_model(cls.model_name, 19, aux=True, **cls.build_kwargs)

    def expected_train_shape(self, key: str, n: int, num_classes: int, h: int, w: int) -> tuple[int, ...]:
        """Shape of a train-mode output (base contract: aux logits at input size, ``detail*`` at 1/8)."""
        if key.startswith("detail"):
            return (n, 1, math.ceil(h / 8), math.ceil(w / 8))
        return (n, num_classes, h, w)

    def release_layout(self, file_layout: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """The file's layout after the family's converter (identity unless a family drops keys)."""
        return file_layout

    # --- tests ----------------------------------------------------------------------

    def test_registered(self, model: SegModel) -> None:
        assert self.model_name in list_models()
        assert isinstance(model, SegModel)
        assert model.name == self.model_name
        assert model.num_classes == 19 and model.aux is False
        assert model.train_outputs == ()

    def test_eval_shapes_odd_sizes(self, model: SegModel) -> None:
        for h, w in self.sizes:
            assert h % SIZE_MULTIPLE == 0 and w % SIZE_MULTIPLE == 0 and h >= MIN_SIZE and w >= MIN_SIZE
            with torch.no_grad():
                out = model(make_input(1, h, w))
            assert isinstance(out, torch.Tensor)
            assert out.shape == (1, 19, h, w)
            assert out.dtype == torch.float32 and torch.isfinite(out).all()

    def test_camvid_size_11_classes(self) -> None:
        # CamVid's 360x480: 1/32 map 12x15, 1/16 map 23x30; 11 classes.
        torch.manual_seed(0)
        m = create_model(self.model_name, 11, **self.build_kwargs).eval()
        assert m.num_classes == 11
        with torch.no_grad():
            out = m(make_input(1, 360, 480))
        assert out.shape == (1, 11, 360, 480)
        assert torch.isfinite(out).all()

    def test_min_size_and_batch(self, model: SegModel) -> None:
        # Batch of 2 at the smallest size; every sample must be computed on its own
        # (eval BN uses running stats), so each equals its single-image forward.
        x = make_input(2, MIN_SIZE, MIN_SIZE + 16, seed=3)
        with torch.no_grad():
            both = model(x)
            one = model(x[1:])
        assert both.shape == (2, 19, MIN_SIZE, MIN_SIZE + 16)
        # Tolerance relative to the logits' scale: random-init ResNets reach values in the hundreds.
        atol = max(1e-4, 1e-5 * float(one.abs().max()))
        torch.testing.assert_close(both[1:], one, rtol=1e-4, atol=atol)
        assert not torch.allclose(both[0], both[1])  # different inputs give different logits

    def test_eval_deterministic(self, model: SegModel) -> None:
        x = make_input(1, *self.sizes[0], seed=4)
        with torch.no_grad():
            assert torch.equal(model(x), model(x))

    def test_train_outputs(self, aux_model: SegModel) -> None:
        n, (h, w) = 2, self.sizes[0]
        aux_model.train()
        out = aux_model(make_input(n, h, w, seed=5))
        assert isinstance(out, dict)
        assert bool(aux_model.train_outputs) == self.has_aux, "aux=True must declare its training-only outputs"
        assert set(out) == {"out", *aux_model.train_outputs}
        for key, value in out.items():
            assert tuple(value.shape) == self.expected_train_shape(key, n, 19, h, w), key
            assert torch.isfinite(value).all(), key

    def test_no_aux_heads_without_aux(self, model: SegModel, aux_model: SegModel) -> None:
        plain = set(model.state_dict())
        with_aux = set(aux_model.state_dict())
        if self.has_aux:
            assert plain < with_aux, "aux=False must build a strict subset of the aux=True model"
            n_plain = sum(p.numel() for p in model.parameters())
            assert n_plain < sum(p.numel() for p in aux_model.parameters())
        else:
            assert plain == with_aux, "a model without training-only heads builds the same thing with aux=True"
        # Train mode without aux returns only "out".
        m = create_model(self.model_name, 19, aux=False, **self.build_kwargs).train()
        out = m(make_input(2, *self.sizes[0]))
        assert isinstance(out, dict) and set(out) == {"out"}

    def test_eval_path_ignores_aux_heads(self, aux_model: SegModel) -> None:
        # The aux model's inference-path weights, loaded strictly into an aux=False
        # model, give bit-identical eval logits: the heads never touch the eval path.
        plain = create_model(self.model_name, 19, aux=False, **self.build_kwargs)
        sd = {k: v for k, v in aux_model.state_dict().items() if k in plain.state_dict()}
        plain.load_state_dict(sd, strict=True)
        aux_model.eval()
        plain.eval()
        x = make_input(1, *self.sizes[1], seed=6)
        with torch.no_grad():
            a, b = aux_model(x), plain(x)
        assert isinstance(a, torch.Tensor)
        assert torch.equal(a, b)

    def test_gradients_flow(self, aux_model: SegModel) -> None:
        aux_model.train()
        aux_model.zero_grad(set_to_none=True)
        out = aux_model(make_input(2, *self.sizes[0], seed=7))
        loss = sum((v.float() ** 2).mean() for v in out.values())
        loss.backward()
        first_conv = next(m for m in aux_model.modules() if isinstance(m, nn.Conv2d))
        assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
        for name, p in aux_model.named_parameters():
            if name.startswith(self.unused_params):
                assert p.grad is None, f"{name} is declared unused but got a gradient"
                continue
            assert p.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(p.grad).all(), name
        aux_model.zero_grad(set_to_none=True)

    def test_param_count(self) -> None:
        with torch.device("meta"):  # the published network's size, nothing allocated
            full = create_model(self.model_name, 19, aux=False)
        n = sum(p.numel() for p in full.parameters())
        lo, hi = self.param_range
        assert lo <= n <= hi, f"{self.model_name}: {n} parameters, expected {lo}..{hi}"

    def test_release_key_layout(self) -> None:
        if self.key_list is None:
            pytest.skip(f"no release key list for {self.model_name}")
        file_layout = parse_key_list(KEYS_DIR / self.key_list)
        expected = self.release_layout(file_layout)
        with torch.device("meta"):
            model = create_model(self.model_name, self.release_classes(file_layout), aux=True)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert sorted(set(expected) - set(got)) == [], "keys in the release file the model lacks"
        assert sorted(set(got) - set(expected)) == [], "keys the model has that the release file lacks"
        assert {k: s for k, s in got.items() if expected[k] != s} == {}, "shape mismatches"

    def release_classes(self, file_layout: dict[str, tuple[int, ...]]) -> int:
        """Class count of the release key list (19 for the Cityscapes releases)."""
        return 19

    def test_export_parity_and_metadata(self, model: SegModel, tmp_path: Path) -> None:
        """The deploy graph exports; ONNX Runtime's logits match PyTorch's and so do its labels
        wherever the top two classes are not a float-rounding tie; the metadata reads back."""
        import numpy as np
        import onnxruntime as ort
        from _paths import SAMPLE_CLIP, SMALL_SIZE

        from rtseg.core.datasets_meta import default_classes
        from rtseg.core.meta import ModelMeta
        from rtseg.export.onnx_export import export_onnx, read_onnx_meta, verification_frames
        from rtseg.models.deploy import DeployGraph

        names, palette = default_classes(19)
        meta = ModelMeta(self.model_name, names, palette, model.input_mean, model.input_std, weights=None)
        # Random weights leave near-ties between classes that rounding may flip: compare
        # logits, and labels away from ties (export_onnx's own label check is for trained nets).
        res = export_onnx(model, meta, input_size=SMALL_SIZE, path=tmp_path / "m.onnx", with_logits=True,
                          verify=False)
        assert read_onnx_meta(res.path) == meta.with_(input_size=SMALL_SIZE)
        sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
        graph = DeployGraph(model, meta, with_logits=True).eval()
        for f in verification_frames(2, *SMALL_SIZE, SAMPLE_CLIP):
            with torch.no_grad():
                ref_labels, ref_logits = (t.numpy() for t in graph(torch.from_numpy(f[None].copy())))
            labels, logits = sess.run(["labels", "logits"], {"frames": f[None]})
            assert labels.dtype == np.uint8 and labels.shape == (1, *SMALL_SIZE)
            scale = float(np.abs(ref_logits).max())
            close = np.abs(logits - ref_logits) <= 1e-4 * scale
            if self.switch_sensitive:
                assert close.mean() >= 0.98, f"only {close.mean():.2%} of the logits match"
                assert (labels == ref_labels).mean() >= 0.995
                continue
            assert close.all(), f"max |diff| {np.abs(logits - ref_logits).max()} (scale {scale})"
            top2 = np.sort(ref_logits, axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * scale
            assert np.array_equal(labels[clear], ref_labels[clear])
            assert (labels == ref_labels).mean() >= 0.999


def _within(n: int, rel: float = 0.10) -> tuple[int, int]:
    return int(n * (1 - rel)), int(n * (1 + rel))


class TestBiSeNetV1(ModelTester):
    model_name = "bisenetv1"
    # Measured 13,275,539 (19 classes, no aux): ResNet-18 trunk 11,176,512 (torchvision's
    # 11,689,512 minus the 513,000-parameter fc) plus ~2.1M in ARMs, spatial path, FFM, head.
    param_range = _within(13_275_539)
    key_list = "bisenetv1.txt"

    def test_resnet18_trunk_matches_torchvision_count(self, model: SegModel) -> None:
        # Independent check of the backbone: ResNet-18 without fc has 11,176,512 parameters.
        assert isinstance(model, BiSeNetV1)
        assert sum(p.numel() for p in model.cp.resnet.parameters()) == 11_176_512


class TestBiSeNetV2(ModelTester):
    model_name = "bisenetv2"
    # Measured 3,358,627 (19 classes, no booster heads); the paper's model is ~3.4M.
    param_range = _within(3_358_627)
    key_list = "bisenetv2.txt"

    def test_bga_sizes_match_at_odd_sizes(self, model: SegModel) -> None:
        # The BGA's downsampled detail map must match the semantic 1/32 map for any side % 8 == 0.
        assert isinstance(model, BiSeNetV2)
        for h, w in ((72, 104), (360, 480), (64, 88)):
            x = make_input(1, h, w)
            with torch.no_grad():
                detail = model.detail(x)
                semantic = model.segment(x)[4]
                down = model.bga.left2(detail)
            assert detail.shape[-2:] == (math.ceil(h / 8), math.ceil(w / 8))
            assert down.shape[-2:] == semantic.shape[-2:] == (math.ceil(h / 32), math.ceil(w / 32))


_STDC_DROPPED = re.compile(r"cp\.backbone\.(x(2|4|8|16|32)|conv_last|fc|bn|linear)\.")


class _STDCTester(ModelTester):
    unused_params = ("conv_out_sp2.", "conv_out_sp4.", "conv_out_sp16.")

    def release_layout(self, file_layout: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        # The converter drops the backbone aliases and the ImageNet classifier and
        # fills num_batches_tracked of the 15 BatchNorms the file stores without it.
        layout = {k: s for k, s in file_layout.items() if not _STDC_DROPPED.match(k)}
        for k in [k for k in layout if k.endswith(".running_var")]:
            layout.setdefault(k[: -len("running_var")] + "num_batches_tracked", ())
        return layout


class TestSTDC1(_STDCTester):
    model_name = "stdc1"
    # Measured 8,275,104 (19 classes, no aux); STDC1-Seg is reported at ~8.4M.
    param_range = _within(8_275_104)
    key_list = "stdc1_seg.txt"


class TestSTDC2(_STDCTester):
    model_name = "stdc2"
    # Measured 12,305,568 (19 classes, no aux); STDC2-Seg is reported at ~12.5M.
    param_range = _within(12_305_568)
    key_list = "stdc2_seg.txt"


class TestSTDCEffLite0(ModelTester):
    model_name = "stdc_efflite0"
    # Measured 4,498,432 (19 classes, no aux): EfficientNet-Lite0 without its ImageNet head
    # 2,958,848 plus the STDC head (ARMs, global context, FFM, classifier).
    param_range = _within(4_498_432)

    def test_encoder_exposes_out_channels(self, model: SegModel) -> None:
        assert model.encoder is not None and tuple(model.encoder.out_channels) == (3, 16, 24, 40, 112, 320)


# --- the seed systems -------------------------------------------------------------------
# Full-size counts are the published networks' (measured here on the meta device):
# FCN-8s 134.5M and SegNet 29.4M as in their papers, DeconvNet 251.8M (the paper's 252M),
# torchvision's FCN/DeepLabv3/LR-ASPP as torchvision reports them (with 21 classes).


class _NoAuxTester(ModelTester):
    has_aux = False


class _VGGTester(_NoAuxTester):
    # width 8: VGG16's 64..512 channels become 8..64 and the 4096-channel fc layers 512.
    build_kwargs = {"width": 8}


class TestFCN32s(_VGGTester):
    model_name = "fcn32s"
    param_range = _within(135_817_043, 0.02)


class TestFCN16s(_VGGTester):
    model_name = "fcn16s"
    param_range = _within(134_723_574, 0.02)


class TestFCN8s(_VGGTester):
    model_name = "fcn8s"
    param_range = _within(134_456_985, 0.02)


class TestSegNet(_VGGTester):
    model_name = "segnet"
    switch_sensitive = True
    param_range = _within(29_446_035, 0.02)


class TestSegNetBasic(_NoAuxTester):
    model_name = "segnet_basic"
    switch_sensitive = True
    # 4 x 7x7x64 encoder + 4 x 7x7x64 decoder convolutions (1.41M) + BN + classifier.
    param_range = _within(1_416_595, 0.02)
    build_kwargs = {"channels": 16}


class TestDeconvNet(_VGGTester):
    model_name = "deconvnet"
    switch_sensitive = True
    param_range = _within(251_788_819, 0.02)


class TestDilation8(_VGGTester):
    model_name = "dilation8"
    param_range = _within(134_361_643, 0.02)


class TestDilation8Large(_VGGTester):
    model_name = "dilation8"
    param_range = _within(134_361_643, 0.05)
    build_kwargs = {"width": 8, "context": "large"}


class _TorchvisionTester(ModelTester):
    def release_classes(self, file_layout: dict[str, tuple[int, ...]]) -> int:
        return 21  # torchvision's files: the VOC classes


class TestFCNResNet50(_TorchvisionTester):
    model_name = "fcn_resnet50"
    param_range = _within(32_955_987, 0.01)  # torchvision: 35,322,218 with 21 classes and the aux head
    key_list = "torchvision_fcn_resnet50.txt"
    build_kwargs = {"width": 16}


class TestFCNResNet101(_TorchvisionTester):
    model_name = "fcn_resnet101"
    param_range = _within(51_948_115, 0.01)  # torchvision: 54,314,346
    key_list = "torchvision_fcn_resnet101.txt"
    build_kwargs = {"width": 16}


class TestDeepLabV3ResNet50(_TorchvisionTester):
    model_name = "deeplabv3_resnet50"
    param_range = _within(39_638_355, 0.01)  # torchvision: 42,004,074
    key_list = "torchvision_deeplabv3_resnet50.txt"
    build_kwargs = {"width": 16}


class TestDeepLabV3ResNet101(_TorchvisionTester):
    model_name = "deeplabv3_resnet101"
    param_range = _within(58_630_483, 0.01)  # torchvision: 60,996,202
    key_list = "torchvision_deeplabv3_resnet101.txt"
    build_kwargs = {"width": 16}


class TestDeepLabV3ResNet50PaperOptions(_TorchvisionTester):
    """The paper's configuration: OS 16, multi-grid (1, 2, 4), ASPP rates (6, 12, 18), no extra 3x3."""

    model_name = "deeplabv3_resnet50"
    param_range = _within(39_638_355, 0.01)
    build_kwargs = {"width": 16, "output_stride": 16, "multi_grid": (1, 2, 4), "head_conv": False}


class TestDeepLabV3MobileNetV3(_TorchvisionTester):
    model_name = "deeplabv3_mobilenet_v3_large"
    param_range = _within(11_024_963, 0.01)  # torchvision: 11,029,328
    key_list = "torchvision_deeplabv3_mobilenet_v3_large.txt"


class TestLRASPPMobileNetV3(_TorchvisionTester):
    model_name = "lraspp_mobilenet_v3_large"
    has_aux = False
    param_range = _within(3_221_198, 0.01)  # torchvision: 3,221,538
    key_list = "torchvision_lraspp_mobilenet_v3_large.txt"


# --- registry ------------------------------------------------------------------------


def test_list_models_has_the_zoo() -> None:
    names = list_models()
    assert set(ALL_MODELS) <= set(names)
    assert names == sorted(names)


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(UserInputError) as err:
        create_model("nope")
    msg = str(err.value)
    assert "nope" in msg and "\n" not in msg
    for name in ALL_MODELS:
        assert name in msg


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, "19"])
def test_bad_num_classes_is_refused(bad: object) -> None:
    with pytest.raises(UserInputError, match="num-classes"):
        create_model("bisenetv2", bad)  # type: ignore[arg-type]
