"""A job's name, tags and note: given when it is submitted, edited later (`jobs edit`, PATCH /jobs/{id})."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from convlens.db.models import FINISHED, Job, JobPriority, JobTag
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.ml.params import value_problem
from convlens.worker.errors import JobNotFound

MAX_TAGS = 32


def _text(value: str | None) -> str | None:
    problem = value_problem(value.replace("\n", " ")) if value else None
    if problem:
        raise ValueError(problem)
    return value


Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:=+-]{0,63}$",
                           description="1-64 letters, digits or _.:=+- (starting with a letter or digit)")]
Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_text)]
Note = Annotated[str, Field(max_length=4000), AfterValidator(_text)]
PriorityName = Literal["low", "normal", "high"]
PRIORITY_HELP = "its place within its owner's share: high before normal before low (owners take turns regardless)"


class JobLabels(BaseModel):
    """What a user calls a run: set when it is submitted."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, description="a name for the run (need not be unique)")
    tags: list[Tag] = Field([], max_length=MAX_TAGS, description="tags to find it by (e.g. lr-sweep)")
    note: Note | None = Field(None, description="free text: why it was run, what it showed")
    priority: PriorityName = Field("normal", description=PRIORITY_HELP + "; its children and parts inherit it")

    def apply(self, job: Job) -> None:
        job.name, job.note, job.priority = self.name, self.note, JobPriority[self.priority.upper()]
        job.tag_rows = [JobTag(tag=t) for t in dict.fromkeys(self.tags)]


class LabelEdit(BaseModel):
    """A change of a run's labels: None leaves a field as it is, an empty name or note clears it."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=128), AfterValidator(_text)] | None = None
    note: Note | None = None
    add_tags: list[Tag] = Field([], max_length=MAX_TAGS)
    remove_tags: list[Tag] = Field([], max_length=MAX_TAGS)
    priority: PriorityName | None = Field(None, description=PRIORITY_HELP + " (raising it: admin tokens only); "
                                          "its unfinished children and parts follow")

    def raises_priority_of(self, job_id: str) -> bool:
        with session_scope() as s:
            job = s.get(Job, job_id)
            return job is not None and self.priority is not None and \
                JobPriority[self.priority.upper()] > job.priority

    def apply(self, job: Job) -> None:
        if self.name is not None:
            job.name = self.name or None
        if self.note is not None:
            job.note = self.note or None
        kept = [t for t in job.tags if t not in self.remove_tags]
        tags = list(dict.fromkeys([*kept, *self.add_tags]))
        if len(tags) > MAX_TAGS:
            raise ConvlensError(f"a job has at most {MAX_TAGS} tags; it would have {len(tags)}", field="add_tags")
        job.tag_rows = [JobTag(tag=t) for t in tags]


def edit_labels(job_id: str, edit: LabelEdit) -> None:
    from convlens.worker import audit
    from convlens.worker.lifecycle import descendants

    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
        edit.apply(job)
        if edit.priority is not None:
            rank = JobPriority[edit.priority.upper()]
            for row in [job, *descendants(s, job_id)]:
                if row.status not in FINISHED:
                    row.priority = rank
        audit.record(audit.Action.EDIT, job_id, s, **edit.model_dump(exclude_defaults=True))
