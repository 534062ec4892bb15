"""Every place production code opens, lists or loads a file, each with the reason it may: a path a user names is
opened only through the confined opener (ml.data.confined) and a model file only through ml.keras_file. A new
open, walk or load anywhere fails this test until it goes through them or is listed here with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "worker", "ml", "db", "migrations")
CALLS = {"open", "read_text", "read_bytes", "load_model", "walk", "scandir", "iterdir", "glob", "rglob", "ZipFile",
         "copytree", "copyfile", "copy2", "is_zipfile", "fdopen", "load", "write_text", "write_bytes"}
CONFINED = "the confined opener itself, or a descriptor it returned"
OWN = "convlens's own file under CONVLENS_HOME (runs, cache, database, broker), never a user's path"
PRIVATE = "a private temporary file or folder this process made"
OPERATOR = "a file the operator configured (CONVLENS_DATA_DIR's CIFAR-10, the probe cache), not a request's path"

ALLOWED = {
    "api/cli_artifacts.py:get:shutil.copyfile": OWN + " copied out to where the CLI's user asked",
    "api/cli_artifacts.py:get:shutil.copytree": OWN + " copied out to where the CLI's user asked",
    "api/cli_artifacts.py:get:target.rglob": "counts what the CLI just wrote",
    "api/cli_services.py:api:os.fdopen": OWN + " (the first login URL, created 0600)",
    "api/cli_services.py:api:os.open": OWN + " (the first login URL, created 0600)",
    "api/demo.py:_start_worker:log.open": OWN + " (the demo worker's log)",
    "api/predictions_parquet.py:write_parquet:path.open": "the Parquet file, written where the CLI's user asked",
    "api/files.py:confined_response:os.fdopen": CONFINED,
    "api/routes/predict.py:_classify:Path(r['overlay']).read_bytes": PRIVATE + " (the request's overlay)",
    "api/routes/predict.py:_classify:paths[-1].write_bytes": PRIVATE + " (an upload, under a numbered name)",
    "db/session.py:_private:os.open": OWN,
    "db/session.py:ensure_current:.open": OWN + " (the migration lock)",
    "ml/data/cifar.py:download_file:os.fdopen": OPERATOR,
    "ml/data/cifar.py:md5sum:path.open": OPERATOR,
    "ml/data/cifar.py:read_class_names:path.read_text": OPERATOR,
    "ml/data/cifar.py:safe_extract:tarfile.open": OPERATOR,
    "ml/data/confined.py:_walk_to:os.open": CONFINED,
    "ml/data/confined.py:_open_real:os.open": CONFINED,
    "ml/data/confined.py:copy_tree_confined:os.fdopen": CONFINED,
    "ml/data/confined.py:copy_tree_confined:.open": PRIVATE + " (the copy's target)",
    "ml/data/confined.py:copy_tree_confined:os.walk": "lists without following symlinks; each file is opened confined",
    "ml/data/folders.py:class_folders:os.scandir": "lists a checked folder; a symlinked class folder is refused",
    "ml/data/images.py:decoded:Image.open": CONFINED,
    "ml/data/images.py:decoded:img.load": CONFINED + " (PIL decoding an open image)",
    "ml/data/images.py:decoded:os.fdopen": CONFINED,
    "ml/data/images.py:file_paths:.walk": "lists without entering symlinked folders; files are opened confined",
    "ml/data/images.py:file_paths:os.scandir": "lists without entering symlinked folders; files are opened confined",
    "ml/data/images.py:walk:.walk": "lists without entering symlinked folders; files are opened confined",
    "ml/data/images.py:walk:os.scandir": "lists without entering symlinked folders; files are opened confined",
    "ml/export.py:_runtime:tf.saved_model.load": "the export convlens itself just wrote, reloaded to check it",
    "ml/export.py:export:path.write_bytes": "the export, written where the CLI's user asked",
    "ml/hardware.py:cpu:Path('/proc/cpuinfo').read_text": "the kernel's CPU description",
    "ml/hardware.py:measured_gains:probe_cache().read_text": OPERATOR,
    "ml/imported.py:_core:keras.models.load_model": PRIVATE + " (ml.keras_file.private_copy), safe mode on",
    "ml/imported.py:_core:tf.saved_model.load": PRIVATE + " (copied confined; `models import` runs on the server)",
    "ml/keras_file.py:private_copy:.open": PRIVATE,
    "ml/keras_file.py:private_copy:os.fdopen": CONFINED,
    "ml/keras_file.py:_checked:zipfile.ZipFile": CONFINED + ", or " + PRIVATE,
    "ml/keras_file.py:read_config:os.fdopen": CONFINED,
    "ml/keras_file.py:read_sidecar:os.fdopen": CONFINED,
    "ml/model_layout.py:model_files:folder.rglob": OWN + " (an imported model's SavedModel copy)",
    "ml/precision.py:bf16_gain:.open": OPERATOR,
    "ml/precision.py:bf16_gain:tmp.write_text": OPERATOR,
    "ml/provenance.py:_file_digest:.open": OPERATOR + " (only the CIFAR-10 files are read)",
    "ml/provenance.py:fingerprint:folder.glob": OPERATOR,
    "ml/provenance.py:fingerprint:os.walk": "an image folder's listing is only lstat-ed, never opened",
    "ml/saved.py:_repoint:zipfile.ZipFile": PRIVATE,
    "ml/settings.py:datasets_dir:self.home_dir / REMEMBERED_DATA_DIR.read_text": OWN,
    "ml/settings.py:remember_data_dir:file.read_text": OWN,
    "ml/settings.py:remember_data_dir:file.write_text": OWN,
    "ml/saved.py:atomic_write_text:os.fdopen": OWN,
    "ml/saved.py:load_trained:keras.models.load_model": PRIVATE + " (ml.keras_file.private_copy), safe mode on",
    "ml/train.py:_model:keras.models.load_model": OWN + " (the job's own checkpoint), safe mode on",
    "ml/train.py:_model:state_path.read_text": OWN + " (the job's own checkpoint)",
    "worker/artifact_cache.py:blob:os.fdopen": OWN,
    "worker/artifact_cache.py:size:self.root.glob": OWN,
    "worker/artifact_cache.py:tree:shutil.copyfile": OWN,
    "worker/artifact_cache.py:trim:self.root.glob": OWN,
    "worker/artifacts.py:migrate:runs.glob": OWN,
    "worker/artifacts.py:read_blob:self.fs.open": OWN + " (the artifact store)",
    "worker/artifacts.py:read_chunks:.open": OWN + " (a job's output, published)",
    "worker/artifacts.py:write_blobs:path.read_bytes": OWN + " (a job's output, published)",
    "worker/artifacts.py:write_blobs:self.fs.open": OWN + " (the artifact store)",
    "worker/broker.py:_running_pid:.open": "the kernel's view of the embedded Redis's process",
    "worker/broker.py:_running_pid:pid_file.read_text": OWN,
    "worker/broker.py:_start_lock:os.open": OWN,
    "worker/kinds/study.py:_sample:folder.rglob": OWN + " (the study's own sample of test images)",
    "worker/kinds/study_report.py:write_study_report:path.write_text": OWN,
}


def _found() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.Call):
                        f = node.func
                        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                        if name in CALLS:
                            owner = ast.unparse(f.value) if isinstance(f, ast.Attribute) else ""
                            found.add(f"{path.relative_to(ROOT)}:{fn.name}:{owner}.{name}")
    return found


def test_every_file_opened_goes_through_the_confined_opener_or_says_why_not():
    found = _found()
    unexplained = sorted(found - set(ALLOWED))
    assert not unexplained, "open/read/list/load calls that bypass ml.data.confined, with no reason listed: " + \
        ", ".join(unexplained)
    stale = sorted(set(ALLOWED) - found)
    assert not stale, f"allowed calls that no longer exist (remove them from ALLOWED): {', '.join(stale)}"
