#!/usr/bin/env python3
"""Held-out quality of Serval against LightGBM, CatBoost and logistic regression.

For each example dataset this script

1. splits the rows 80/20, stratified by the label, with
   ``sklearn.model_selection.train_test_split(..., stratify=y,
   random_state=SEED)`` (SEED = 42 unless ``--split-seeds`` says otherwise),
   and writes both parts as CSV files with the original columns and the
   original cell text (``OUT/seed{SEED}/{name}.train.csv`` and
   ``{name}.test.csv``), so that any trainer can be run on exactly these rows;
2. fits three references on the 80 % with their library defaults:
   - LightGBM ``LGBMClassifier()`` (text columns as pandas ``category``:
     LightGBM's native categorical splits),
   - CatBoost ``CatBoostClassifier()`` (text columns passed as
     ``cat_features``: CatBoost's native ordered target statistics),
   - logistic regression (numeric: median impute + standardise; text: one-hot,
     unseen values ignored; ``LogisticRegression(max_iter=5000)``);
3. reports for each on the 20 % test rows, which choose nothing:
   - **test AUC**: ROC AUC of the model fitted on the whole 80 %;
   - **test F1**: the protocol Serval itself uses. The 80 % is split again,
     stratified, 80/20 (``random_state=SEED``): the model is fitted on the
     64 %, the threshold that maximises F1 on the 16 % validation rows is
     chosen (a row is positive when its score >= the threshold), and F1 of
     that model at that threshold is measured on the test rows. (Fitting on
     64 % rather than 80 % is what Serval does too, so the F1 columns compare
     like with like; the AUC of that 64 % model is reported as well.)
4. with ``--serval-bin DIR`` (a folder holding ``serval`` and
   ``serval-server``), starts ``serval-server`` on a scratch SQLite registry,
   runs ``serval train`` with default options on the 80 % file (timed: wall
   time of the whole command, as a user sees it), then ``serval predict
   --json`` on the test file, and reports Serval's test AUC and its test F1
   at the threshold it stored. Serval learns from the whole 80 %: its
   members are cross-fitted inside it, and the threshold is chosen on their
   out-of-fold scores, so it never sees the test rows either.

Column types for the references: the CSV is read as text; a column is numeric
when at least 95 % of its non-blank cells parse as finite numbers (Serval's
rule; e.g. Telco's ``TotalCharges`` with 11 blanks is numeric), blanks and
unparsable cells become NaN (LightGBM and CatBoost handle NaN natively);
every other column is a text (categorical) column, blanks being a category of
their own (the empty string). The label is positive when its cell equals the
positive token exactly (after trimming).

Prints a markdown table per split seed to stdout (progress goes to stderr).

    python scripts/bench-quality.py [--out DIR] [--serval-bin target/release]
                                    [--split-seeds 42,1,2] [--skip-catboost]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

REPO = Path(__file__).resolve().parent.parent

# name, file, label, positive token, columns to drop
DATASETS = [
    ("shoppers", "online_shoppers_intention.csv", "Revenue", "TRUE", []),
    ("churn", "Telco-Customer-Churn.csv", "Churn", "Yes", ["customerID"]),
    ("coupon", "in-vehicle-coupon-recommendation.csv", "Y", "1", []),
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def read_text(path: Path) -> pd.DataFrame:
    """Every cell as its original text; blanks stay empty strings."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def typed_features(raw: pd.DataFrame, label: str, drop: list[str]):
    """Feature frame with numeric columns as float64 and the others as text,
    plus the list of text (categorical) column names."""
    features = {}
    text_columns = []
    for name in raw.columns:
        if name == label or name in drop:
            continue
        cells = raw[name].str.strip()
        present = cells[cells != ""]
        numbers = pd.to_numeric(present, errors="coerce")
        finite = np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
        if len(present) > 0 and finite.sum() >= 0.95 * len(present):
            values = pd.to_numeric(cells, errors="coerce").astype(float)
            values[~np.isfinite(values)] = np.nan
            features[name] = values
        else:
            features[name] = cells.astype(object)
            text_columns.append(name)
    return pd.DataFrame(features, index=raw.index), text_columns


def best_f1_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The score t maximising F1 of "positive when score >= t"."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    t = y[order]
    tp = np.cumsum(t)
    fp = np.cumsum(1 - t)
    positives = t.sum()
    # Only cut between distinct scores: the last index of each run of ties.
    last = np.r_[s[1:] != s[:-1], True]
    f1 = 2 * tp / (tp + fp + positives)
    f1 = np.where(last, f1, -1.0)
    return float(s[int(np.argmax(f1))])


# --- references -------------------------------------------------------------


def lightgbm_model():
    import lightgbm as lgb

    def fit_predict(x_fit, y_fit, x_eval_list, text_columns):
        def prep(x):
            x = x.copy()
            for c in text_columns:
                x[c] = pd.Categorical(x[c], categories=categories[c])
            return x

        categories = {c: sorted(x_fit[c].unique()) for c in text_columns}
        model = lgb.LGBMClassifier(verbose=-1)
        model.fit(prep(x_fit), y_fit)
        return [model.predict_proba(prep(x))[:, 1] for x in x_eval_list]

    return fit_predict


def catboost_model():
    from catboost import CatBoostClassifier

    def fit_predict(x_fit, y_fit, x_eval_list, text_columns):
        model = CatBoostClassifier(verbose=0, thread_count=-1, allow_writing_files=False)
        model.fit(x_fit, y_fit, cat_features=text_columns)
        return [model.predict_proba(x)[:, 1] for x in x_eval_list]

    return fit_predict


def logreg_model():
    def fit_predict(x_fit, y_fit, x_eval_list, text_columns):
        numeric = [c for c in x_fit.columns if c not in text_columns]
        pre = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), text_columns),
            ]
        )
        model = make_pipeline(pre, LogisticRegression(max_iter=5000))
        model.fit(x_fit, y_fit)
        return [model.predict_proba(x)[:, 1] for x in x_eval_list]

    return fit_predict


def evaluate(fit_predict, x80, y80, x_test, y_test, text_columns, seed):
    started = time.perf_counter()
    (p_test,) = fit_predict(x80, y80, [x_test], text_columns)
    fit_seconds = time.perf_counter() - started
    auc = roc_auc_score(y_test, p_test)
    x_fit, x_val, y_fit, y_val = train_test_split(
        x80, y80, test_size=0.2, stratify=y80, random_state=seed
    )
    p_val, p_test64 = fit_predict(x_fit, y_fit, [x_val, x_test], text_columns)
    threshold = best_f1_threshold(p_val, y_val)
    f1 = f1_score(y_test, (p_test64 >= threshold).astype(int))
    return {
        "auc": auc,
        "auc64": roc_auc_score(y_test, p_test64),
        "f1": f1,
        "threshold": threshold,
        "seconds": fit_seconds,
    }


# --- Serval -----------------------------------------------------------------


class ServalServer:
    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.scratch = Path(tempfile.mkdtemp(prefix="serval-bench-quality-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.scratch / "server.log", "w")
        self.process = subprocess.Popen(
            [
                str(bin_dir / "serval-server"),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--database",
                str(self.scratch / "serval.db"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            if self.process.poll() is not None:
                raise RuntimeError(f"serval-server exited; see {self.scratch / 'server.log'}")
            if subprocess.run(self.cli("models"), capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("serval-server did not answer within 30 s")

    def cli(self, *args):
        return [str(self.bin / "serval"), "--server", self.url, *args]

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def evaluate(self, model, train_csv, test_csv, label, positive, drop, y_test):
        args = ["train", "--model", model, "--data", str(train_csv), "--label", label,
                "--positive", positive, "--json"]
        if drop:
            args += ["--drop", ",".join(drop)]
        started = time.perf_counter()
        done = subprocess.run(self.cli(*args), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"serval train failed: {done.stderr}")
        trained = json.loads(done.stdout)
        done = subprocess.run(
            self.cli("predict", "--model", model, "--data", str(test_csv), "--json"),
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"serval predict failed: {done.stderr}")
        predicted = json.loads(done.stdout)
        scores = np.asarray(predicted["scores"], dtype=float)
        labels = np.asarray(predicted["labels"], dtype=int)
        return {
            "auc": roc_auc_score(y_test, scores),
            "auc64": float("nan"),
            "f1": f1_score(y_test, labels),
            "threshold": predicted.get("threshold", float("nan")),
            "seconds": seconds,
            "validation_auc": trained.get("metrics", {}).get("auc"),
        }


# --- main -------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "examples" / "data")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the split CSVs go (default: a temporary folder, removed)")
    parser.add_argument("--split-seeds", default="42",
                        help="comma-separated random_state values of the 80/20 split")
    parser.add_argument("--serval-bin", type=Path, default=None,
                        help="folder with serval and serval-server binaries")
    parser.add_argument("--skip-catboost", action="store_true", help="CatBoost is the slowest")
    parser.add_argument("--json-out", type=Path, default=None, help="also write all numbers here")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    references = [("LightGBM", lightgbm_model()), ("logreg", logreg_model())]
    if not args.skip_catboost:
        references.insert(1, ("CatBoost", catboost_model()))
    server = ServalServer(args.serval_bin.resolve()) if args.serval_bin else None
    results = []
    try:
        for seed in [int(s) for s in args.split_seeds.split(",")]:
            folder = out / f"seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, file, label, positive, drop in DATASETS:
                raw = read_text(args.data_dir / file)
                y = (raw[label].str.strip() == positive).astype(int).to_numpy()
                train_idx, test_idx = train_test_split(
                    np.arange(len(raw)), test_size=0.2, stratify=y, random_state=seed
                )
                train_csv = folder / f"{name}.train.csv"
                test_csv = folder / f"{name}.test.csv"
                raw.iloc[train_idx].to_csv(train_csv, index=False)
                raw.iloc[test_idx].to_csv(test_csv, index=False)
                x, text_columns = typed_features(raw, label, drop)
                x80, x_test = x.iloc[train_idx], x.iloc[test_idx]
                y80, y_test = y[train_idx], y[test_idx]
                for model_name, fit_predict in references:
                    log(f"seed {seed} {name}: {model_name}")
                    r = evaluate(fit_predict, x80, y80, x_test, y_test, text_columns, seed)
                    results.append({"seed": seed, "dataset": name, "model": model_name, **r})
                if server:
                    log(f"seed {seed} {name}: Serval")
                    r = server.evaluate(f"{name}-s{seed}", train_csv, test_csv, label, positive,
                                        drop, y_test)
                    results.append({"seed": seed, "dataset": name, "model": "Serval", **r})
    finally:
        if server:
            server.close()
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)

    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    for seed in dict.fromkeys(r["seed"] for r in results):
        print(f"\nSplit seed {seed} (80/20 stratified; test rows choose nothing)\n")
        print("| dataset | model | test AUC (fit 80 %) | test AUC (fit 64 %) | test F1 at the validation threshold | threshold | fit / train wall s |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in results:
            if r["seed"] != seed:
                continue
            auc64 = "" if np.isnan(r["auc64"]) else f"{r['auc64']:.4f}"
            auc = f"{r['auc']:.4f}"
            print(f"| {r['dataset']} | {r['model']} | {auc} | {auc64} | {r['f1']:.4f} | "
                  f"{r['threshold']:.3f} | {r['seconds']:.2f} |")
    if args.out:
        log(f"split CSVs in {out}")


if __name__ == "__main__":
    main()
