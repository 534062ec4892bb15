"""CIFAR-10 parsing, download and extraction, image folders, splits and the input pipeline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA_DIR
from convlens.ml.data import cifar as C
from convlens.ml.data.folders import load_image_folder
from convlens.ml.data.images import decode_rgb
from convlens.ml.data.splits import long_tailed_indices, stratified_split, stratified_subset
from convlens.ml.errors import DatasetError

SRC = DATA_DIR / C.FOLDER


def test_cifar_binary_layout(cifar):
    assert cifar.x_train.shape == (50_000, 32, 32, 3) and cifar.x_train.dtype == np.uint8
    assert cifar.x_test.shape == (10_000, 32, 32, 3)
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    assert cifar.class_names[0] == "airplane" and cifar.class_names[9] == "truck"
    # Record 0 of batch 1: label byte, then the R, G and B planes row-major.
    raw = np.fromfile(SRC / "data_batch_1.bin", dtype=np.uint8, count=C.RECORD)
    assert cifar.y_train[0] == raw[0]
    assert np.array_equal(cifar.x_train[0][:, :, 0].ravel(), raw[1:1025])
    assert np.array_equal(cifar.x_train[0][:, :, 2].ravel(), raw[2049:3073])


def _copy_dataset(tmp_path: Path) -> Path:
    target = tmp_path / C.FOLDER
    shutil.copytree(SRC, target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def test_truncated_batch_names_the_file(tmp_path):
    folder = _copy_dataset(tmp_path)
    bad = folder / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:1_000_000])
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin: truncated"):
        C.load_cifar10(tmp_path, download=False)


def test_corrupt_label_and_missing_meta(tmp_path):
    folder = _copy_dataset(tmp_path)
    data = bytearray((folder / "test_batch.bin").read_bytes())
    data[0] = 200
    (folder / "test_batch.bin").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"test_batch\.bin: corrupt"):
        C.load_cifar10(tmp_path, download=False)
    (folder / "batches.meta.txt").unlink()
    with pytest.raises(DatasetError, match="batches.meta.txt"):
        C.read_class_names(folder / "batches.meta.txt")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> tuple[Path, str]:
    """A cifar-10-binary.tar.gz in the official layout, built from the shared files."""
    path = tmp_path_factory.mktemp("tar") / C.TARBALL
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(SRC, arcname=C.FOLDER)
    return path, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verify_extract(tmp_path, tarball, loopback_server):
    www, base = loopback_server
    shutil.copy(tarball[0], www / C.TARBALL)
    data_dir = tmp_path / "data"
    data = C.load_cifar10(data_dir, url=f"{base}/{C.TARBALL}", md5=tarball[1])
    assert data.x_train.shape == (50_000, 32, 32, 3)
    assert (data_dir / C.FOLDER / "test_batch.bin").is_file()


def test_download_md5_mismatch_leaves_nothing(tmp_path, tarball, loopback_server):
    www, base = loopback_server
    shutil.copy(tarball[0], www / C.TARBALL)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError, match="MD5 mismatch"):
        C.load_cifar10(data_dir, url=f"{base}/{C.TARBALL}")  # the official MD5: this tarball is not it
    assert list(data_dir.iterdir()) == []
    with pytest.raises(DatasetError, match="download failed"):
        C.load_cifar10(tmp_path / "d2", url=f"{base}/missing.tar.gz")


def test_extraction_refuses_escaping_members(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(DatasetError, match="unsafe member"):
        C.safe_extract(evil, target)
    assert not (tmp_path / "escaped.txt").exists()


def _write_images(root: Path, cifar) -> None:
    """Real CIFAR images saved in many formats, sizes and modes, plus unreadable files."""
    for cls, label in (("cat", 3), ("ship", 8)):
        d = root / cls / "nested"
        d.mkdir(parents=True)
        imgs = cifar.x_test[cifar.y_test == label][:6]
        Image.fromarray(imgs[0]).save(d / "a.png")
        Image.fromarray(imgs[1]).resize((300, 200)).save(d / "b.jpg", quality=90)
        Image.fromarray(imgs[2]).save(d / "c.bmp")
        Image.fromarray(imgs[3]).save(d / "d.webp")
        Image.fromarray(imgs[4]).convert("L").save(d / "e_gray.png")
        Image.fromarray(imgs[5]).convert("RGBA").save(d / "f_rgba.png")
        Image.fromarray(imgs[0]).convert("P").save(d / "g_palette.png")
    (root / "cat" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (root / "ship" / "empty.jpg").write_bytes(b"")
    (root / "ship" / "notes.txt").write_text("not an image")


def test_image_folder_any_format_and_errors(tmp_path, cifar):
    _write_images(tmp_path, cifar)
    data, errors = load_image_folder(tmp_path, (32, 32), test_fraction=0.25)
    assert data.class_names == ["cat", "ship"]
    assert len(data.x_train) + len(data.x_test) == 14
    assert data.x_train.shape[1:] == (32, 32, 3) and data.x_train.dtype == np.uint8
    bad = {Path(p).name: reason for p, reason in errors}
    assert set(bad) == {"corrupt.png", "empty.jpg", "notes.txt"}
    assert decode_rgb(tmp_path / "cat" / "nested" / "e_gray.png").shape == (32, 32, 3)
    with pytest.raises(DatasetError, match="not a folder"):
        load_image_folder(tmp_path / "nope")


def test_splits_are_stratified_and_repeatable(cifar):
    y = cifar.y_train
    keep, held = stratified_split(y, 0.1, seed=1)
    assert len(held) == 5000 and np.bincount(y[held]).tolist() == [500] * 10
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(y)
    assert np.array_equal(held, stratified_split(y, 0.1, seed=1)[1])
    sub = stratified_subset(y, 1000, seed=0)
    assert np.bincount(y[sub]).tolist() == [100] * 10
    lt = np.bincount(y[long_tailed_indices(y, 100, seed=0)])
    assert lt[0] == 5000 and lt[9] == 50 and all(np.diff(lt) <= 0)


def test_pipeline_batches_are_scaled_float32(cifar):
    from convlens.ml.data.pipeline import AugmentConfig, make_dataset, make_training_dataset

    ds = make_training_dataset(cifar.x_test[:100], cifar.y_test[:100], 10, 32, epochs=2, seed=0,
                               augment=AugmentConfig(flip=True, rotation=0.05, zoom=0.1, translation=0.1))
    batches = list(ds)
    assert len(batches) == 2 * 4  # ceil(100 / 32) per epoch
    x, y = batches[0]
    assert x.dtype.name == "float32" and x.shape == (32, 32, 32, 3)
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
    assert y.shape == (32, 10) and np.allclose(y.numpy().sum(1), 1)
    plain = next(iter(make_dataset(cifar.x_test[:8], None, 10, 8)))
    assert np.allclose(plain.numpy(), cifar.x_test[:8] / 255.0, atol=1e-6)


def test_alternating_flip_mirrors_each_image_every_other_epoch(cifar):
    import keras

    from convlens.ml.data.pipeline import AugmentConfig, make_training_dataset

    keras.utils.set_random_seed(0)  # as training does: a global seed must not upset the per-epoch shuffles
    x = cifar.x_test[:64]
    aug = AugmentConfig(flip=True, alternate_flip=True, translation=0.0)
    epochs = [np.concatenate([b[0].numpy() for b in make_training_dataset(
        x, cifar.y_test[:64], 10, 16, epochs=3, augment=aug, seed=0, first_epoch=e)][:4]) for e in (0, 1)]
    plain, mirrored = x / 255.0, x[:, :, ::-1] / 255.0

    def flipped(batch: np.ndarray) -> np.ndarray:
        """Per source image: 0 seen as is, 1 seen mirrored (each image appears once per epoch)."""
        state = np.full(len(x), -1)
        for img in batch:
            same = np.abs(plain - img).reshape(len(x), -1).max(1) < 1e-6
            mirror = np.abs(mirrored - img).reshape(len(x), -1).max(1) < 1e-6
            i = int(np.flatnonzero(same | mirror)[0])
            state[i] = 0 if same[i] else 1
        return state

    first, second = flipped(epochs[0]), flipped(epochs[1])
    assert (first >= 0).all() and (second >= 0).all()
    assert 16 < first.sum() < 48  # a random half in the first epoch
    assert (first != second).all()  # and the other view in the next
