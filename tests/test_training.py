"""Training writes the run-folder contract the dashboard and CLI read; data helpers behave.

All runs are tiny (32 px, one epoch, 32 training images) on the synthetic dataset of
conftest.py; they check structure and consistency, not accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SOURCES, fake_image, jpeg_bytes, smooth_image
from detector import data, evaluation
from detector.training import TrainConfig, train

N_PER_SPLIT = 32  # 16 real + 16 fake


def _manifest(root: Path) -> dict[str, str]:
    table = pd.read_csv(root / "MANIFEST.csv", dtype=str)
    return dict(zip(table["path"], table["source"]))


# --- the run folder -----------------------------------------------------------------------

def test_run_folder_contract(tiny_run, tiny_dataset):
    import keras

    for f in ("model.keras", "card.json", "history.csv", "predictions.csv"):
        assert (tiny_run / f).is_file(), f
    card = json.loads((tiny_run / "card.json").read_text())
    model = keras.saving.load_model(tiny_run / "model.keras", safe_mode=True, compile=False)

    assert card["architecture"] == "custom_cnn" and card["name"] == tiny_run.name
    assert card["input_size"] == 32 and model.input_shape == (None, 32, 32, 3)
    assert card["params"] == model.count_params()
    assert card["file_mb"] == pytest.approx((tiny_run / "model.keras").stat().st_size / 1e6, abs=0.01)
    assert 0.0 < card["threshold"] < 1.0
    assert card["temperature"] > 0
    assert card["gradcam_layer"] in {layer.name for layer in model.layers}
    assert card["label_names"] == ["real", "fake"]
    assert card["training"]["phases"] == ["train"] and card["training"]["epochs_run"] == 1
    assert card["training"]["kept_epoch"] == 1 and card["training"]["kept_by"] == "val_source_auc"
    assert card["data"]["counts"]["test"] == {"real": 16, "fake": 16}
    for split in ("val", "test"):
        m = card["metrics"][split]
        assert m["n"] == N_PER_SPLIT
        assert sum(m["confusion"].values()) == N_PER_SPLIT
        assert set(m["per_source"]) == set(SOURCES)
        assert all(v["n"] == N_PER_SPLIT // 2 for v in m["per_source"].values())
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["ece"] <= 1

    history = pd.read_csv(tiny_run / "history.csv")
    assert {"phase", "run_epoch", "epoch", "loss", "val_loss", "val_auc"} <= set(history.columns)
    assert history["phase"].tolist() == ["train"] and history["run_epoch"].tolist() == [1]

    preds = pd.read_csv(tiny_run / "predictions.csv", keep_default_na=False)
    # per-source val AUC logged each epoch (what picks the kept epoch); one epoch -> the
    # saved model's own val scores give the same numbers
    from sklearn.metrics import roc_auc_score

    val = preds[preds["split"] == "val"]
    logged = {s: history[f"val_auc_{s}"].iloc[0] for s in SOURCES}
    for s, auc in logged.items():
        part = val[val["source"] == s]
        assert auc == pytest.approx(roc_auc_score(part["label"] == "fake", part["p_raw"]), abs=0.02), s
    assert history["val_source_auc"].iloc[0] == pytest.approx(np.mean(list(logged.values())))
    assert {"split", "path", "source", "label", "p_fake", "p_raw"} <= set(preds.columns)
    assert preds["split"].value_counts().to_dict() == {"val": N_PER_SPLIT, "test": N_PER_SPLIT}
    manifest = _manifest(tiny_dataset)
    for row in preds.itertuples():
        assert (tiny_dataset / row.path).is_file()
        assert row.path.split("/")[0] == row.split and row.path.split("/")[1] == row.label
        assert row.source == manifest[row.path]
    assert preds["p_fake"].between(0, 1).all() and preds["p_raw"].between(0, 1).all()

    # p_fake is the saved model's raw output, temperature-scaled with the card's temperature
    test = preds[preds["split"] == "test"]
    x = data.load_pixels([str(tiny_dataset / p) for p in test["path"]], 32, use_cache=False,
                         progress=False)
    raw = model.predict(x.astype("float32"), verbose=0).reshape(-1)
    np.testing.assert_allclose(test["p_raw"], raw, atol=2e-6)
    np.testing.assert_allclose(test["p_fake"], evaluation.apply_temperature(raw, card["temperature"], card["bias"]),
                               atol=2e-6)
    # and the card's test metrics are those of predictions.csv at the card's threshold
    y = (test["label"] == "fake").astype(int)
    acc = float(((test["p_fake"] >= card["threshold"]).astype(int) == y).mean())
    assert abs(acc - card["metrics"]["test"]["accuracy"]) <= _ambiguous(test, card) + 1e-9


def _ambiguous(rows: pd.DataFrame, card: dict) -> float:
    """Share of rows whose p_fake (6 decimals in the CSV) is too close to the threshold for
    the side it falls on to be certain: the tolerance of accuracy comparisons."""
    return float((np.abs(rows["p_fake"] - card["threshold"]) < 1e-5).mean())


def test_card_accuracy_matches_cli_evaluate(tiny_run, tiny_dataset):
    from detector.__main__ import evaluate_folder

    card = json.loads((tiny_run / "card.json").read_text())
    result = evaluate_folder(str(tiny_dataset), str(tiny_run))
    assert result["n"] == N_PER_SPLIT and result["split"] == "test"
    assert result["threshold"] == pytest.approx(card["threshold"])
    preds = pd.read_csv(tiny_run / "predictions.csv")
    tolerance = _ambiguous(preds[preds["split"] == "test"], card)
    assert abs(result["accuracy"] - card["metrics"]["test"]["accuracy"]) <= tolerance + 1e-9
    if tolerance == 0:
        assert result["confusion"] == card["metrics"]["test"]["confusion"]
    assert result["auc"] == pytest.approx(card["metrics"]["test"]["auc"], abs=1e-3)
    assert {s: v["n"] for s, v in result["per_source"].items()} == \
           {s: v["n"] for s, v in card["metrics"]["test"]["per_source"].items()}


@pytest.mark.slow
def test_kfold_writes_folds_and_cv_predictions(tiny_dataset, tmp_path):
    out = tmp_path / "kfold"
    card = train(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(out), epochs=1,
                             img_size=32, batch_size=8, kfold=2, verbose=0))
    assert card["kfold"] == 2
    folds = pd.read_csv(out / "folds.csv")
    assert folds["fold"].tolist() == [1, 2]
    assert {"n_train", "n_val", "accuracy", "auc", "tn", "fp", "fn", "tp"} <= set(folds.columns)
    assert (folds["n_train"] + folds["n_val"] == N_PER_SPLIT).all()
    assert folds["n_val"].sum() == N_PER_SPLIT
    assert (folds[["tn", "fp", "fn", "tp"]].sum(axis=1) == folds["n_val"]).all()

    preds = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    cv = preds[preds["split"] == "cv"]
    assert len(cv) == N_PER_SPLIT
    assert cv["path"].is_unique and all(p.startswith("train/") for p in cv["path"])
    fold = pd.to_numeric(cv["fold"])  # written as floats: val/test rows have no fold
    assert set(fold) == {1, 2}
    assert fold.value_counts().sort_index().tolist() == folds["n_val"].tolist()
    assert (preds.loc[preds["split"] != "cv", "fold"] == "").all()
    assert {"val", "test"} <= set(preds["split"])
    assert (out / "model.keras").is_file()


@pytest.mark.slow
def test_two_phase_backbone_with_cached_features(tiny_dataset, tmp_path):
    import keras

    out = tmp_path / "lite0"
    card = train(TrainConfig(model="efficientnet_lite0", data=str(tiny_dataset), out=str(out),
                             epochs=1, fine_tune_epochs=1, img_size=32, batch_size=8,
                             pretrained=False, cache_features=True, mixup=0.4, verbose=0))
    assert card["training"]["phases"] == ["head", "fine_tune"]
    assert card["training"]["mixup"] == 0.4  # mixed batches train end to end
    history = pd.read_csv(out / "history.csv")
    assert history["phase"].tolist() == ["head", "fine_tune"]
    assert history["run_epoch"].tolist() == [1, 2]
    assert "learning_rate" in history.columns
    assert history["learning_rate"].iloc[1] < history["learning_rate"].iloc[0]

    # the saved file is the whole network (not the cached top), at the trained size
    model = keras.saving.load_model(out / "model.keras", safe_mode=True, compile=False)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 1)
    assert card["params"] == model.count_params()

    # BatchNorm of the backbone stays frozen in both phases: with random init its moving
    # statistics must still be the initial ones (mean 0, variance 1).
    names = [layer.name for layer in model.layers]
    head = names.index("head_gap")
    backbone_bn = [l for l in model.layers[:head] if isinstance(l, keras.layers.BatchNormalization)]
    assert backbone_bn
    moved = [l.name for l in backbone_bn
             if not (np.allclose(keras.ops.convert_to_numpy(l.moving_mean), 0)
                     and np.allclose(keras.ops.convert_to_numpy(l.moving_variance), 1))]
    assert moved == [], f"backbone BatchNorm layers updated during training: {moved}"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "xception"])
def test_fine_tune_freezes_backbone_batchnorm_only(name):
    """Phase 2 trains from fine_tune_from on, but BatchNorm only inside the new head
    (both models have a layer called head_bn: in Lite0 it is the backbone's last BN)."""
    import keras

    from detector import training, zoo

    spec = zoo.get_spec(name)
    model = spec.build(64, pretrained=False)
    training._set_trainable(model, spec.fine_tune_from, spec.head_from)
    names = [layer.name for layer in model.layers]
    start, head = names.index(spec.fine_tune_from), names.index(spec.head_from)
    for i, layer in enumerate(model.layers):
        if i < start:
            assert not layer.trainable, layer.name
        elif isinstance(layer, keras.layers.BatchNormalization):
            assert layer.trainable == (i >= head), layer.name
        else:
            assert layer.trainable, layer.name
    assert model.get_layer("p_fake").trainable


# --- data -----------------------------------------------------------------------------------

def test_scan_finds_splits_labels_and_sources(tiny_dataset):
    df = data.scan(tiny_dataset)
    assert list(df.columns) == ["path", "rel", "split", "label", "source"]
    assert df.groupby(["split", "label"]).size().to_dict() == {
        (s, lab): 16 for s in ("train", "val", "test") for lab in (0, 1)}
    manifest = _manifest(tiny_dataset)
    assert df["source"].tolist() == [manifest[r] for r in df["rel"]]
    assert set(df["source"]) == set(SOURCES)
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in df["path"])
    assert all((r.split("/")[1] == "fake") == bool(lab) for r, lab in zip(df["rel"], df["label"]))

    # a split folder on its own: split named after it, sources from the manifest one level up
    test = data.scan(tiny_dataset / "test")
    assert set(test["split"]) == {"test"} and len(test) == N_PER_SPLIT
    assert test["source"].tolist() == [manifest["test/" + r] for r in test["rel"]]


def test_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.scan(tmp_path / "missing")
    (tmp_path / "empty" / "real").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        data.scan(tmp_path / "empty")


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flat")
    rng = np.random.default_rng(1)
    for label, make, n in (("real", smooth_image, 40), ("fake", fake_image, 20)):
        (root / label).mkdir()
        for i in range(n):
            (root / label / f"{i:03d}.jpg").write_bytes(jpeg_bytes(make(rng, 16)))
    return root


def test_ensure_splits_stratified_and_seeded(flat_folder):
    df = data.scan(flat_folder)
    assert set(df["split"]) == {"all"} and len(df) == 60
    parts = data.ensure_splits(df, seed=7)
    assert set(parts) == {"train", "val", "test"}
    paths = [set(parts[s]["path"]) for s in data.SPLITS]
    assert sum(len(p) for p in paths) == len(df)
    assert set.union(*paths) == set(df["path"])
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    for s, f in parts.items():
        assert set(f["split"]) == {s}
        # stratified: every split keeps the 2:1 real:fake ratio (to within one image)
        assert abs((f["label"] == 0).sum() - 2 * (f["label"] == 1).sum()) <= 2, s
    assert 6 <= len(parts["test"]) <= 12 and 6 <= len(parts["val"]) <= 12
    again = data.ensure_splits(df, seed=7)
    assert all(parts[s]["path"].tolist() == again[s]["path"].tolist() for s in data.SPLITS)


def test_ensure_splits_keeps_existing_splits(tiny_dataset):
    df = data.scan(tiny_dataset)
    parts = data.ensure_splits(df)
    for s in data.SPLITS:
        assert parts[s]["path"].tolist() == df[df["split"] == s]["path"].tolist()


def test_source_weights_lift_minority_source():
    df = pd.DataFrame({"source": ["big"] * 30 + ["small"] * 10})
    w = data.source_weights(df, power=0.5)
    assert w.dtype == np.float32 and w.shape == (40,)
    assert w.mean() == pytest.approx(1.0, abs=1e-6)
    big, small = w[0], w[-1]
    assert small > big
    assert small / big == pytest.approx((30 / 10) ** 0.5, rel=1e-5)
    assert np.allclose(data.source_weights(df, power=0.0), 1.0)
    # the minority source's total weight gets closer to the majority's
    assert w[30:].sum() / w[:30].sum() > 10 / 30


def test_augment_image_keeps_shape_dtype_and_range():
    import tensorflow as tf

    img = smooth_image(np.random.default_rng(3), 32)
    img[0, 0] = 255
    img[-1, -1] = 0
    for seed in range(4):
        tf.random.set_seed(seed)
        out = data.augment_image(tf.constant(img), strength=1.0).numpy()
        assert out.shape == img.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
    # strength 0 only mirrors: the pixels are the image or its mirror, exactly
    out = data.augment_image(tf.constant(img), strength=0.0).numpy()
    assert np.array_equal(out, img.astype(np.float32)) or np.array_equal(out, img[:, ::-1].astype(np.float32))


def test_make_dataset_batches():
    rng = np.random.default_rng(4)
    x = np.stack([smooth_image(rng, 32) for _ in range(10)])
    y = np.array([0, 1] * 5)
    w = np.linspace(0.5, 1.5, 10).astype("float32")
    batches = list(data.make_dataset(x, y, w, batch_size=4, training=True, augment=True, seed=1))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    xs = np.concatenate([b[0].numpy() for b in batches])
    assert xs.shape == (10, 32, 32, 3) and xs.dtype == np.float32
    assert xs.min() >= -1e-3 and xs.max() <= 255 + 1e-3
    ys = np.concatenate([b[1].numpy() for b in batches])
    ws = np.concatenate([b[2].numpy() for b in batches])
    assert sorted(zip(ys, ws)) == sorted(zip(y.astype("float32"), w))  # labels travel with weights
    plain = list(data.make_dataset(x, y, batch_size=4))
    assert np.array_equal(np.concatenate([b[0].numpy() for b in plain]), x.astype(np.float32))
    assert np.array_equal(np.concatenate([b[1].numpy() for b in plain]), y.astype(np.float32))


def test_load_pixels_uses_the_one_decoder_and_cache(tiny_dataset):
    from detector import images

    paths = sorted(str(p) for p in (tiny_dataset / "val" / "fake").glob("*.jpg"))[:5]
    first = data.load_pixels(paths, 24, progress=False)
    cached = data.load_pixels(paths, 24, progress=False)
    assert first.shape == (5, 24, 24, 3) and first.dtype == np.uint8
    assert np.array_equal(first, cached)
    for p, px in zip(paths, first):
        assert np.array_equal(px, images.resize_to(images.decode_image(p), 24))


def test_recalibrate_refits_from_stored_val_predictions(tiny_run, tmp_path):
    """`calibrate` rewrites card + predictions from val rows only; test rows never tune."""
    import json
    import shutil

    import pandas as pd

    from detector import evaluation, training

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = pd.read_csv(run / "predictions.csv")
    card = training.recalibrate(run)
    after = pd.read_csv(run / "predictions.csv")
    val = after[after["split"] == "val"]
    T, b = evaluation.fit_platt((val["label"] == "fake").astype(int), val["p_raw"])
    assert card["temperature"] == pytest.approx(T, rel=1e-3) and card["bias"] == pytest.approx(b, abs=1e-3)
    assert list(after["p_raw"]) == list(before["p_raw"])
    expected = evaluation.apply_temperature(after["p_raw"], card["temperature"], card["bias"])
    assert after["p_fake"].to_numpy() == pytest.approx(expected, abs=2e-6)
    assert json.loads((run / "card.json").read_text())["threshold"] == card["threshold"]


def test_source_auc_logs_each_source_and_their_mean():
    import keras
    from sklearn.metrics import roc_auc_score

    from detector.training import SOURCE_AUC, _source_auc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype("float32")
    y = (x[:, 0] + rng.normal(scale=1.0, size=60) > 0).astype("float32")
    sources = np.array(["a"] * 40 + ["b"] * 20)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    callback = _source_auc(x, y, sources)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    p = model.predict(x, verbose=0).reshape(-1)
    expected = {s: roc_auc_score(y[sources == s], p[sources == s]) for s in ("a", "b")}
    assert logs["val_auc_a"] == pytest.approx(expected["a"]) and logs["val_auc_b"] == pytest.approx(expected["b"])
    assert logs[SOURCE_AUC] == pytest.approx((expected["a"] + expected["b"]) / 2)
    # one usable source (b has a single class) or none known: pooled val AUC is used instead
    assert _source_auc(x, y, None) is None
    one_class_b = np.where((sources == "b") & (y == 1), "a", sources)
    assert _source_auc(x, y, one_class_b) is None


@pytest.mark.slow
def test_ema_keeps_the_moving_average_of_the_weights(tmp_path):
    """With `ema`, the checkpoint and the weights left in the model are the exponential moving
    average of the per-step weights (first step copied), not the last raw weights."""
    import keras

    from detector.training import _callbacks, _compile

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    momentum = 0.8
    _compile(model, 0.05, ema=momentum)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == momentum
    raw = []

    class RecordRaw(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raw.append(self.model.get_weights()[0].copy())

    callbacks = _callbacks(tmp_path, "fine_tune", [0], patience=5, append=False, ema=True)
    assert isinstance(callbacks[0], keras.callbacks.SwapEMAWeights)
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), verbose=0,
              shuffle=False, callbacks=callbacks + [RecordRaw()])
    averages = [raw[0]]
    for w in raw[1:]:
        averages.append(momentum * averages[-1] + (1 - momentum) * w)
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(raw) == 16 and len(history) == 2
    best_epoch = int(history["val_auc"].to_numpy().argmax())  # first of equals, as Keras keeps
    kept_step = 8 * (best_epoch + 1) - 1
    np.testing.assert_allclose(model.get_weights()[0], averages[kept_step], rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.get_weights()[0], raw[kept_step])
    kept = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    kept.load_weights(tmp_path / "checkpoints" / "best_fine_tune.weights.h5")
    np.testing.assert_allclose(kept.get_weights()[0], model.get_weights()[0], rtol=1e-6)
    # without EMA the optimizer keeps none
    _compile(model, 0.05)
    assert not model.optimizer.use_ema


def test_kept_epoch_is_the_best_of_the_last_phase_by_the_monitored_value():
    from detector.training import kept_epoch

    history = pd.DataFrame({"phase": ["head", "head", "fine_tune", "fine_tune", "fine_tune"],
                            "run_epoch": [1, 2, 3, 4, 5],
                            "val_auc": [0.99, 0.7, 0.8, 0.95, 0.9],
                            "val_source_auc": [0.99, 0.6, 0.7, 0.75, 0.85]})
    assert kept_epoch(history) == {"kept_epoch": 5, "kept_by": "val_source_auc", "kept_value": 0.85}
    assert kept_epoch(history.drop(columns="val_source_auc")) == {
        "kept_epoch": 4, "kept_by": "val_auc", "kept_value": 0.95}
    assert kept_epoch(pd.DataFrame()) == {}


def test_weight_average_is_the_mean_of_the_last_epochs_weights():
    """`_WeightAverage(first)` holds the plain mean of the weights at the end of epochs
    first.. (0-based), the epochs before it left out."""
    import keras

    from detector.training import _WeightAverage

    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([w.copy() for w in self.model.get_weights()])

    averager = _WeightAverage(2)
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False, callbacks=[averager, Record()])
    assert averager.epochs == [2, 3, 4]
    for got, *per_epoch in zip(averager.weights(), *seen[2:]):
        np.testing.assert_allclose(got, np.mean(per_epoch, axis=0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(averager.weights()[0], seen[-1][0])  # the weights did move


def test_mean_weights_are_kept_only_when_they_score_no_worse_on_val():
    """`_keep_average` swaps the mean in when its val score is >= the kept epoch's, else puts
    the kept weights back; the card says which, with run-wide epoch numbers."""
    import keras

    from detector.training import _keep_average

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    kept = [np.ones((2, 1), "float32"), np.zeros(1, "float32")]
    mean = [np.full((2, 1), 3.0, "float32"), np.ones(1, "float32")]

    class Averager:
        epochs = [3, 4, 5]

        def __init__(self):
            self.mean = mean

        def weights(self):
            return mean

    def score():  # val score of the current weights: higher for larger weights
        return float(model.get_weights()[0].sum()) / 10

    for kept_value, keep in ((0.5, True), (0.6, True), (0.7, False)):
        model.set_weights(kept)
        info = _keep_average(model, Averager(), score, kept_value, offset=2)
        assert info == {"averaged_epochs": "6-8", "averaged_value": pytest.approx(0.6), "kept_average": keep}
        np.testing.assert_array_equal(model.get_weights()[0], (mean if keep else kept)[0])
    idle = Averager()
    idle.mean = None  # stopped early, before the averaged epochs
    assert _keep_average(model, idle, score, 0.5, 0) == {}


@pytest.mark.slow
def test_average_last_in_a_run_is_recorded_in_the_card(tiny_dataset, tmp_path):
    """A run with `average_last` reports the averaged epochs and their val score, and the
    saved model scores val as the card says it does."""
    from sklearn.metrics import roc_auc_score

    card = train(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(tmp_path / "avg"),
                             epochs=3, img_size=32, average_last=2, verbose=0))
    tr = card["training"]
    assert tr["average_last"] == 2 and tr["averaged_epochs"] == "2-3"
    assert isinstance(tr["kept_average"], bool)
    preds = pd.read_csv(tmp_path / "avg" / "predictions.csv", keep_default_na=False)
    val = preds[preds["split"] == "val"]
    aucs = [roc_auc_score(part["label"] == "fake", part["p_raw"]) for _, part in val.groupby("source")]
    expected = tr["averaged_value"] if tr["kept_average"] else tr["kept_value"]
    assert np.mean(aucs) == pytest.approx(expected, abs=0.02)


def test_label_smoothing_moves_the_targets_towards_one_half():
    """With `label_smoothing` s the compiled loss is the cross-entropy against 1 - s/2 and s/2:
    a score equal to the smoothed target costs less than a perfectly confident one."""
    import keras

    from detector.training import _compile

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    y = np.array([[1.0], [0.0]], "float32")
    _compile(model, 1e-3, label_smoothing=0.2)
    smoothed = np.array([[0.9], [0.1]], "float32")

    def bce(t, p):
        return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))

    got = float(model.loss(y, smoothed))
    assert got == pytest.approx(bce(smoothed, smoothed), rel=1e-4)
    assert got < float(model.loss(y, np.array([[0.999], [0.001]], "float32")))
    _compile(model, 1e-3)  # off: the plain cross-entropy
    assert float(model.loss(y, smoothed)) == pytest.approx(bce(y, smoothed), rel=1e-4)


def test_mix_batch_blends_features_labels_and_weights_with_one_partner_each():
    """Every mixed sample is lam * itself + (1 - lam) * one partner, lam >= 0.5, with the
    same lam and partner for its features, label and weight."""
    from detector.training import mix_batch

    n = 64
    x = np.eye(n, dtype="float32").reshape(n, 1, 1, n) * 10  # sample i = 10 at channel i
    y = (np.arange(n) % 2).astype("float32")
    w = np.arange(1, n + 1, dtype="float32")
    mx, my, mw = mix_batch(x, y, w, 0.4, np.random.default_rng(0))
    flat = mx.reshape(n, n) / 10
    lam = flat[np.arange(n), np.arange(n)]
    partner = np.where(np.isclose(lam, 1.0), np.arange(n), np.argsort(-flat * (1 - np.eye(n)), 1)[:, 0])
    assert (lam >= 0.5 - 1e-6).all() and (lam < 0.999).mean() > 0.5  # mostly mixed, never flipped
    np.testing.assert_allclose(flat.sum(1), 1.0, atol=1e-5)           # a convex combination of two
    np.testing.assert_allclose(my, lam * y + (1 - lam) * y[partner], atol=1e-5)
    np.testing.assert_allclose(mw, lam * w + (1 - lam) * w[partner], rtol=1e-5)
    assert mix_batch(x, y, None, 0.4, np.random.default_rng(0))[2] is None


def test_mixup_touches_training_batches_only():
    from detector.training import _CachedViews

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(40, 2, 2, 3)).astype("float16")
    y = (np.arange(40) % 2).astype("float32")
    train_views = _CachedViews([feats], y, None, 8, 0, True, mixup=0.4)
    labels = np.concatenate([train_views[i][1] for i in range(len(train_views))])
    assert ((labels > 0) & (labels < 1)).any()  # soft labels: mixed
    val_views = _CachedViews([feats], y, None, 8, 0, False, mixup=0.4)
    xb, yb = val_views[0]
    np.testing.assert_array_equal(yb, y[:8])
    np.testing.assert_array_equal(xb, feats[:8].astype("float32"))


def test_mixup_is_refused_where_there_are_no_cached_features(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="needs a backbone model"):
        train(TrainConfig(model="custom_cnn", data=str(tiny_dataset), out=str(tmp_path / "m"),
                          epochs=1, img_size=32, mixup=0.4, verbose=0))


def test_saved_models_are_deflated_and_reload_the_same(tiny_run, tmp_path):
    import zipfile

    import keras

    from detector.training import deflate_zip, predict_pixels

    with zipfile.ZipFile(tiny_run / "model.keras") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    model = keras.saving.load_model(tiny_run / "model.keras", compile=False, safe_mode=True)
    stored = tmp_path / "stored.keras"
    model.save(stored)  # Keras' own zip: stored, not deflated
    before = stored.stat().st_size
    deflate_zip(stored)
    assert stored.stat().st_size < before
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    again = keras.saving.load_model(stored, compile=False, safe_mode=True)
    np.testing.assert_array_equal(predict_pixels(again, x), predict_pixels(model, x))
