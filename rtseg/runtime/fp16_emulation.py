"""FP16 rounding emulation of a mixed-precision graph, for CPUs without FP16 arithmetic.

The FP16 check of ``rtseg-bench --parity fp16`` runs the mixed-precision ONNX
with true FP16 arithmetic where a CPU has it (OpenVINO on AVX512-FP16 or
AMX-FP16). Most CPUs, and many CI runners, do not; ONNX Runtime would then
quietly insert its own casts and compute nearly everything in FP32, which
checks almost nothing.

This module builds the next best thing, stated as such wherever it is used:
an FP32 graph in which every tensor the mixed graph stores in FP16 is rounded
to FP16 (``Cast`` to FP16 and back) right after the op that produces it, and
every FP16 weight keeps its FP16 value. Each op's own arithmetic then runs in
FP32 (like the FP32 accumulation of GPU FP16 convolution kernels), but every
value between ops has FP16's precision and range, so lost precision, overflow
to Inf (beyond 65504) and NaN show up as they would on the device.

Run the result with graph optimisations disabled (``fp16_emulation_runner`` in
``rtseg.benchmark.parity`` does) so that no optimiser folds the cast pairs away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtseg.core.errors import ExportError

if TYPE_CHECKING:
    import onnx


def emulate_fp16_rounding(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an FP32 copy of a mixed-precision ``model`` that rounds every FP16 tensor.

    Raises :class:`ExportError` when ``model`` has no FP16 tensors (nothing to emulate).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dtype: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type
                             for vi in list(inferred.graph.input) + list(inferred.graph.output)
                             + list(inferred.graph.value_info)}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    half_inits = 0
    for t in g.initializer:
        if t.data_type == HALF:
            # float16 -> float32 is exact: the weights keep their FP16 values.
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype("float32"), t.name))
            half_inits += 1
    taken = {x for n in g.node for x in list(n.input) + list(n.output)} | {t.name for t in g.initializer}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    nodes: list[onnx.NodeProto] = []
    rounded = 0
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == HALF:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype("float32"), a.t.name))
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == HALF:
                    a.i = FLOAT  # the rounding pair below stands in for the conversion
        half_outputs = [k for k, o in enumerate(n.output) if o and dtype.get(o) == HALF]
        renames: list[tuple[str, str]] = []
        for k in half_outputs:
            orig = n.output[k]
            raw = fresh(f"{orig}__f32")
            n.output[k] = raw
            renames.append((raw, orig))
        nodes.append(n)
        for raw, orig in renames:
            h = fresh(f"{orig}__rounded_fp16")
            nodes.append(helper.make_node("Cast", [raw], [h], to=HALF, name=fresh(f"rtseg_round16_{orig}")))
            nodes.append(helper.make_node("Cast", [h], [orig], to=FLOAT, name=fresh(f"rtseg_back32_{orig}")))
            rounded += 1
    if not rounded and not half_inits:
        raise ExportError("this ONNX has no FP16 tensors to emulate; pass the mixed-precision FP16 file "
                          "(rtseg-export --precision fp16)")
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m)
    except Exception as exc:  # onnx raises several types here
        raise ExportError(f"the FP16 emulation graph failed ONNX validation ({exc}); "
                          "this is a bug in rtseg, please report it with the model name") from None
    return m
