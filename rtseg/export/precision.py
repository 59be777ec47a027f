"""Mixed-precision FP16 ONNX: the graph a strongly typed TensorRT build parses for ``--precision fp16``.

TensorRT 11 removed the FP16 builder flag; a strongly typed network runs every
layer in the type the graph gives it. So the precision decision is made here,
once, in the ONNX graph, and the same file builds the same engine on TensorRT
10 and 11 (and runs on any ONNX runtime for CPU verification).

What stays FP32 and why:

- graph inputs/outputs keep their types (uint8 frames in, uint8 labels out,
  float32 logits if present), so every backend sees the same I/O;
- the normalisation at the graph start (everything before the first
  convolution): ``(x/255 - mean)/std`` on 0..255 integers loses little in
  FP16, but it is cheap and keeping it exact removes one source of drift;
- numerically sensitive ops (``KEEP_FP32_OPS``): global average pooling and
  ReduceMean accumulate over a whole feature map (sums overflow/round in
  FP16), the attention sigmoids gate whole channels so a small error there
  moves every pixel, softmax/exp-like paths overflow.

Everything else (convolutions, BN, activations, resizes, concats, the final
ArgMax) computes in FP16; ``Cast`` nodes are inserted exactly where a tensor
crosses between an FP16 and an FP32 region.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.precision import Precision
from rtseg.runtime.onnx_file import PRECISION_META_KEY

if TYPE_CHECKING:
    import onnx

#: Op types computed in FP32 even in a mixed-precision graph (see module docstring).
KEEP_FP32_OPS: frozenset[str] = frozenset({
    "GlobalAveragePool", "ReduceMean", "ReduceSum", "ReduceL2", "ReduceLogSumExp",
    "Sigmoid", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
    "InstanceNormalization", "LayerNormalization", "GroupNormalization",
})

#: Op types that may compute in FP16: they have one float type variable shared by
#: their float inputs and outputs. Anything not listed (Cast, Shape, Range,
#: ConstantOfShape, ...) keeps the types the exporter gave it.
FP16_OPS: frozenset[str] = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "Gemm", "MatMul",
    "Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Max", "Min",
    "MaxPool", "AveragePool", "Resize", "Upsample",
    "Concat", "Split", "Slice", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Identity", "Pad", "Gather", "Expand", "Tile", "Where", "ReduceMax", "ArgMax",
})

#: Float inputs that a FP16 op must still receive in FP32 (ONNX types them separately).
_FIXED_FLOAT_INPUTS: dict[str, frozenset[int]] = {
    "Resize": frozenset({1, 2}),  # roi and scales are tensor(float) regardless of X
    "Upsample": frozenset({1}),
}

#: Ops that read only the shape of their input, so any float type will do (no Cast).
_TYPE_AGNOSTIC_OPS = frozenset({"Shape", "Size"})

#: Ops whose presence marks "the network has started" (the end of preprocessing).
_NETWORK_START_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class Fp16Report:
    """What ``convert_to_mixed_fp16`` did, for logs and tests."""

    path: Path
    fp16_nodes: int
    fp32_nodes: int
    casts_inserted: int
    kept_fp32: tuple[str, ...]  # names of float-compute nodes deliberately left in FP32


def _unique(name: str, taken: set[str]) -> str:
    cand, i = name, 0
    while cand in taken:
        i += 1
        cand = f"{name}_{i}"
    taken.add(cand)
    return cand


def _preprocessing_nodes(graph: onnx.GraphProto) -> set[int]:
    """Indices of nodes fed (transitively) by a graph input with no convolution/matmul on the way.

    Nodes fed only by weights/constants (e.g. an Identity on a shared weight)
    are not preprocessing: they follow their consumers' precision.
    """
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            producer[out] = i
    graph_inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    started: dict[int, bool] = {}
    fed: dict[int, bool] = {}
    # ONNX requires nodes in topological order, so one forward pass suffices.
    for i, node in enumerate(graph.node):
        s = node.op_type in _NETWORK_START_OPS
        f = False
        for inp in node.input:
            if inp in graph_inputs:
                f = True
            j = producer.get(inp)
            if j is not None:
                s = s or started[j]
                f = f or fed[j]
        started[i], fed[i] = s, f
    return {i for i in started if fed[i] and not started[i]}


def mixed_fp16_model(
    model: onnx.ModelProto,
    *,
    keep_ops: Iterable[str] = KEEP_FP32_OPS,
    keep_node_names: Iterable[str] = (),
    keep_preprocessing: bool = True,
) -> tuple[onnx.ModelProto, Fp16Report]:
    """Return a mixed-precision copy of ``model`` (FP32 float graph) and a report.

    The copy computes in FP16 except the ops in ``keep_ops``, the nodes named in
    ``keep_node_names`` and (with ``keep_preprocessing``) everything before the
    first convolution. Graph input/output types are unchanged.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    src = model
    if src.functions or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                            for n in src.graph.node for a in n.attribute):
        raise ExportError("FP16 conversion supports flat graphs only (no local functions or If/Loop "
                          "subgraphs); re-export the model with the TorchScript exporter (dynamo=False)")
    for n in src.graph.node:
        if n.domain not in ("", "ai.onnx"):
            raise ExportError(f"FP16 conversion does not know custom op {n.domain}::{n.op_type}; "
                              "export with standard ONNX ops only")
    try:
        inferred = onnx.shape_inference.infer_shapes(src, strict_mode=True)
    except Exception as exc:  # onnx raises several types here
        raise ExportError(f"ONNX shape inference failed before FP16 conversion ({exc}); "
                          "check the file with `python -m onnx.checker`") from None
    m = onnx.ModelProto()
    m.CopyFrom(inferred)
    g = m.graph

    # Element type of every tensor, as exported (FP32 graph).
    dtype: dict[str, int] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        dtype[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        dtype[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    dtype[n.output[0]] = a.t.data_type
    if any(t == TensorProto.FLOAT16 for t in dtype.values()):
        raise ExportError("this ONNX already contains FP16 tensors; convert the FP32 export instead")

    keep_ops = frozenset(keep_ops)
    keep_names = frozenset(keep_node_names)
    pre = _preprocessing_nodes(g) if keep_preprocessing else set()

    # Decide which nodes compute in FP16.
    half_node: list[bool] = []
    kept: list[str] = []
    for i, n in enumerate(g.node):
        floaty = any(dtype.get(x) == FLOAT for x in n.input if x) or any(
            dtype.get(x) == FLOAT for x in n.output)
        is_half = (n.op_type in FP16_OPS and floaty and n.op_type not in keep_ops
                   and n.name not in keep_names and i not in pre)
        if floaty and not is_half and n.op_type not in ("Cast", "Constant", "Shape"):
            kept.append(n.name or n.op_type)
        half_node.append(is_half)

    # Initializers used only by FP16 nodes (as FP16-typed inputs) are stored as FP16.
    uses: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, n in enumerate(g.node):
        for k, x in enumerate(n.input):
            if x:
                uses[x].append((i, k))

    def wants_half(i: int, k: int) -> bool:
        n = g.node[i]
        return half_node[i] and k not in _FIXED_FLOAT_INPUTS.get(n.op_type, frozenset())

    graph_outputs = {o.name for o in g.output}
    new_type: dict[str, int] = dict(dtype)
    for name, t in inits.items():
        if t.data_type == FLOAT and uses[name] and all(wants_half(i, k) for i, k in uses[name]) \
                and name not in graph_outputs:
            arr = numpy_helper.to_array(t).astype("float16")
            t.CopyFrom(numpy_helper.from_array(arr, name))
            new_type[name] = HALF
    for i, n in enumerate(g.node):
        if half_node[i]:
            for o in n.output:
                if dtype.get(o) == FLOAT:
                    new_type[o] = HALF

    taken = {x for n in g.node for x in list(n.input) + list(n.output)} | set(inits) | \
        {i.name for i in g.input}
    cast_cache: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []
    casts = 0

    def cast_to(tensor: str, to: int) -> str:
        nonlocal casts
        key = (tensor, to)
        if key not in cast_cache:
            suffix = "fp16" if to == HALF else "fp32"
            out = _unique(f"{tensor}__{suffix}", taken)
            new_nodes.append(helper.make_node("Cast", [tensor], [out], to=to,
                                              name=_unique(f"rtseg_cast_{suffix}_{len(cast_cache)}", taken)))
            cast_cache[key] = out
            casts += 1
        return cast_cache[key]

    # Graph outputs produced in FP16 keep their FP32 type: the node writes to a
    # renamed tensor and a Cast restores the output's original name.
    renamed: dict[str, str] = {}
    for o in graph_outputs:
        if new_type.get(o) == HALF:
            renamed[o] = _unique(f"{o}__fp16", taken)
            new_type[renamed[o]] = HALF

    for i, n in enumerate(g.node):
        for k, x in enumerate(n.input):
            if not x:
                continue
            x = renamed.get(x, x)
            n.input[k] = x
            have = new_type.get(x)
            if have not in (FLOAT, HALF) or n.op_type in _TYPE_AGNOSTIC_OPS:
                continue
            want = HALF if wants_half(i, k) else FLOAT
            if have != want:
                n.input[k] = cast_to(x, want)
        for k, o in enumerate(n.output):
            if o in renamed:
                n.output[k] = renamed[o]
        new_nodes.append(n)
        for o in n.output:
            if o in renamed.values():
                orig = next(a for a, b in renamed.items() if b == o)
                new_nodes.append(helper.make_node("Cast", [o], [orig], to=FLOAT,
                                                  name=_unique(f"rtseg_cast_out_{orig}", taken)))
                casts += 1

    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]  # stale types; re-inferred below
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m)
    except Exception as exc:
        raise ExportError(f"the mixed-precision graph failed ONNX validation ({exc}); "
                          "this is a bug in rtseg's FP16 conversion, please report it with the model name") from None
    _set_meta(m, PRECISION_META_KEY, str(Precision.FP16))
    report = Fp16Report(Path(), sum(half_node), len(half_node) - sum(half_node), casts, tuple(kept))
    return m, report


def _set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
            return
    p = model.metadata_props.add()
    p.key, p.value = key, value


def convert_to_mixed_fp16(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    **kwargs: object,
) -> Fp16Report:
    """File in, file out: write the mixed-precision FP16 version of an FP32 ONNX atomically.

    Keyword arguments are those of :func:`mixed_fp16_model`. The ``rtseg.meta``
    metadata is kept; ``rtseg.precision`` is set to ``fp16``.
    """
    import onnx

    src = Path(onnx_path)
    if not src.is_file():
        raise UserInputError(f"ONNX file {src} not found; export one first with `rtseg-export --format onnx`")
    model = onnx.load(str(src))
    converted, report = mixed_fp16_model(model, **kwargs)  # type: ignore[arg-type]
    out = Path(out_path)
    with atomic_path(out) as tmp:
        onnx.save(converted, str(tmp))
    return Fp16Report(out, report.fp16_nodes, report.fp32_nodes, report.casts_inserted, report.kept_fp32)


def read_precision(model: onnx.ModelProto) -> Precision:
    """``fp16`` (mixed), ``int8`` (Q/DQ) or ``f32`` (the default when no key is set)."""
    for p in model.metadata_props:
        if p.key == PRECISION_META_KEY:
            return Precision.parse(p.value)
    return Precision.F32
