"""CRF refinement: the bounded-window mean-field approximation against an exact dense CRF
(brute force over every pixel pair on tiny images), the unary argmax at zero pairwise weight,
the option syntax, and the refined deploy graph on ONNX Runtime/OpenVINO with its metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from rtseg.core.errors import UserInputError
from rtseg.models.crf import ONNX_REFINE_KEY, CRFParams, MeanFieldCRF, dense_crf_reference, parse_refine


def _scene(h: int, w: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Piecewise-constant colour regions with noisy logits that mostly agree with them."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    region = ((ys * 3 // h) * 2 + (xs * 2 // w)) % c
    palette = torch.rand(c, 3, generator=g) * 255
    rgb = (palette[region].permute(2, 0, 1) + 8 * torch.randn(3, h, w, generator=g)).clamp(0, 255)[None]
    logits = 2.0 * torch.nn.functional.one_hot(region, c).permute(2, 0, 1).float()[None]
    logits = logits + 1.5 * torch.randn(1, c, h, w, generator=g)
    return logits, rgb


def test_window_covering_the_image_is_the_exact_dense_crf():
    logits, rgb = _scene(12, 16, 4, seed=0)
    params = CRFParams(iterations=5, window=31, downsample=1, w_bilateral=2.0, theta_alpha=6.0, theta_beta=30.0,
                       w_gaussian=1.0, theta_gamma=2.0)
    approx = MeanFieldCRF(params)(logits, rgb)
    exact = dense_crf_reference(logits, rgb, params)
    torch.testing.assert_close(approx, exact, atol=1e-4, rtol=1e-4)
    assert torch.equal(approx.argmax(1), exact.argmax(1))
    # ...and the CRF did something: it changed labels and made them agree more with the regions.
    assert not torch.equal(exact.argmax(1), logits.argmax(1))


def test_bounded_window_agrees_with_the_exact_crf_on_small_images():
    # Kernels narrow enough that the 7x7 window holds nearly all their mass.
    logits, rgb = _scene(24, 32, 4, seed=1)
    params = CRFParams(iterations=5, window=7, downsample=1, w_bilateral=2.0, theta_alpha=1.5, theta_beta=30.0,
                       w_gaussian=1.0, theta_gamma=1.0)
    approx = MeanFieldCRF(params)(logits, rgb).argmax(1)
    exact = dense_crf_reference(logits, rgb, params).argmax(1)
    assert (approx == exact).float().mean() >= 0.99


def test_coarse_grid_messages_stay_close_to_the_exact_crf():
    """downsample=2 (messages on a 2x coarser grid) against the exact CRF with the same kernels."""
    logits, rgb = _scene(32, 40, 3, seed=2)
    params = CRFParams(iterations=3, window=9, downsample=2, w_bilateral=0.5, theta_alpha=3.0, theta_beta=40.0,
                       w_gaussian=0.2, theta_gamma=2.0)
    approx = MeanFieldCRF(params)(logits, rgb).argmax(1)
    exact = dense_crf_reference(logits, rgb, params).argmax(1)
    unary = logits.argmax(1)
    agreement = (approx == exact).float().mean()
    assert agreement >= 0.95 and agreement > (unary == exact).float().mean()


@pytest.mark.parametrize("params", [CRFParams(w_bilateral=0.0, w_gaussian=0.0), CRFParams(iterations=0)])
def test_zero_pairwise_weight_returns_the_unary_argmax(params):
    logits, rgb = _scene(24, 32, 5, seed=3)
    out = MeanFieldCRF(params)(logits, rgb)
    assert torch.equal(out.argmax(1), logits.argmax(1))
    exact = dense_crf_reference(logits, rgb, params)
    assert torch.equal(exact.argmax(1), logits.argmax(1))


def test_refine_option_syntax():
    assert parse_refine(None) is None and parse_refine("none") is None
    assert parse_refine("crf") == CRFParams()
    assert parse_refine("crf:10").iterations == 10
    p = parse_refine("crf:2,w_bilateral=3,theta_beta=13,window=5")
    assert (p.iterations, p.w_bilateral, p.theta_beta, p.window) == (2, 3.0, 13.0, 5)
    assert CRFParams.from_dict(p.to_dict()) == p
    for bad in ("dense", "crf:x", "crf:5,foo=1", "crf,window=4", "crf,downsample=3", "crf,theta_alpha=0",
                "crf,w_bilateral=abc"):
        with pytest.raises(UserInputError) as e:
            parse_refine(bad)
        assert "\n" not in str(e.value)


def test_refined_deploy_graph_exports_runs_everywhere_and_records_its_parameters(tmp_path):
    import openvino as ov

    from rtseg.export.onnx_export import export_onnx, read_onnx_meta, verification_frames
    from rtseg.models.deploy import DeployGraph, load_for_deploy

    loaded = load_for_deploy("bisenetv2", 11, None)
    params = CRFParams(iterations=3)
    size = (64, 96)
    res = export_onnx(loaded.model, loaded.meta, input_size=size, path=tmp_path / "crf.onnx", refine=params)
    meta = read_onnx_meta(res.path)
    assert meta.extra["refine"] == params.to_dict()
    props = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert json.loads(props[ONNX_REFINE_KEY]) == params.to_dict()
    graph = DeployGraph(loaded.model, loaded.meta, refine=params).eval()
    plain = DeployGraph(loaded.model, loaded.meta).eval()
    compiled = ov.Core().compile_model(str(res.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    frames = verification_frames(2, *size)
    changed = 0
    for f in frames:
        with torch.no_grad():
            ref = graph(torch.from_numpy(f[None].copy())).numpy()
            changed += int((plain(torch.from_numpy(f[None].copy())).numpy() != ref).sum())
        got = compiled(f[None])[0]
        assert (got == ref).mean() >= 0.9999
    assert res.agreement >= 0.9999  # ONNX Runtime, checked by the export itself
    assert changed > 0  # the refinement is really in the graph


def test_cli_export_and_eval_with_refine(tmp_path, capsys):
    from rtseg.cli.eval import main as eval_main
    from rtseg.cli.export import main as export_main
    from rtseg.core.meta import ModelMeta
    from rtseg.data.synth import write_synthetic_dataset
    from rtseg.models import create_model
    from rtseg.models.checkpoint import save_checkpoint

    out = tmp_path / "m_crf.onnx"
    assert export_main(["--model", "bisenetv2", "--num-classes", "4", "--input-size", "64x64", "--refine",
                        "crf:2,window=5", "-o", str(out)]) == 0
    assert "refinement: CRF (2 mean-field iterations, 5x5 window" in capsys.readouterr().out
    assert export_main(["--model", "bisenetv2", "--input-size", "64x64", "--refine", "crf:x",
                        "-o", str(tmp_path / "bad.onnx")]) != 0
    assert "crf:ITERS" in capsys.readouterr().err and not (tmp_path / "bad.onnx").exists()

    data = write_synthetic_dataset(tmp_path / "ds", splits={"val": 2}, size=(64, 64), num_classes=4)
    torch.manual_seed(0)
    model = create_model("bisenetv2", 4).eval()
    from rtseg.data.datasets import open_dataset

    info = open_dataset(data, "val").info
    meta = ModelMeta("bisenetv2", info.class_names, info.palette, model.input_mean, model.input_std,
                     input_size=(64, 64), weights="random (test)")
    ckpt = save_checkpoint(tmp_path / "m.pt", model, meta)
    js = tmp_path / "r.json"
    assert eval_main([str(ckpt), "--data", str(data), "--refine", "crf:2", "--json", str(js), "--threads", "1"]) == 0
    assert "refined by CRF (2 mean-field iterations" in capsys.readouterr().out
    assert json.loads(js.read_text())["refine"]["iterations"] == 2
    assert eval_main([str(out), "--data", str(data), "--refine", "crf"]) != 0
    assert "rtseg-export --refine" in capsys.readouterr().err
    assert np.isfinite(json.loads(js.read_text())["miou"])
