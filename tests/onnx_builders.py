"""Tiny ONNX detectors with known outputs, built with the `onnx` helper API, so that every
model family can be run end to end through the real `Detector` without real weights.

Each output is a constant that depends on the image input only through `x * 0` (onnxruntime
then keeps the input and runs a real graph), or, for `score_from_red`, through the mean of one
input channel, which shows the pre-processing the Detector applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

# onnxruntime 1.23 reads IR version 10 and opset 17 without complaint; newer onnx packages
# default to IR versions that older runtimes refuse.
OPSET = 17
IR_VERSION = 10

ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
}


@dataclass(frozen=True)
class Channel0Score:
    """Adds the mean of input channel 0 (over the whole image) at `index` of an output."""

    output: str
    index: tuple[int, ...]


def build_model(
    path: Path,
    outputs: Mapping[str, npt.NDArray[Any]],
    input_shape: Sequence[int | str] = (1, 3, 64, 64),
    metadata: Mapping[str, str] | None = None,
    output_shapes: Mapping[str, Sequence[int | str]] | None = None,
    channel0_score: Channel0Score | None = None,
    input_name: str = "images",
    input_type: int = TensorProto.FLOAT,
) -> Path:
    """Write a model with one float image input and the given constant outputs.

    `output_shapes` overrides the declared shape of an output (e.g. a symbolic axis); the
    values stay those of `outputs`.
    """
    image = input_name
    nodes = []
    if input_type != TensorProto.FLOAT:  # the rest of the graph computes in float32
        image = "image_float"
        nodes.append(helper.make_node("Cast", [input_name], [image], to=TensorProto.FLOAT))
    nodes += [
        helper.make_node("ReduceSum", [image], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    if channel0_score is not None:
        for name, bound in (("slice_start", 0), ("slice_end", 1), ("slice_axis", 1)):
            initializers.append(numpy_helper.from_array(np.array([bound], np.int64), name))
    graph_outputs = []
    for index, (name, value) in enumerate(outputs.items()):
        value = np.asarray(value)
        onnx_type = ONNX_TYPES[value.dtype]
        const = f"const_{index}"
        initializers.append(numpy_helper.from_array(value, const))
        addend = f"nothing_{index}"
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Identity", ["nothing"], [addend]))
        else:
            nodes.append(helper.make_node("Cast", ["nothing"], [addend], to=onnx_type))
        if channel0_score is not None and channel0_score.output == name:
            onehot = np.zeros(value.shape, np.float32)
            onehot[channel0_score.index] = 1.0
            initializers.append(numpy_helper.from_array(onehot, f"onehot_{index}"))
            nodes += _channel0_nodes(image, index, addend)
            addend = f"score_{index}"
        nodes.append(helper.make_node("Add", [const, addend], [name]))
        shape = list(value.shape) if output_shapes is None else output_shapes.get(name, value.shape)
        graph_outputs.append(helper.make_tensor_value_info(name, onnx_type, list(shape)))
    graph = helper.make_graph(
        nodes,
        "synthetic_detector",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
        graph_outputs,
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _channel0_nodes(input_name: str, index: int, addend: str) -> list[onnx.NodeProto]:
    """score_<index> = addend + mean(input[:, 0]) * onehot_<index>."""
    return [
        helper.make_node(
            "Slice",
            [input_name, "slice_start", "slice_end", "slice_axis"],
            [f"channel0_{index}"],
        ),
        helper.make_node("ReduceMean", [f"channel0_{index}"], [f"mean0_{index}"], keepdims=0),
        helper.make_node("Mul", [f"mean0_{index}", f"onehot_{index}"], [f"placed_{index}"]),
        helper.make_node("Add", [addend, f"placed_{index}"], [f"score_{index}"]),
    ]


def ultralytics_metadata(
    names: Sequence[str], imgsz: tuple[int, int] = (64, 64), task: str = "detect"
) -> dict[str, str]:
    """Metadata as Ultralytics exports write it: Python literals as strings."""
    return {
        "description": "Ultralytics YOLOv8n model trained on synthetic.yaml",
        "author": "Ultralytics",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "stride": "32",
        "task": task,
        "batch": "1",
        "imgsz": str(list(imgsz)),
        "names": str(dict(enumerate(names))),
    }
