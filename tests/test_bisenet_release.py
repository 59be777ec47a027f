"""The BiSeNetV1/V2 ``ReleaseFormat`` converters on in-memory state_dicts built
from the CoinCheung files' key lists: detection, class count, aux heads, the
``num_batches_tracked`` filling, and the one-line refusals of odd layouts.
(Loading real files end to end is covered in test_checkpoint.py.)"""

from __future__ import annotations

import ckpt_factory as F
import pytest
import torch

from rtseg.core.errors import CheckpointError
from rtseg.models import bisenetv1, bisenetv2, create_model, stdc
from rtseg.models.release import FILLED_NUM_BATCHES

FORMATS = {"bisenetv1": bisenetv1.RELEASE_FORMATS[0], "bisenetv2": bisenetv2.RELEASE_FORMATS[0]}
CLASSIFIER = {"bisenetv1": "conv_out.conv_out.weight", "bisenetv2": "head.conv_out.1.weight"}
AUX = {"bisenetv1": ("conv_out16", "conv_out32"), "bisenetv2": ("aux2", "aux3", "aux4", "aux5_4")}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Tiny tensors on a shared 2-core machine: one intra-op thread is much faster.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def release_sd() -> dict[str, dict[str, torch.Tensor]]:
    return {name: F.release_state_dict(name) for name in FORMATS}


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name", list(FORMATS))
def test_detects_only_its_own_layout(name: str, release_sd) -> None:
    assert FORMATS[name].detect(release_sd[name])
    for other, fmt in FORMATS.items():
        if other != name:
            assert not fmt.detect(release_sd[name])
    stdc_sd = F.release_state_dict("stdc1_seg")
    assert not FORMATS[name].detect(stdc_sd)
    assert not any(f.detect(release_sd[name]) for f in stdc.RELEASE_FORMATS)


@pytest.mark.parametrize("name", list(FORMATS))
def test_full_file_converts_and_loads_strictly(name: str, release_sd) -> None:
    fmt = FORMATS[name]
    sd = release_sd[name]
    conv = fmt.convert(sd)
    assert (conv.model, conv.num_classes, conv.aux, conv.dropped) == (name, 19, True, {})
    assert list(conv.state_dict) == list(create_model(name, 19, aux=True).state_dict())
    assert all(conv.state_dict[k] is sd[k] for k in sd)  # no copies, no renames
    model = create_model(name, 19, aux=True)
    model.load_state_dict(conv.state_dict, strict=True)
    assert torch.equal(model.state_dict()[CLASSIFIER[name]], sd[CLASSIFIER[name]])
    assert fmt.model == name and fmt.channel_order == "RGB" and fmt.dataset == "cityscapes"
    assert fmt.mean == (0.3257, 0.3690, 0.3223) and fmt.std == (0.2112, 0.2148, 0.2115)


@pytest.mark.parametrize("name", list(FORMATS))
def test_inference_only_file_gives_aux_false(name: str, release_sd) -> None:
    sd = {k: v for k, v in release_sd[name].items() if not k.startswith(tuple(h + "." for h in AUX[name]))}
    conv = FORMATS[name].convert(sd)
    assert conv.aux is False and conv.num_classes == 19
    create_model(name, 19).load_state_dict(conv.state_dict, strict=True)


@pytest.mark.parametrize("name", list(FORMATS))
def test_missing_bn_counters_are_filled_and_reported(name: str, release_sd) -> None:
    sd = release_sd[name]
    counters = [k for k in sd if k.endswith("num_batches_tracked")]
    conv = FORMATS[name].convert({k: v for k, v in sd.items() if k not in counters})
    assert sorted(conv.dropped[FILLED_NUM_BATCHES]) == sorted(counters)
    assert len(counters) == {"bisenetv1": 36, "bisenetv2": 62}[name]
    assert all(conv.state_dict[k].dtype == torch.long and conv.state_dict[k].dim() == 0 for k in counters)
    create_model(name, 19, aux=True).load_state_dict(conv.state_dict, strict=True)


@pytest.mark.parametrize("name", list(FORMATS))
def test_class_count_is_read_from_the_classifier(name: str) -> None:
    # An 11-class (CamVid) fine-tune has the same layout with 11-row classifiers.
    sd = create_model(name, 11, aux=True).state_dict()
    conv = FORMATS[name].convert(sd)
    assert conv.num_classes == 11 and conv.aux


@pytest.mark.parametrize("name", list(FORMATS))
def test_partial_aux_heads_are_refused(name: str, release_sd) -> None:
    dropped_head = AUX[name][-1]
    sd = {k: v for k, v in release_sd[name].items() if not k.startswith(dropped_head + ".")}
    with pytest.raises(CheckpointError) as e:
        FORMATS[name].convert(sd)
    msg = _one_line(e)
    assert dropped_head in msg and "all or none" in msg


@pytest.mark.parametrize("name", list(FORMATS))
def test_odd_layouts_are_refused_with_the_key(name: str, release_sd) -> None:
    fmt, sd = FORMATS[name], release_sd[name]
    missing_key = next(k for k in sd if k.endswith("bn.running_mean"))  # an inference-path BN
    with pytest.raises(CheckpointError) as e:
        fmt.convert({k: v for k, v in sd.items() if k != missing_key})
    assert missing_key in _one_line(e) and "lacks 1 key" in str(e.value)

    with pytest.raises(CheckpointError) as e:
        fmt.convert({**sd, "extra.weight": torch.zeros(3)})
    assert "extra.weight" in _one_line(e)

    bad = dict(sd)
    first_conv = next(k for k, v in sd.items() if v.dim() == 4)
    bad[first_conv] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointError) as e:
        fmt.convert(bad)
    assert first_conv in _one_line(e) and "wrong shape" in str(e.value)

    with pytest.raises(CheckpointError) as e:
        fmt.convert({k: v for k, v in sd.items() if k != CLASSIFIER[name]})
    assert CLASSIFIER[name] in _one_line(e)
