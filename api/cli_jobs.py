"""`convlens run KIND` and `convlens submit KIND`: one command per job kind, options made from its params model."""

from __future__ import annotations

import inspect
import json
import signal
import sys
import threading
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from convlens.api import queries
from convlens.api.follow import follow, follow_in_background
from convlens.api.output import fail, print_json, ready_database, require_tensorflow
from convlens.api.schemas import JobView
from convlens.ml.config import TrainOptions
from convlens.ml.errors import ConvlensError, one_line
from convlens.ml.provenance import Provenance
from convlens.worker.kinds import KINDS, get_kind
from convlens.worker.kinds.kfold import KfoldParams
from convlens.worker.kinds.layers import LayersParams
from convlens.worker.labels import PRIORITY_HELP, JobLabels, PriorityName

run_app = typer.Typer(help="Run a job in this process (recorded in the database like a queued one).",
                      no_args_is_help=True)
submit_app = typer.Typer(help="Queue a job for the workers; prints its id.", no_args_is_help=True)

# The label fields whose CLI option is not the field's name: a list set by a repeatable, singular option.
LABEL_OPTIONS = {"tags": "--tag", "add_tags": "--add-tag", "remove_tags": "--remove-tag"}
Json = Annotated[bool, typer.Option("--json", help="print one JSON document")]
Wait = Annotated[bool, typer.Option("--wait", help="follow the job with a progress bar until it ends")]
Timeout = Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds (exit code 3)")]
After = Annotated[list[str] | None, typer.Option(
    "--after", help="a job that must succeed first (repeatable): this one waits, and fails if that one fails")]
Name = Annotated[str | None, typer.Option("--name", help="a name for the run")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="a tag to find the run by (repeatable)")]
Note = Annotated[str | None, typer.Option("--note", help="free text: why it was run")]
Priority = Annotated[PriorityName, typer.Option("--priority", help=PRIORITY_HELP)]


def wait_for_job(job_id: str, as_json: bool, timeout: float | None) -> None:
    """Follows a queued job to its end, then prints it; exit code 1 unless it succeeded, 3 on timeout."""
    from convlens.api.follow import WaitTimeout

    job = queries.get_job(job_id)
    # Ctrl-C ends the following between two polls (never inside a database call): the job goes on.
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        follow(job_id, stop=interrupted, quiet=as_json, timeout=timeout, queues=get_kind(job.kind).queues)
    except WaitTimeout as exc:
        fail(str(exc), code=3)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        now = queries.get_job(job_id)
        sys.stderr.write(f"\ninterrupted: job {job_id} is still {now.status if now else 'there'}; follow it again "
                         f"with `convlens jobs wait {job_id}`, or stop it with `convlens jobs cancel {job_id}`\n")
        raise typer.Exit(130)
    finish_output(job_id, as_json)


def execute(kind: str, params: dict[str, Any], mode: str, wait: bool, as_json: bool,
            timeout: float | None = None, after: list[str] | None = None, labels: JobLabels | None = None) -> None:
    """Runs the job here (`run`) or queues it (`submit`); params are validated where the job row is created."""
    from convlens.worker import steps

    if mode == "run":
        require_tensorflow()
        if not as_json and kind in ("train", "kfold", "study", "sweep"):  # the kinds that train here
            from convlens.ml.precision import training_choice

            typer.echo(training_choice(), err=True)
    ready_database()
    params = {k: v for k, v in params.items() if v is not None}
    try:
        if mode == "run":
            job_id = steps.create_job(kind, params, may_wait=False, labels=labels)
        else:
            from convlens.worker.tasks import submit

            submitted = submit(kind, params, after=after, labels=labels)
            job_id = submitted.job_id
            if submitted.unsent:
                typer.echo(f"job {job_id}: {submitted.unsent}", err=True)
    except ValidationError as exc:
        fail(f"bad {kind} options: " + one_line(exc))
    _say_resolved_model(params.get("model"), job_id)
    if mode == "run":
        thread, stop = follow_in_background(job_id, quiet=as_json)
        try:
            steps.execute_inline(job_id)
        except Exception as exc:  # recorded on the job; shown below
            if not as_json:
                typer.secho(f"job {job_id} failed: {exc}", fg="red", err=True)
        finally:
            stop.set()
            thread.join()
    elif not wait:
        job = queries.get_job(job_id)
        typer.echo(json.dumps({"id": job_id, "kind": kind, "status": job.status}) if as_json else job_id)
        return
    else:
        wait_for_job(job_id, as_json, timeout)
        return
    finish_output(job_id, as_json)


def _say_resolved_model(given: str | None, job_id: str) -> None:
    """A --model given by name: which version it named now (the job stores that version's train job)."""
    from convlens.worker import registry
    from convlens.worker.paths import JOB_ID

    job = queries.get_job(job_id)
    stored = (job.params or {}).get("model") if job else None
    if not given or not stored or not JOB_ID.fullmatch(str(stored)) or given == stored:
        return
    try:
        ref = registry.show(stored).ref
    except ConvlensError:
        return
    if ref != given:
        typer.echo(f"--model {given}: {ref} (job {stored[:8]})", err=True)


def finish_output(job_id: str, as_json: bool) -> None:
    job = queries.get_job(job_id)
    if as_json:
        print_json(job.model_dump(mode="json"))
    else:
        show_job(job)
    if job.status != "succeeded":
        raise typer.Exit(1)


def provenance_line(p: Provenance) -> str:
    code = p.convlens + (f" ({p.commit[:10]})" if p.commit else "")
    where = p.gpu or f"{p.cpu} [{' '.join(p.cpu_flags)}]"
    data = f", data {p.dataset_fingerprint[:12]}" if p.dataset_fingerprint else ""
    return (f"provenance: convlens {code}, Python {p.python}, TensorFlow {p.tensorflow}, Keras {p.keras}, "
            f"{where}, {p.precision_policy}, seed {p.seed}{data}")


def show_job(job: JobView) -> None:
    from convlens.api.follow import describe

    typer.echo(f"job {job.id}  {job.kind}  {job.status}  worker={job.worker or '-'}")
    if job.name or job.tags or job.note:
        typer.echo(f"name: {job.name or '-'}  tags: {' '.join(job.tags) or '-'}" + (f"\nnote: {job.note}"
                                                                                    if job.note else ""))
    if job.history:
        last = job.history[-1]
        typer.echo(f"epoch {int(last['epoch'])}: " + "  ".join(
            f"{k} {v:.4g}" for k, v in last.items() if k != "epoch") + "  (`convlens results history` for all)")
    if job.error:
        typer.secho(f"error: {job.error}", fg="red")
    if job.status == "running":
        typer.echo(f"progress: {describe(job.progress.model_dump() if job.progress else None)}")
    if job.status == "waiting":
        typer.echo(f"waiting for: {', '.join(job.waits_for or [])}")
    if job.provenance:
        typer.echo(provenance_line(job.provenance))
    kind = get_kind(job.kind)
    if isinstance(job.result, kind.result_model):  # a part's result is described on its parent's page
        for line in kind.describe(job.result):
            typer.secho(line, fg="yellow" if line.startswith("warning:") else None)
    stages = kind.stages if job.kind in KINDS else ()
    for child in [] if kind.open_ended else (job.children or [])[:50]:  # a sweep's trials are in its table
        which = f"{stages[child.part]}: {child.kind} {child.id}" if stages else f"part {child.part}"
        typer.echo(f"  {which}: {child.status} on {child.worker or '-'}")


# --- options made from a params model -----------------------------------------------------------

def _cli_type(annotation: Any) -> Any:
    """Typer has no Literal: choices travel as str and the params model checks them."""
    def bare(t: Any) -> Any:
        return typing.get_args(t)[0] if typing.get_origin(t) is Annotated else t

    annotation = bare(annotation)
    args = [bare(a) for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation)
    base = args[0] if optional and len(args) == 1 else annotation
    if typing.get_origin(base) is typing.Literal:
        base = type(typing.get_args(base)[0])
    return base | None if optional else base


def _flag(name: str, field: FieldInfo) -> str:
    """The CLI flag of a params field: its own name, unless the field names another (`--lr`, `--no-augment`)."""
    return (field.json_schema_extra or {}).get("cli") or "--" + name.replace("_", "-")


def model_options(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """A Typer option per field: `--no-X` for booleans that default to True, `--x/--no-x` for optional ones."""
    out = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = _flag(name, field)
        ann, default = _cli_type(field.annotation), field.default
        if flag.startswith("--no-"):  # a boolean that is on unless the flag is given
            option, ann, default = typer.Option(flag, help=field.description), bool, False
        elif field.annotation == bool | None:
            option = typer.Option(f"{flag}/--no-{flag[2:]}", help=field.description)
        else:
            option = typer.Option(flag, help=field.description)
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=Annotated[ann, option]))
    return out


def _params_from(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """Option values back into params: a `--no-X` flag given means X is False."""
    out = {}
    for name, field in model.model_fields.items():
        if name in values:
            out[name] = (not values[name]) if _flag(name, field).startswith("--no-") else values[name]
    return out


def kind_command(sub: typer.Typer, kind: str, mode: str, model: type[BaseModel],
                 leading: list[inspect.Parameter] = (), skip: tuple[str, ...] = (),
                 to_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Registers `run KIND` or `submit KIND` with one option per field of `model` (after `leading` ones)."""
    labels = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
              for n, a in (("name", Name), ("tag", Tags), ("note", Note))]
    queued = [inspect.Parameter("priority", inspect.Parameter.KEYWORD_ONLY, default="normal", annotation=Priority),
              inspect.Parameter("after", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=After),
              inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Wait),
              inspect.Parameter("timeout", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Timeout)]
    json_opt = inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json)
    parameters = [*leading, *model_options(model, skip), *labels, *(queued if mode == "submit" else []), json_opt]

    def command(**values: Any) -> None:
        params = _params_from(model, values)
        params = to_params(params | values) if to_params else params
        try:
            tags = JobLabels(name=values["name"], tags=values["tag"] or [], note=values["note"],
                             priority=values.get("priority", "normal"))
        except ValidationError as exc:
            fail(one_line(exc, LABEL_OPTIONS))
        execute(kind, params, mode, values.get("wait", False) or mode == "run", values["json_out"],
                values.get("timeout"), values.get("after"), tags)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = KINDS[kind].title[0].upper() + KINDS[kind].title[1:] + "."
    sub.command(kind)(command)


FolderArg = inspect.Parameter("folder", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
    str, typer.Argument(help="folder of images, walked recursively")])
ModelOpt = inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
    str, typer.Option("--model", help="NAME[:VERSION|@ALIAS] (convlens models list), a train job id, SWEEP_ID:best "
                            "or a .keras file")])
StudyFolderArg = inspect.Parameter("folder", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    str | None, typer.Argument(help="images to classify with Grad-CAM (default: a sample of CIFAR-10 test images)")])
SpaceOpt = inspect.Parameter("space", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
    list[str], typer.Option("--space", help="NAME=SPEC searched (repeatable): log:LOW:HIGH, uniform:LOW:HIGH, "
                            "int:LOW:HIGH or choice:A,B,C, e.g. learning_rate=log:1e-4:3e-2")])
LayerOpt = inspect.Parameter("layer", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    list[str] | None, typer.Option(help="a conv layer to probe (repeatable; default: all)")])


def _register(sub: typer.Typer, mode: str) -> None:
    from convlens.worker.kinds.classify import ClassifyParams
    from convlens.worker.kinds.study import StudyParams
    from convlens.worker.kinds.sweep import SweepParams

    kind_command(sub, "train", mode, TrainOptions)
    kind_command(sub, "kfold", mode, KfoldParams)
    kind_command(sub, "layers", mode, LayersParams, leading=[ModelOpt, LayerOpt],
                 skip=("model", "layers", "cumulative"),
                 to_params=lambda v: {**_params_from(LayersParams, v), "model": v["model"], "layers": v["layer"]})
    kind_command(sub, "classify", mode, ClassifyParams, leading=[FolderArg, ModelOpt],
                 skip=("folder", "model"),
                 to_params=lambda v: {**_params_from(ClassifyParams, v), "folder": v["folder"], "model": v["model"]})
    kind_command(sub, "study", mode, StudyParams, leading=[StudyFolderArg], skip=("folder",),
                 to_params=lambda v: {**_params_from(StudyParams, v), "folder": v["folder"]})
    kind_command(sub, "sweep", mode, SweepParams, leading=[SpaceOpt], skip=("space",),
                 to_params=lambda v: {**_params_from(SweepParams, v), "space": v["space"]})


_register(run_app, "run")
_register(submit_app, "submit")
