"""Export a model to ONNX: character ids `(B, T, 50)` in, all output layers `(B, L+1, T, 2P)` out.

The graph is built node by node with `onnx.helper` rather than traced: the LSTMP cell clips its
cell and its projected output, which ONNX's LSTM operator cannot express, and a traced Python loop
would freeze the sentence length. Each LSTM layer is therefore one ONNX `Scan` over time (both
directions side by side, as in `LstmpStack`), and batch and length stay dynamic. The graph is the
stateless model (every sentence from zero state) and computes what `ElmoBiLM.forward` does:
sentence boundaries, the character CNN and highway for every position, the backward direction
read in reverse within each sentence, skip connections, padding and boundaries removed.

Needs the `onnx` extra (`pip install 'elmo-lm[onnx]'`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bilm_types import FORGET_BIAS
from .chars import BOS_IDS, EOS_IDS
from .io.atomic import atomic_path
from .model import ElmoBiLM

OPSET = 18


class _Graph:
    """A growing list of nodes and initializers with fresh names."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "const", dtype=None) -> str:
        from onnx import numpy_helper

        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, outputs: int = 1, **attributes):
        from onnx import helper

        names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attributes))
        return names[0] if outputs == 1 else names


def build_onnx(model: ElmoBiLM):
    """The ONNX model (an `onnx.ModelProto`) of `model`'s stateless forward pass, float32."""
    from onnx import TensorProto, helper

    config = model.config
    P, L = config.projection_dim, config.n_layers
    weights = {key: value.detach().float().cpu().numpy() for key, value in model.state_dict().items()}
    g = _Graph()
    i64 = lambda values: g.const(np.asarray(values, np.int64), "shape")  # noqa: E731

    # Shapes, mask and lengths.
    char_ids = "char_ids"  # (B, T, 50) int64
    shape = g.op("Shape", char_ids)  # [B, T, 50]
    batch = g.op("Slice", shape, i64([0]), i64([1]))  # [B]
    has_chars = g.op("Cast", g.op("Greater", char_ids, i64(0)), to=TensorProto.INT64)  # (B, T, 50)
    mask_int = g.op("ReduceMax", has_chars, i64([-1]), keepdims=0)  # (B, T)
    lengths = g.op("ReduceSum", mask_int, i64([1]), keepdims=0)  # (B,)
    lengths2 = g.op("Add", lengths, i64(2))  # (B,) with <S> and </S>

    # <S> w1 .. wn </S>: a <S> row in front, an empty row behind, then </S> put at position n+1.
    row_shape = g.op("Concat", batch, i64([1, 50]), axis=0)  # [B, 1, 50]
    bos = g.op("Expand", g.const(np.asarray(BOS_IDS, np.int64).reshape(1, 1, 50), "bos"), row_shape)
    empty = g.op("Expand", g.const(np.zeros((1, 1, 50), np.int64), "empty"), row_shape)
    wrapped = g.op("Concat", bos, char_ids, empty, axis=1)  # (B, T+2, 50)
    positions = g.op("Range", i64(0), g.op("Squeeze", g.op("Slice", g.op("Shape", wrapped), i64([1]), i64([2]))),
                     i64(1))  # (T+2,)
    row_positions = g.op("Unsqueeze", positions, i64([0]))  # (1, T+2)
    is_eos = g.op("Equal", row_positions, g.op("Unsqueeze", g.op("Add", lengths, i64(1)), i64([1])))  # (B, T+2)
    eos = g.const(np.asarray(EOS_IDS, np.int64).reshape(1, 1, 50), "eos")
    wrapped = g.op("Where", g.op("Unsqueeze", is_eos, i64([2])), eos, wrapped)  # (B, T+2, 50)

    tokens = _token_encoder(g, weights, config, wrapped)  # (B, T+2, P)

    # The backward direction reads each sentence from its end: reverse within the n+2 positions.
    reversed_index = g.op("Sub", g.op("Sub", g.op("Unsqueeze", lengths2, i64([1])), i64(1)), row_positions)
    reversed_index = g.op("Where", g.op("GreaterOrEqual", reversed_index, i64(0)), reversed_index,
                          g.op("Expand", row_positions, g.op("Shape", reversed_index)))  # (B, T+2)

    def reverse(x: str) -> str:  # (B, T+2, K) -> the same with each row reversed within its length
        index = g.op("Expand", g.op("Unsqueeze", reversed_index, i64([2])), g.op("Shape", x))
        return g.op("GatherElements", x, index, axis=1)

    layer_input = g.op("Concat", g.op("Unsqueeze", tokens, i64([0])), g.op("Unsqueeze", reverse(tokens), i64([0])),
                       axis=0)  # (D, B, T+2, P)
    outputs = []
    for layer in range(L):
        output = _lstmp_layer(g, weights, config, layer, layer_input, batch)  # (D, B, T+2, P)
        if layer > 0 and config.use_skip_connections:
            output = g.op("Add", output, layer_input)
        outputs.append(output)
        layer_input = output

    # Output layers: [token ; token], then [forward_j ; backward_j] in token order.
    stacked = [g.op("Concat", tokens, tokens, axis=-1)]  # (B, T+2, 2P)
    for output in outputs:
        forward = g.op("Gather", output, i64(0), axis=0)  # (B, T+2, P)
        backward = reverse(g.op("Gather", output, i64(1), axis=0))
        stacked.append(g.op("Concat", forward, backward, axis=-1))
    stacked = g.op("Concat", *(g.op("Unsqueeze", s, i64([1])) for s in stacked), axis=1)  # (B, L+1, T+2, 2P)
    inner = g.op("Slice", stacked, i64([1]), i64([-1]), i64([2]))  # (B, L+1, T, 2P): without <S> and </S>
    mask = g.op("Cast", mask_int, to=TensorProto.BOOL, hint="mask")  # (B, T)
    keep = g.op("Unsqueeze", g.op("Cast", mask_int, to=TensorProto.FLOAT), i64([1, 3]))  # (B, 1, T, 1)
    layers = g.op("Mul", inner, keep, hint="layers")  # (B, L+1, T, 2P), zero at padding
    g.nodes.append(helper.make_node("Identity", [layers], ["layers"]))
    g.nodes.append(helper.make_node("Identity", [mask], ["mask"]))

    graph = helper.make_graph(
        g.nodes, "elmo",
        [helper.make_tensor_value_info("char_ids", TensorProto.INT64, ["batch", "tokens", 50])],
        [helper.make_tensor_value_info("layers", TensorProto.FLOAT, ["batch", L + 1, "tokens", 2 * P]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "tokens"])],
        g.initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="elmo-lm")
    onnx_model.ir_version = 8
    return onnx_model


def _token_encoder(g: _Graph, weights: dict, config, wrapped: str) -> str:
    """Character ids `(B, T+2, 50)` -> token vectors `(B, T+2, P)` (CNN, highway, projection)."""
    prefix = "token_encoder."
    i64 = lambda values: g.const(np.asarray(values, np.int64), "shape")  # noqa: E731
    flat = g.op("Reshape", wrapped, i64([-1, 50]))  # (N, 50)
    chars = g.op("Gather", g.const(weights[prefix + "char_embedding.weight"], "char_table"), flat)  # (N, 50, e)
    chars = g.op("Transpose", chars, perm=[0, 2, 1])  # (N, e, 50)
    pooled = []
    for k in range(len(config.filters)):
        conv = g.op("Conv", chars, g.const(weights[f"{prefix}convolutions.{k}.weight"], "conv_w"),
                    g.const(weights[f"{prefix}convolutions.{k}.bias"], "conv_b"))  # (N, n_k, 50-w+1)
        pooled.append(g.op("ReduceMax", conv, i64([2]), keepdims=0))  # (N, n_k)
    x = g.op("Concat", *pooled, axis=1)  # (N, F)
    x = g.op("Relu" if config.activation == "relu" else "Tanh", x)
    for k in range(config.n_highway):
        carry = _linear(g, x, weights[f"{prefix}highway_carry.{k}.weight"], weights[f"{prefix}highway_carry.{k}.bias"])
        gate = g.op("Sigmoid", carry)  # (N, F)
        transform = g.op("Relu", _linear(g, x, weights[f"{prefix}highway_transform.{k}.weight"],
                                         weights[f"{prefix}highway_transform.{k}.bias"]))
        x = g.op("Add", g.op("Mul", gate, transform), g.op("Mul", g.op("Sub", g.const(np.float32(1.0)), gate), x))
    x = _linear(g, x, weights[prefix + "projection.weight"], weights[prefix + "projection.bias"])  # (N, P)
    out_shape = g.op("Concat", g.op("Slice", g.op("Shape", wrapped), i64([0]), i64([2])), i64([-1]), axis=0)
    return g.op("Reshape", x, out_shape, hint="tokens")  # (B, T+2, P)


def _linear(g: _Graph, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
    """`x @ weight.T + bias`, as nn.Linear."""
    return g.op("Add", g.op("MatMul", x, g.const(np.ascontiguousarray(weight.T), "linear_w")), g.const(bias, "bias"))


def _lstmp_layer(g: _Graph, weights: dict, config, layer: int, x: str, batch: str) -> str:
    """One LSTMP layer of both directions over `(D, B, T, P)`: a `Scan` over time, states from zero."""
    from onnx import TensorProto, helper

    P, C = config.projection_dim, config.lstm_dim
    i64 = lambda values: g.const(np.asarray(values, np.int64), "shape")  # noqa: E731
    bias = weights[f"lstm.bias.{layer}"].copy()  # (D, 4C)
    bias[:, 2 * C : 3 * C] += FORGET_BIAS  # the forget gate's +1.0, folded into its bias
    input_weight = g.const(weights[f"lstm.input_weight.{layer}"][:, None], "input_w")  # (D, 1, P, 4C)
    gates = g.op("Add", g.op("MatMul", x, input_weight), g.const(bias[:, None, None], "lstm_b"))  # (D, B, T, 4C)
    gates = g.op("Transpose", gates, perm=[2, 0, 1, 3])  # (T, D, B, 4C): time first, for Scan
    h0 = g.op("ConstantOfShape", g.op("Concat", i64([2]), batch, i64([P]), axis=0),
              value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))  # (D, B, P)
    c0 = g.op("ConstantOfShape", g.op("Concat", i64([2]), batch, i64([C]), axis=0),
              value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))  # (D, B, C)

    # The step, as LstmpStack.step: the body reads the weights from the outer graph by name.
    recurrent = g.const(weights[f"lstm.recurrent_weight.{layer}"], "recurrent_w")  # (D, P, 4C)
    projection = g.const(weights[f"lstm.projection_weight.{layer}"], "projection_w")  # (D, C, P)
    body = _Graph()
    body._count = g._count  # names unique across both graphs
    z = body.op("Add", "step_gates", body.op("MatMul", "h_in", recurrent))  # (D, B, 4C)
    i, j, f, o = body.op("Split", z, axis=-1, num_outputs=4, outputs=4)  # each (D, B, C); order i, j, f, o
    c = body.op("Add", body.op("Mul", body.op("Sigmoid", f), "c_in"),
                body.op("Mul", body.op("Sigmoid", i), body.op("Tanh", j)))  # (D, B, C)
    if config.cell_clip:
        c = body.op("Clip", c, body.const(np.float32(-config.cell_clip)), body.const(np.float32(config.cell_clip)))
    h = body.op("MatMul", body.op("Mul", body.op("Sigmoid", o), body.op("Tanh", c)), projection)  # (D, B, P)
    if config.proj_clip:
        h = body.op("Clip", h, body.const(np.float32(-config.proj_clip)), body.const(np.float32(config.proj_clip)))
    body.nodes += [helper.make_node("Identity", [h], ["h_out"]), helper.make_node("Identity", [c], ["c_out"]),
                   helper.make_node("Identity", [h], ["h_step"])]
    g._count = body._count
    float_value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    step_graph = helper.make_graph(body.nodes, f"lstmp_step_{layer}",
                                   [float_value("h_in"), float_value("c_in"), float_value("step_gates")],
                                   [float_value("h_out"), float_value("c_out"), float_value("h_step")],
                                   body.initializers)
    _, _, steps = g.op("Scan", h0, c0, gates, body=step_graph, num_scan_inputs=1, outputs=3)  # steps (T, D, B, P)
    return g.op("Transpose", steps, perm=[1, 2, 0, 3])  # (D, B, T, P)


def export_onnx(model: ElmoBiLM, path: str | Path) -> Path:
    """Write `model` as ONNX to `path` (atomically) and check the graph; returns the path."""
    import onnx

    onnx_model = build_onnx(model)
    onnx.checker.check_model(onnx_model)
    path = Path(path)
    with atomic_path(path) as temporary:
        onnx.save(onnx_model, str(temporary))
    return path
