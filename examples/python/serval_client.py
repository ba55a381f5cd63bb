#!/usr/bin/env python3
"""Serval from Python: train a model, score rows with it, list the registry.

Stubs are generated from ../../proto at start-up with grpcio-tools into a
temporary directory, so nothing generated is ever committed. Copy this file,
point PROTO_DIR at your checkout of proto/, and call the RPCs the same way.

Env: SERVAL_SERVER (default 127.0.0.1:50051), the server's host:port.
"""

import csv
import importlib
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"
DATA_CSV = REPO_ROOT / "examples" / "data" / "online_shoppers_intention.csv"

MODEL = "shoppers_py"
CHUNK_BYTES = 256 * 1024  # Train streams the CSV in chunks; any size works.
MIN_AUC = 0.85


def generate_stubs():
    """Runs protoc on serval.proto and imports the generated modules."""
    # grpcio-tools ships the well-known types (google/protobuf/timestamp.proto).
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="serval-stubs-") as out:
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "serval/v1/serval.proto",
        ])
        if rc != 0:
            sys.exit(f"FAIL: protoc exited with {rc}")
        # The generated code imports itself as serval.v1.serval_pb2; once
        # imported, the modules live in memory and the directory can go.
        sys.path.insert(0, out)
        try:
            pb2 = importlib.import_module("serval.v1.serval_pb2")
            pb2_grpc = importlib.import_module("serval.v1.serval_pb2_grpc")
        finally:
            sys.path.remove(out)
    return pb2, pb2_grpc


pb, pb_grpc = generate_stubs()


def fail(message):
    sys.exit(f"FAIL: {message}")


def train(stub):
    """Streams the spec, then the CSV in chunks; prints the events as they come."""

    def requests():
        yield pb.TrainRequest(spec=pb.TrainSpec(
            model=MODEL,
            label_column="Revenue",
            positive_label="TRUE",
            hyper_parameters=pb.HyperParameters(epochs=2),  # quick; default 10
        ))
        with open(DATA_CSV, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield pb.TrainRequest(csv_chunk=chunk)

    completed = None
    for event in stub.Train(requests(), timeout=600):
        kind = event.WhichOneof("event")
        if kind == "accepted":
            a = event.accepted
            print(f"accepted: {a.dataset.rows} rows ({a.dataset.train_rows} train, "
                  f"{a.dataset.validation_rows} validation), input width {a.input_width}, "
                  f"{a.epochs} epochs")
        elif kind == "epoch":
            e = event.epoch
            print(f"epoch {e.epoch}/{e.epochs}: train_loss {e.train_loss:.4f}, "
                  f"validation_auc {e.validation_auc:.4f}")
        elif kind == "completed":
            completed = event.completed
            print(f"completed: {completed.model} v{completed.version}, "
                  f"auc {completed.metrics.auc:.4f}")

    if completed is None:
        fail("Train stream ended without a completed version")
    if completed.metrics.auc < MIN_AUC:
        fail(f"validation AUC {completed.metrics.auc:.4f} is below {MIN_AUC}")
    return completed.version


def check_scores(response, expected):
    if len(response.scores) != expected:
        fail(f"expected {expected} scores, got {len(response.scores)}")
    for score in response.scores:
        if not 0.0 <= score <= 1.0:
            fail(f"score {score} is outside [0, 1]")


def predict(stub, version):
    # Rows as columns, the fast form for many rows: each column named once,
    # then one value per row, as the CSV spells it. The server parses each
    # value per the model's schema and ignores columns it does not use (the
    # label).
    with open(DATA_CSV, newline="", encoding="utf-8-sig") as f:
        rows = [row for _, row in zip(range(5), csv.DictReader(f))]
    columns = [
        pb.Column(name=name, strings=[row[name] for row in rows])
        for name in rows[0]
    ]
    response = stub.Predict(pb.PredictRequest(model=MODEL, columns=columns), timeout=30)
    check_scores(response, len(rows))
    print(f"predict (text columns): v{response.version} "
          f"({pb.Arm.Name(response.arm)}) scores {[round(s, 4) for s in response.scores]}")

    # Typed columns: numbers, strings and bools, with a missing value
    # (imputed as a blank CSV field would be) marked by its row.
    typed_columns = [
        pb.Column(name="PageValues", numbers=[40, 0], missing=[1]),
        pb.Column(name="ExitRates", numbers=[0.02, 0.2]),
        pb.Column(name="BounceRates", numbers=[0.01, 0.2]),
        pb.Column(name="Month", strings=["Nov", "Feb"]),
        pb.Column(name="Weekend", bools=[False, True]),
        pb.Column(name="VisitorType", strings=["Returning_Visitor", "New_Visitor"]),
        pb.Column(name="ProductRelated", numbers=[20, 1]),
        pb.Column(name="ProductRelated_Duration", numbers=[600, 0]),
    ] + [
        pb.Column(name=name, numbers=[0, 0])
        for name in ["Administrative", "Administrative_Duration", "Informational",
                     "Informational_Duration", "SpecialDay"]
    ] + [
        pb.Column(name=name, numbers=[2, 1])
        for name in ["OperatingSystems", "Browser", "TrafficType"]
    ] + [pb.Column(name="Region", numbers=[1, 3])]
    response = stub.Predict(
        pb.PredictRequest(model=MODEL, version=version, columns=typed_columns), timeout=30)
    check_scores(response, 2)
    print(f"predict (typed columns): v{response.version} "
          f"scores {[round(s, 4) for s in response.scores]}")
    first_row_score = response.scores[0]

    # Records, the convenient form: one map per row, typed values; pin the
    # version we trained.
    typed = pb.Record(fields={
        "Administrative": pb.Value(number_value=0),
        "Administrative_Duration": pb.Value(number_value=0),
        "Informational": pb.Value(number_value=0),
        "Informational_Duration": pb.Value(number_value=0),
        "ProductRelated": pb.Value(number_value=20),
        "ProductRelated_Duration": pb.Value(number_value=600),
        "BounceRates": pb.Value(number_value=0.01),
        "ExitRates": pb.Value(number_value=0.02),
        "PageValues": pb.Value(number_value=40),
        "SpecialDay": pb.Value(number_value=0),
        "Month": pb.Value(string_value="Nov"),
        "OperatingSystems": pb.Value(number_value=2),
        "Browser": pb.Value(number_value=2),
        "Region": pb.Value(number_value=1),
        "TrafficType": pb.Value(number_value=2),
        "VisitorType": pb.Value(string_value="Returning_Visitor"),
        "Weekend": pb.Value(bool_value=False),
    })
    response = stub.Predict(
        pb.PredictRequest(model=MODEL, version=version, records=[typed]), timeout=30)
    check_scores(response, 1)
    if response.version != version:
        fail(f"asked for v{version}, v{response.version} answered")
    print(f"predict (typed record): v{response.version} "
          f"({pb.Arm.Name(response.arm)}) score {response.scores[0]:.4f}")
    # The record is the typed columns' first row: the same score.
    if abs(response.scores[0] - first_row_score) > 1e-5:
        fail(f"the record scored {response.scores[0]}, the same row as columns {first_row_score}")


def list_models(stub, version):
    response = stub.ListModels(pb.ListModelsRequest(), timeout=30)
    for model in response.models:
        print(f"model {model.name}:")
        for v in model.versions:
            print(f"  v{v.version}  created {v.created_at.ToJsonString()}  "
                  f"rows {v.dataset.rows}  auc {v.metrics.auc:.4f}")
    ours = next((m for m in response.models if m.name == MODEL), None)
    if ours is None:
        fail(f"model {MODEL} is missing from ListModels")
    if version not in [v.version for v in ours.versions]:
        fail(f"{MODEL} v{version} is missing from ListModels")


def main():
    address = os.environ.get("SERVAL_SERVER", "127.0.0.1:50051")
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ModelServiceStub(channel)
        try:
            version = train(stub)
            predict(stub, version)
            list_models(stub, version)
        except grpc.RpcError as e:
            fail(f"{e.code().name} from {address}: {e.details()}")
    print("OK")


if __name__ == "__main__":
    main()
