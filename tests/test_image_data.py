"""The user's images in and out: a folder per class (PNG/JPEG read with Pillow by a size and colour
rule the run records), .npz/.npy arrays in either layout, folders and arrays streamed through
``xai explain --input`` and ``xai predict --input``, and bad input refused in one line with nothing
written. Pixels are checked against the arrays the PNGs were written from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

import xaicore
from tolerances import assert_close
from xaicore.cli import cli
from xaicore.commands.training import kind_spec
from xaicore.data.loading import load_dataset
from xaicore.explaining.store import load_explanation
from xaicore.plugins import registry

PER_CLASS = 16


def xai(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *fragments: str) -> str:
    """The one-line error of a failed command, checked to hold every fragment."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    message = lines[-1]
    assert message.startswith("Error: ") and sum(line.startswith("Error:") for line in lines) == 1
    for fragment in fragments:
        assert fragment in message, message
    return message


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def digits_8bit(n_per_class: int, classes=(0, 1, 2)) -> dict[int, np.ndarray]:
    """scikit-learn's 8x8 digits as uint8 (0-16 scaled to 0-255), ``n_per_class`` of each."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return {c: (data.images[data.target == c][:n_per_class] * 255 / 16).round().astype(np.uint8)
            for c in classes}


def write_folder(root: Path, images: dict, scale: int = 2) -> dict[Path, np.ndarray]:
    """ROOT/<class>/<i>.png of every image, upsampled ``scale`` x by repetition; path -> pixels."""
    written = {}
    for c, stack in images.items():
        for i, image in enumerate(stack):
            big = image.repeat(scale, 0).repeat(scale, 1)
            written[save(root / str(c) / f"{i:03d}.png", big)] = big
    return written


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of 16x16 greyscale digit PNGs; the pixels each file was written from."""
    root = tmp_path_factory.mktemp("images") / "digits"
    return root, write_folder(root, digits_8bit(PER_CLASS))


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """A tiny image-cnn trained through the CLI on the folder, without a size or colour rule."""
    out = tmp_path_factory.mktemp("runs") / "run"
    result = xai("train", "--dataset", folder[0], "--model", "image-cnn", "--out", out, "--epochs",
                 "2", "--param", "channels=4", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def spec(path: Path, test: Path | None = None, **data) -> dict:
    return kind_spec("image-cnn", str(path), test, {}, 0, 0.25, data)


def in_order(written: dict[Path, np.ndarray]) -> np.ndarray:
    """The written images in the order a folder is read (sorted paths) as [n, H*W, 1] in [0, 1]."""
    stack = np.stack([written[p] for p in sorted(written)]).astype(np.float32) / np.float32(255)
    return stack.reshape(len(stack), -1, 1)


def test_a_folder_per_class_is_read_as_its_pixels_over_255_and_split_per_class(folder):
    root, written = folder
    data = load_dataset(spec(root))
    assert data.name == "digits" and data.class_names == ["0", "1", "2"]
    assert data.info["height"] == data.info["width"] == 16 and data.feature_names == ["grey"]
    assert [int((data.test.y == c).sum()) for c in range(3)] == [4, 4, 4]  # a quarter of 16
    expected = sorted((int(p.parent.name), (a.astype(np.float32) / np.float32(255)).tobytes())
                      for p, a in written.items())
    read = sorted((int(y), x.tobytes()) for split in (data.train, data.test)
                  for x, y in zip(split.X, split.y))
    assert read == expected  # every file once, under its class, exactly its bytes / 255
    again, other = load_dataset(spec(root)), load_dataset({**spec(root), "seed": 1})
    assert (again.test.X == data.test.X).all() and not (other.test.X == data.test.X).all()


def test_train_and_test_subfolders_are_the_split(tmp_path):
    images = digits_8bit(5, (3, 7))
    train = write_folder(tmp_path / "root" / "train", {c: s[:3] for c, s in images.items()})
    test = write_folder(tmp_path / "root" / "test", {c: s[3:] for c, s in images.items()})
    data = load_dataset(spec(tmp_path / "root"))
    assert data.name == "root" and data.class_names == ["3", "7"]
    assert (data.train.X == in_order(train)).all() and (data.test.X == in_order(test)).all()
    assert data.train.y.tolist() == [0, 0, 0, 1, 1, 1] and data.test.y.tolist() == [0, 0, 1, 1]
    (tmp_path / "root" / "val").mkdir()
    with pytest.raises(xaicore.XaiError, match=r"train/ and test/ beside val/; give --dataset "):
        load_dataset(spec(tmp_path / "root"))


def test_the_size_rule_resizes_by_its_filter(tmp_path):
    images = digits_8bit(3, (0, 1))
    written = write_folder(tmp_path / "small", images, scale=1)
    near = load_dataset(spec(tmp_path / "small", size=16, resample="nearest"))
    repeated = in_order(written).reshape(-1, 8, 8).repeat(2, 1).repeat(2, 2).reshape(-1, 256, 1)
    both = np.concatenate([near.train.X, near.test.X])
    assert sorted(map(bytes, both)) == sorted(map(bytes, repeated))  # nearest x2: 2x2 blocks
    linear = load_dataset(spec(tmp_path / "small", size="12x20"))
    assert (linear.info["height"], linear.info["width"]) == (12, 20)
    assert linear.info["reading"] == {"size": [12, 20], "resample": "bilinear", "mode": None,
                                      "layout": "NCHW"}
    # upsampling: Pillow's bilinear filter is torch's (align_corners=False), computed by Pillow in
    # 8-bit fixed point: within one grey level
    grids = torch.from_numpy(in_order(written).reshape(-1, 1, 8, 8))
    theirs = F.interpolate(grids, size=(12, 20), mode="bilinear", align_corners=False)
    ours = np.concatenate([linear.train.X, linear.test.X]).reshape(-1, 12, 20)
    order = [np.argmin([np.abs(o - t).max() for t in theirs[:, 0].numpy()]) for o in ours]
    assert sorted(order) == list(range(len(ours)))
    assert_close(ours, theirs[order, 0], rtol=1 / 255, scale=1.0)


def test_mixed_sizes_are_resized_only_by_a_rule(tmp_path):
    images = digits_8bit(3, (0, 1))
    write_folder(tmp_path / "mixed", images, scale=2)
    save(tmp_path / "mixed" / "1" / "big.png", images[1][0].repeat(3, 0).repeat(3, 1))
    refused(xai("train", "--dataset", tmp_path / "mixed", "--model", "image-cnn", "--out",
                tmp_path / "run"), "big.png is 24x24 pixels but ", "000.png is 16x16",
            "--data size=HxW")
    assert not (tmp_path / "run").exists()
    data = load_dataset(spec(tmp_path / "mixed", size=16))
    assert data.train.X.shape[1:] == (256, 1) and len(data.train) + len(data.test) == 7


def test_the_colour_rule_converts_every_image(tmp_path):
    rng = np.random.default_rng(0)
    grey = {c: rng.integers(0, 256, (3, 6, 6), dtype=np.uint8) for c in ("a", "b")}
    colour = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    for c, stack in grey.items():
        for i, image in enumerate(stack):
            save(tmp_path / "mix" / c / f"{i}.png", image)
    save(tmp_path / "mix" / "b" / "colour.png", colour)
    message = refused(xai("train", "--dataset", tmp_path / "mix", "--model", "image-cnn", "--out",
                          tmp_path / "run"), "colour.png is colour but ", "0.png is greyscale",
                      "--data mode=L or --data mode=RGB")
    assert "mix/a/0.png" in message and not (tmp_path / "run").exists()
    rgb = load_dataset(spec(tmp_path / "mix", mode="RGB"))
    assert rgb.feature_names == ["red", "green", "blue"]
    X = np.concatenate([rgb.train.X, rgb.test.X])
    grey_rows = [x for x in X if (x == x[:, :1]).all()]
    assert len(grey_rows) == 6 and sorted(r[:, 0].tobytes() for r in grey_rows) == sorted(
        (g.astype(np.float32) / np.float32(255)).reshape(-1).tobytes()
        for stack in grey.values() for g in stack)
    assert any((x == colour.reshape(36, 3).astype(np.float32) / np.float32(255)).all() for x in X)
    luma = load_dataset(spec(tmp_path / "mix", mode="L"))
    X = np.concatenate([luma.train.X, luma.test.X])[..., 0]
    # ITU-R 601-2 luma, as Pillow's convert("L") (which rounds to 8 bits)
    expected = (colour.astype(np.float64) @ [0.299, 0.587, 0.114]).reshape(-1) / 255
    best = X[np.argmin(np.abs(X - expected).max(1))]
    assert_close(best, expected, rtol=1 / 255, scale=1.0)


def test_16_bit_and_palette_greys_are_greyscale_read_to_their_full_range(tmp_path):
    rng = np.random.default_rng(1)
    deep = {c: rng.integers(0, 65536, (2, 5, 7), dtype=np.uint16) for c in ("a", "b")}
    for c, stack in deep.items():
        for i, image in enumerate(stack):
            save(tmp_path / "deep" / c / f"{i}.png", image)
    palette = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).convert("P")
    palette.putpalette([v for g in range(256) for v in (g, g, g)])  # every entry a grey
    palette.save(tmp_path / "deep" / "a" / "palette.png")
    data = load_dataset(spec(tmp_path / "deep"))
    assert data.feature_names == ["grey"] and (data.info["height"], data.info["width"]) == (5, 7)
    X = np.concatenate([data.train.X, data.test.X])[..., 0]
    for image in [*deep["a"], *deep["b"]]:  # 16 bits: divided by 65535, nothing lost
        assert any((x == image.reshape(-1).astype(np.float32) / np.float32(65535)).all() for x in X)
    grey = np.asarray(palette.convert("L"), np.float32).reshape(-1) / np.float32(255)
    assert any((x == grey).all() for x in X)


def test_npz_images_in_either_layout_are_the_same_images_as_the_pngs(folder, tmp_path):
    root, written = folder
    files = sorted(written)
    X = np.stack([written[p] for p in files])  # uint8, 8-bit: divided by 255 as the PNGs are
    y = np.array([p.parent.name for p in files])
    np.savez(tmp_path / "first.npz", X=X[:, None], y=y)
    np.savez(tmp_path / "last.npz", X=X[..., None], y=y)
    pngs = load_dataset(spec(root))
    for data in (load_dataset(spec(tmp_path / "first.npz")),
                 load_dataset(spec(tmp_path / "last.npz", layout="NHWC"))):
        assert data.class_names == pngs.class_names and (data.test.y == pngs.test.y).all()
        assert (data.train.X == pngs.train.X).all() and (data.test.X == pngs.test.X).all()
    with pytest.raises(xaicore.XaiError, match=r"shape \(48, 16, 16, 1\).*give --data layout=NHWC"):
        load_dataset(spec(tmp_path / "last.npz"))
    with pytest.raises(xaicore.XaiError, match="size= and mode= convert image files"):
        load_dataset(spec(tmp_path / "first.npz", size=8))


def test_a_run_records_its_rule_and_refuses_its_folder_once_changed(tmp_path):
    write_folder(tmp_path / "small", digits_8bit(4, (0, 1)), scale=1)
    out = tmp_path / "run"
    result = xai("train", "--dataset", tmp_path / "small", "--model", "image-cnn", "--out", out,
                 "--epochs", "1", "--param", "channels=2", "--data", "size=16", "--data",
                 "resample=nearest", "--data", "mode=RGB", "--quiet")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert checkpoint["reading"] == {"size": [16, 16], "resample": "nearest", "mode": "RGB",
                                     "layout": "NCHW"}
    assert checkpoint["dataset"]["sha256"] and checkpoint["dataset"]["path"] == str(
        (tmp_path / "small").resolve())
    model = xaicore.load_run(out)
    assert model.image_size == (16, 16) and model.feature_names == ["red", "green", "blue"]
    # inputs are read by the run's rule: an 8x8 grey PNG becomes 16x16 RGB by nearest repetition
    image = digits_8bit(1, (5,))[5][0]
    source = registry.get_modality("images").open_input(
        model, save(tmp_path / "new" / "five.png", image), {})
    X, labels = source.read(0, 1)
    grid = image.astype(np.float32).repeat(2, 0).repeat(2, 1) / np.float32(255)
    assert labels is None and (X[0] == np.repeat(grid.reshape(256, 1), 3, axis=1)).all()
    assert xai("explain", "--run", out, "--method", "gradcam", "--samples", "0:2").exit_code == 0
    save(tmp_path / "small" / "1" / "extra.png", image)
    refused(xai("explain", "--run", out, "--method", "gradcam", "--samples", "0:2", "--force"),
            "small has changed since the run was trained on it")


def test_explain_streams_a_folder_and_arrays_as_the_same_images_in_memory(run, folder, tmp_path):
    root, written = folder
    result = xai("explain", "--run", run, "--input", root, "--method", "gradcam", "--method",
                 "saliency", "--batch-size", "20", "--out", tmp_path / "folder")
    assert result.exit_code == 0, result.output
    model = xaicore.load_run(run)
    X = in_order(written)
    labels = [int(p.parent.name) for p in sorted(written)]
    for method in ("gradcam", "saliency"):
        stored = load_explanation(tmp_path / "folder" / f"{method}.zarr").load()
        alone = xaicore.explain(model, X, method=method)
        assert stored.n_samples == 48 and stored.labels.tolist() == labels
        assert (stored.inputs == X).all() and (stored.predictions == alone.predictions).all()
        assert_close(stored.attributions, alone.attributions)  # other batch splits
    files = sorted(written)
    np.savez(tmp_path / "images.npz", X=np.stack([written[p] for p in files])[..., None],
             y=np.array([p.parent.name for p in files]))
    np.save(tmp_path / "images.npy", X.reshape(48, 1, 16, 16))
    eight_bit = np.stack([written[p] for p in files])[:, None]
    assert (model.check_inputs(eight_bit) == X).all()  # the API divides 8-bit pixels as files do
    for name in ("images.npz", "images.npy"):
        result = xai("explain", "--run", run, "--input", tmp_path / name, "--method", "gradcam",
                     "--out", tmp_path / name[-3:])
        assert result.exit_code == 0, result.output
        stored = load_explanation(tmp_path / name[-3:] / "gradcam.zarr").load()
        assert (stored.inputs == X).all()
        assert stored.labels.tolist() == (labels if name == "images.npz" else [-1] * 48)
    assert_close(stored.attributions, load_explanation(tmp_path / "folder" / "gradcam.zarr")
                 .load().attributions)


def test_predict_classifies_a_folder_and_reads_its_class_folders_as_labels(run, folder, tmp_path):
    root, written = folder
    out = tmp_path / "predictions.csv"
    result = xai("predict", "--run", run, "--input", root, "--out", out)
    assert result.exit_code == 0, result.output
    rows = np.genfromtxt(out, delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert [str(t) for t in rows["true"]] == [p.parent.name for p in sorted(written)]
    assert list(rows["source"]) == [p.relative_to(root).as_posix() for p in sorted(written)]
    probabilities = xaicore.load_run(run).predict_proba(in_order(written))
    written_probabilities = np.stack([rows[f"prob_{c}"] for c in "012"], axis=1)
    assert np.abs(written_probabilities - probabilities).max() <= 5e-7  # 6 decimals in the CSV


def bad_folder(root: Path, kind: str) -> Path:
    """A small two-class folder of 8x8 PNGs with one thing wrong."""
    images = digits_8bit(3, (0, 1))
    write_folder(root, images, scale=1)
    if kind == "truncated":
        data = (root / "1" / "001.png").read_bytes()
        (root / "1" / "001.png").write_bytes(data[:len(data) // 2])
    elif kind == "junk":
        (root / "0" / "notes.jpg").write_text("not an image")
    elif kind == "tiny":
        save(root / "0" / "dot.png", np.zeros((1, 1), np.uint8))
    elif kind == "empty class":
        (root / "2").mkdir()
    elif kind == "no images":
        shutil.rmtree(root)
        (root / "a").mkdir(parents=True)
        (root / "a" / "readme.txt").write_text("nothing here")
        return root / "a"
    elif kind == "flat":
        save(root / "loose.png", images[0][0])
    elif kind == "one class":
        shutil.rmtree(root / "1")
    return root


@pytest.mark.parametrize("kind, fragments", [
    ("truncated", ["1/001.png: cannot read the image (OSError: image file is truncated",
                   "it is truncated or not an image file"]),
    ("junk", ["0/notes.jpg: cannot read the image (UnidentifiedImageError"]),
    ("tiny", ["0/dot.png is a 1x1-pixel image; images need at least 2x2 pixels"]),
    ("empty class", ["class folder ", "/2 holds no images (.png, .jpg"]),
    ("no images", ["/a holds no images (.png"]),
    ("flat", ["holds images (loose.png, ...) beside class subfolders (0/, ...)"]),
    ("one class", ["has one class folder (0/); a classifier needs at least 2"]),
])
def test_bad_training_images_are_one_line_errors_and_leave_no_run(tmp_path, kind, fragments):
    out = tmp_path / "runs" / "run"
    refused(xai("train", "--dataset", bad_folder(tmp_path / "data", kind), "--model", "image-cnn",
                "--out", out, "--epochs", "1"), *fragments)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind, fragments", [
    ("truncated", ["2/z.png: cannot read the image (OSError: image file is truncated"]),
    ("unknown class", ["/7: class '7' is not a class of model 'image-cnn' (0, 1, 2)"]),
    ("size", ["is 8x8 pixels but model 'image-cnn' reads 16x16 images, and its run was trained "
              "without a rule to resize them (--data size=)"]),
    ("colour", ["rgb.png is colour but model 'image-cnn' reads greyscale images, and its run was "
                "trained without a rule to convert them (--data mode=)"]),
    ("tiny", ["dot.png is a 1x1-pixel image"]),
    ("empty class", ["/1 holds no images"]),
])
def test_bad_input_images_are_one_line_errors_and_write_nothing(run, folder, tmp_path, kind,
                                                                fragments):
    """Every file is decoded before the first batch: a bad one in the last batch writes no store."""
    inputs = tmp_path / "inputs"
    (inputs / "2").mkdir(parents=True)
    for i, path in enumerate(sorted(folder[1])[-6:]):  # class 2's last images
        shutil.copy(path, inputs / "2" / f"{i}.png")
    last = inputs / "2" / "z.png"
    if kind == "truncated":
        data = sorted(folder[1])[0].read_bytes()
        last.write_bytes(data[:len(data) // 2])
    elif kind == "unknown class":
        save(inputs / "7" / "a.png", np.zeros((16, 16), np.uint8))
    elif kind == "size":
        save(last, np.zeros((8, 8), np.uint8))
    elif kind == "colour":
        save(inputs / "2" / "rgb.png", np.zeros((16, 16, 3), np.uint8))
    elif kind == "tiny":
        save(inputs / "2" / "dot.png", np.zeros((1, 1), np.uint8))
    elif kind == "empty class":
        (inputs / "1").mkdir()
    out = tmp_path / "out"
    refused(xai("explain", "--run", run, "--input", inputs, "--method", "gradcam", "--batch-size",
                "2", "--out", out), *fragments)
    assert not out.exists()
    refused(xai("predict", "--run", run, "--input", inputs, "--out", tmp_path / "p.csv"),
            *fragments)
    assert not (tmp_path / "p.csv").exists()


def test_samples_beside_input_is_refused_not_ignored(folder, run, tmp_path):
    result = xai("explain", "--run", run, "--input", folder[0], "--samples", "0:4", "--method",
                 "saliency", "--out", tmp_path / "out")
    assert result.exit_code != 0 and "--input explains every row of its file" in result.output
    assert not (tmp_path / "out").exists()
