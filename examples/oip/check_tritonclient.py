#!/usr/bin/env python3
"""Serval's Open Inference Protocol, checked with tritonclient over HTTP
(tritonclient.http) and over gRPC (tritonclient.grpc).

Against a running server that holds model "small" (trained by
run_against_server.sh from small.csv), with the rows in rows.csv and the
server's own Predict answer for them (`serval predict --json`) in
expected.json:

- the server is live and ready; its metadata names it;
- the model's metadata lists its original columns with their datatypes;
- infer with one InferInput per column (BYTES from a numpy object array,
  FP32, BOOL) gives the probabilities and labels of Predict, to 1e-6;
- infer with one dense FP32 tensor of shape [N, input_width] answers, and
  agrees with the same rows sent as plain JSON;
- an unknown model raises InferenceServerException.

Then the same over gRPC, on the port of serval.v1.ModelService:

- live, ready, server and model metadata;
- infer by column (BYTES numpy object array, FP32, BOOL; tritonclient sends
  them as raw_input_contents) gives Predict's probabilities and labels, to
  1e-6, and the dense tensor gives the HTTP answer's, to 1e-6;
- parameters: explain adds one attribution output per column, the
  response names the answering version and its arm;
- an unknown model raises InferenceServerException (NOT_FOUND).

Usage: check_tritonclient.py HTTP_HOST:PORT WORK_DIR [GRPC_HOST:PORT]
"""

import csv
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "small"
TOLERANCE = 1e-6


def fail(message):
    sys.exit(f"FAIL: {message}")


def check(condition, message):
    if not condition:
        fail(message)


def requested_outputs():
    # JSON answers: Serval does not implement the binary tensor extension.
    return [
        httpclient.InferRequestedOutput("probability", binary_data=False),
        httpclient.InferRequestedOutput("label", binary_data=False),
    ]


def column_arrays(rows):
    x = np.array([float(r["x"]) for r in rows], dtype=np.float32)
    colour = np.array([r["colour"] for r in rows], dtype=np.object_)
    member = np.array([r["member"] == "yes" for r in rows], dtype=np.bool_)
    return [("x", x, "FP32"), ("colour", colour, "BYTES"), ("member", member, "BOOL")]


def check_grpc(url, rows, expected, dense, dense_by_http):
    """The same checks with tritonclient.grpc against the gRPC port."""
    client = grpcclient.InferenceServerClient(url=url)
    check(client.is_server_live(), "gRPC: server not live")
    check(client.is_server_ready(), "gRPC: server not ready")
    server = client.get_server_metadata(as_json=True)
    check(server["name"] == "serval", f"gRPC server metadata: {server}")
    check(client.is_model_ready(MODEL), "gRPC: model not ready")
    check(not client.is_model_ready("no-such-model"), "gRPC: an unknown model is ready")

    metadata = client.get_model_metadata(MODEL, as_json=True)
    datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    expected_types = {"x": "FP32", "colour": "BYTES", "member": "BOOL"}
    check(datatypes == expected_types, f"gRPC inputs {datatypes}, expected {expected_types}")
    outputs = [(o["name"], o["datatype"]) for o in metadata["outputs"]]
    check(outputs == [("probability", "FP32"), ("label", "INT32")], f"gRPC outputs {outputs}")
    print(f"gRPC metadata: versions {metadata['versions']}, inputs {datatypes}")

    n = len(rows)
    inputs = []
    for name, values, datatype in column_arrays(rows):
        tensor = grpcclient.InferInput(name, [n], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    result = client.infer(MODEL, inputs, request_id="tritonclient-grpc-columns")
    probability = result.as_numpy("probability")
    label = result.as_numpy("label")
    check(probability.shape == (n,), f"gRPC probability shape {probability.shape}")
    worst = float(np.max(np.abs(probability.astype(np.float64) - np.array(expected["scores"]))))
    check(worst <= TOLERANCE, f"gRPC: probabilities differ from Predict's by up to {worst}")
    check(
        label.tolist() == [int(b) for b in expected["labels"]],
        f"gRPC labels {label.tolist()} vs Predict's {expected['labels']}",
    )
    answer = result.get_response(as_json=True)
    check(answer["model_version"] == str(expected["version"]), f"gRPC answered by {answer['model_version']}")
    check(answer["id"] == "tritonclient-grpc-columns", f"gRPC id {answer.get('id')}")
    arm = answer["parameters"]["arm"]["string_param"]
    check(arm == "latest", f"gRPC arm {arm}")
    print(f"gRPC columns: {n} rows, probabilities equal to Predict's (largest difference {worst:.1e})")

    explained = client.infer(MODEL, inputs, parameters={"explain": True})
    for column in ("x", "colour", "member"):
        attribution = explained.as_numpy(f"attribution/{column}")
        check(attribution is not None and attribution.shape == (n,), f"gRPC attribution/{column}")
    print("gRPC explain: one attribution output per column")

    width = dense.shape[1]
    tensor = grpcclient.InferInput("input", [n, width], "FP32")
    tensor.set_data_from_numpy(dense)
    by_grpc = client.infer(MODEL, [tensor]).as_numpy("probability")
    worst = float(np.max(np.abs(by_grpc.astype(np.float64) - np.array(dense_by_http))))
    check(worst <= TOLERANCE, f"gRPC dense: differs from the HTTP answer by up to {worst}")
    print(f"gRPC dense: {n} rows of width {width} answered as over HTTP")

    try:
        client.infer("no-such-model", inputs)
    except InferenceServerException as error:
        check("no-such-model" in str(error), f"gRPC unknown model: {error}")
        check("NOT_FOUND" in str(error.status()), f"gRPC unknown model status: {error.status()}")
        print(f"gRPC unknown model: InferenceServerException ({error.status()}): {error.message()}")
    else:
        fail("gRPC: an unknown model was answered")

    print("OK: tritonclient.grpc against Serval's Open Inference Protocol service")


def main():
    url, work = sys.argv[1], Path(sys.argv[2])
    grpc_url = sys.argv[3] if len(sys.argv) > 3 else None
    client = httpclient.InferenceServerClient(url=url)

    check(client.is_server_live(), "server not live")
    check(client.is_server_ready(), "server not ready")
    server = client.get_server_metadata()
    check(server["name"] == "serval", f"server metadata: {server}")
    check(client.is_model_ready(MODEL), "model not ready")

    metadata = client.get_model_metadata(MODEL)
    datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    expected_types = {"x": "FP32", "colour": "BYTES", "member": "BOOL"}
    check(datatypes == expected_types, f"inputs {datatypes}, expected {expected_types}")
    outputs = [(o["name"], o["datatype"]) for o in metadata["outputs"]]
    check(outputs == [("probability", "FP32"), ("label", "INT32")], f"outputs {outputs}")
    width = int(metadata["parameters"]["input_width"])
    print(f"metadata: versions {metadata['versions']}, inputs {datatypes}, input width {width}")

    with open(work / "rows.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = json.loads((work / "expected.json").read_text())
    n = len(rows)

    # One input per column.
    inputs = []
    for name, values, datatype in column_arrays(rows):
        tensor = httpclient.InferInput(name, [n], datatype)
        tensor.set_data_from_numpy(values, binary_data=False)
        inputs.append(tensor)
    result = client.infer(MODEL, inputs, outputs=requested_outputs(), request_id="tritonclient-columns")
    probability = result.as_numpy("probability")
    label = result.as_numpy("label")
    check(probability.shape == (n,), f"probability shape {probability.shape}")
    worst = float(np.max(np.abs(probability.astype(np.float64) - np.array(expected["scores"]))))
    check(worst <= TOLERANCE, f"probabilities differ from Predict's by up to {worst}")
    check(
        label.tolist() == [int(b) for b in expected["labels"]],
        f"labels {label.tolist()} vs Predict's {expected['labels']}",
    )
    answer = result.get_response()
    check(answer["model_version"] == str(expected["version"]), f"answered by {answer['model_version']}")
    check(answer["id"] == "tritonclient-columns", f"id {answer.get('id')}")
    print(f"columns: {n} rows, probabilities equal to Predict's (largest difference {worst:.1e})")

    # One dense FP32 tensor of encoded rows.
    rng = np.random.default_rng(7)
    dense = rng.normal(size=(n, width)).astype(np.float32)
    tensor = httpclient.InferInput("input", [n, width], "FP32")
    tensor.set_data_from_numpy(dense, binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=requested_outputs())
    by_client = result.as_numpy("probability")
    check(by_client.shape == (n,), f"dense probability shape {by_client.shape}")
    check(bool(np.all((by_client >= 0) & (by_client <= 1))), f"dense probabilities {by_client}")
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, width],
                                   "data": dense.tolist()}]}).encode()
    plain = urllib.request.Request(f"http://{url}/v2/models/{MODEL}/infer", data=body, method="POST")
    with urllib.request.urlopen(plain) as reply:
        by_json = json.load(reply)["outputs"][0]["data"]
    worst = float(np.max(np.abs(by_client.astype(np.float64) - np.array(by_json))))
    check(worst <= TOLERANCE, f"dense: tritonclient and plain JSON differ by up to {worst}")
    print(f"dense: {n} rows of width {width} answered alike by tritonclient and plain JSON")

    try:
        client.infer("no-such-model", inputs, outputs=requested_outputs())
    except InferenceServerException as error:
        check("no-such-model" in str(error), f"unknown model: {error}")
        print(f"unknown model: InferenceServerException ({error.status()}): {error.message()}")
    else:
        fail("an unknown model was answered")

    print("OK: tritonclient.http against Serval's Open Inference Protocol endpoint")

    if grpc_url is not None:
        check_grpc(grpc_url, rows, expected, dense, by_json)


if __name__ == "__main__":
    main()
