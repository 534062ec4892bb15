"""`convlens models list|show|alias|delete`: the model registry (every train job's model as NAME:VERSION)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convlens.api.cli_jobs import Json
from convlens.api.output import emit, fail, print_json, ready_database, require_tensorflow
from convlens.worker import audit, registry
from convlens.worker.kinds.base import number
from convlens.worker.paths import REF_HELP

models_app = typer.Typer(help="The model registry: every train job's model as NAME:VERSION (NAME from --name; "
                              "an unnamed train's by its short id), aliases such as NAME@champion; --model takes any "
                              "of them.",
                         no_args_is_help=True)
COLUMNS = ["ref", "aliases", "preset", "accuracy", "macro_f1", "ece", "temperature", "job_id", "present"]


@models_app.command("list")
def list_(name: Annotated[str | None, typer.Argument(help="only this name's versions")] = None,
          as_json: Json = False) -> None:
    """Every registered model, newest version of each name first, with its test figures."""
    ready_database()
    views = registry.list_models(name)
    if as_json:
        print_json([v.model_dump(mode="json") for v in views])
        return
    emit([{**v.model_dump(), "aliases": ",".join(v.aliases) or None, "job_id": v.job_id[:8]} for v in views],
         False, False, COLUMNS)


@models_app.command("show")
def show(ref: Annotated[str, typer.Argument(help=REF_HELP)], as_json: Json = False) -> None:
    """One model: what it takes, its classes, calibration and figures, the job that made it."""
    ready_database()
    v = registry.show(ref)
    if as_json:
        print_json(v.model_dump(mode="json"))
        return
    for key, value in v.model_dump().items():
        shown = (", ".join(number(x) if isinstance(x, float) else str(x) for x in value) if isinstance(value, list)
                 else number(value) if isinstance(value, float) else value)
        typer.echo(f"{key:16} {shown}")


@models_app.command("import")
def import_(
    file: Annotated[str, typer.Argument(help="a .keras file or a TensorFlow SavedModel folder")],
    name: Annotated[str, typer.Option("--name", help="the registry name (versions count up per name)")],
    classes: Annotated[str | None, typer.Option(help="the class of each output, in order: a,b,c")] = None,
    classes_from: Annotated[str | None, typer.Option(help="a folder whose sub-folders name the classes")] = None,
    input_scale: Annotated[str, typer.Option(help="what the model takes: 1/255 (pixels / 255), 1 (0-255) or "
                                                  "-1..1")] = "1/255",
    calibrate: Annotated[str | None, typer.Option(help="a labelled folder (FOLDER/<class>/...) to fit the "
                                                       "temperature, thresholds and conformal sets on")] = None,
    as_json: Json = False,
) -> None:
    """Import a model trained elsewhere: checked, wrapped to take convlens's input, registered as NAME:VERSION."""
    from convlens.api.cli_jobs import execute
    from convlens.worker.labels import JobLabels

    params = {"file": file, "classes": classes.split(",") if classes else None, "classes_from": classes_from,
              "input_scale": input_scale, "calibrate": calibrate}
    execute("import", params, "run", True, as_json, labels=JobLabels(name=name))
    if not as_json:
        typer.echo(f"registered as {registry.list_models(registry.model_name(name))[0].ref}: use --model "
                   f"{registry.model_name(name)}")


@models_app.command("export")
def export(
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    format_: Annotated[str, typer.Option("--format", help="savedmodel | tflite | onnx")] = "savedmodel",
    out: Annotated[Path | None, typer.Option(help="folder to write (default: ./NAME-VERSION-FORMAT)")] = None,
    check_folder: Annotated[Path | None, typer.Option(help="check on these images instead of CIFAR-10 test "
                                                          "images")] = None,
    check_images: Annotated[int, typer.Option(help="images the export is checked on")] = 1000,
    as_json: Json = False,
) -> None:
    """Write the model for another runtime (pixels 0-255 in, calibrated probabilities out, class names beside
    it), then reload it there and compare it with Keras."""
    require_tensorflow()
    ready_database()
    from convlens.ml.export import FORMATS, export
    from convlens.ml.saved import load_trained

    if format_ not in FORMATS:
        fail(f"--format {format_!r}: one of {', '.join(FORMATS)}")
    job_id = registry.resolve_ref(ref)
    view = registry.show(job_id)
    model = registry.model_file(job_id, strict_paths=False)
    trained = load_trained(model.path, model.registered)
    images = _check_images(trained.input_size, check_folder, check_images)
    report = export(trained, format_, out or Path(f"{view.ref.replace(':', '-')}-{format_}"), images)
    audit.record(audit.Action.EXPORT, view.ref, format=format_, path=str(report.path),
                 top1_agreement=report.top1_agreement)
    if as_json:
        print_json({"model": view.ref, **{k: str(v) if isinstance(v, Path) else v
                                          for k, v in vars(report).items()}})
        return
    typer.echo(f"{view.ref} exported as {report.format}: {report.path}")
    precision = ("" if report.served_policy == "float32" else
                 f"; the served model computes in {report.served_policy}, the export in float32")
    typer.echo(f"checked in its runtime on {report.images} images against the model as classify serves it: top-1 "
               f"agreement {report.top1_agreement:.4f}, largest probability difference "
               f"{report.max_probability_difference:.2e}{precision}")


def _check_images(size: tuple[int, int], folder: Path | None, n: int):  # noqa: ANN202  (uint8 images)
    import numpy as np

    from convlens.ml.data.images import decode_batch, list_files, resize

    if folder is not None:
        batch = decode_batch(list_files(folder)[:n], size, within=folder)
        if not len(batch.images):
            fail(f"{folder}: no readable images to check the export on")
        return batch.images
    from convlens.ml.data.cifar import load_cifar10
    from convlens.ml.data.splits import stratified_subset
    from convlens.ml.settings import settings

    data = load_cifar10(settings().datasets_dir)  # its test records are sorted by class: a stratified sample
    x = data.x_test[np.sort(stratified_subset(data.y_test, n, seed=0))]
    return x if x.shape[1:3] == size else np.stack([resize(i, size) for i in x])


@models_app.command("alias")
def alias(ref: str, name: Annotated[str, typer.Argument(help="e.g. champion: then --model NAME@champion")]) -> None:
    """Point NAME@ALIAS at this model (moving the alias from another version)."""
    ready_database()
    v = registry.set_alias(ref, name)
    typer.echo(f"{v.name}@{name} -> {v.ref}")


@models_app.command("delete")
def delete(ref: str) -> None:
    """Remove a version from the registry (its aliases too); its train job and file stay."""
    ready_database()
    typer.echo(f"deleted {registry.delete_model(ref)} from the registry")
