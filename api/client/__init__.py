"""The Python client: `from convlens.client import Client`.

`Client(url, token)` talks to a convlens HTTP API; `Client()` with no URL works on this machine's home (the
embedded default, or whatever CONVLENS_* settings say) through the same methods, as the CLI does. Jobs come back
as typed views (`JobView`: `.status`, `.result`, ...), tables as pandas DataFrames, with every page followed.
Errors are typed: each API problem becomes a `ClientError` subclass carrying its message and HTTP status.

    from convlens.client import Client
    c = Client("http://127.0.0.1:8000", token="cl_...")
    job = c.wait(c.submit("classify", folder="/data/photos", model="pets@champion", gradcam=True))
    rows = c.predictions(job.id, min_confidence=0.9)     # a DataFrame: one row per image
    c.jobs(filter="metrics.accuracy > 0.6", sort="-metrics.accuracy")
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import httpx
import pandas as pd

from convlens.api.schemas import JobView, PredictionsView
from convlens.db.models import FINISHED


class ClientError(Exception):
    """A request the API refused, with its one-line message; `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status or self.status


def _problem(name: str, status: int, doc: str) -> type[ClientError]:
    return type(name, (ClientError,), {"status": status, "__doc__": doc, "__module__": __name__})


# The API's problems by status, one class each (catch them by class, or ClientError for all).
Unauthorized = _problem("Unauthorized", 401, "No token, or a revoked one.")
Forbidden = _problem("Forbidden", 403, "The token's scope does not allow it, or a path lies outside the roots.")
NotFound = _problem("NotFound", 404, "No such job, model or token.")
Conflict = _problem("Conflict", 409, "The job has already ended (nothing to cancel), or a token name is taken.")
Invalid = _problem("Invalid", 422, "Bad params, filter or sort: the message names the field and what it takes.")
QuotaExceeded = _problem("QuotaExceeded", 429, "The token has as many unfinished jobs as its quota allows.")
WaitTimeout = _problem("WaitTimeout", 408, "The job did not end within the wait's timeout (it goes on).")

_BY_STATUS = {c.status: c for c in (Unauthorized, Forbidden, NotFound, Conflict, Invalid, QuotaExceeded)}


def _error(status: int, message: str) -> ClientError:
    return _BY_STATUS.get(status, ClientError)(message, status)


class _Backend(ABC):
    """The requests the client makes, answered over HTTP or by this machine's home directly."""

    @abstractmethod
    def submit(self, body: dict[str, Any]) -> JobView: ...

    @abstractmethod
    def job(self, job_id: str) -> JobView: ...

    @abstractmethod
    def jobs(self, query: dict[str, Any]) -> list[JobView]: ...

    @abstractmethod
    def get(self, job_id: str, what: str, query: dict[str, Any] | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def cancel(self, job_id: str) -> JobView: ...

    @abstractmethod
    def edit(self, job_id: str, changes: dict[str, Any]) -> JobView: ...


class _Http(_Backend):
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"{self.http.base_url} cannot be reached: {exc}", 503) from None
        if r.status_code >= 400:
            try:
                message = r.json()["detail"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:300] or r.reason_phrase
            raise _error(r.status_code, message)
        return r.json()

    def submit(self, body: dict[str, Any]) -> JobView:
        return JobView.model_validate(self._call("POST", "/jobs", json=body))

    def job(self, job_id: str) -> JobView:
        return JobView.model_validate(self._call("GET", f"/jobs/{job_id}"))

    def jobs(self, query: dict[str, Any]) -> list[JobView]:
        return [JobView.model_validate(j) for j in self._call("GET", "/jobs", params=query)["jobs"]]

    def get(self, job_id: str, what: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/{what}", params=query or {})

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(self._call("POST", f"/jobs/{job_id}/cancel"))

    def edit(self, job_id: str, changes: dict[str, Any]) -> JobView:
        return JobView.model_validate(self._call("PATCH", f"/jobs/{job_id}", json=changes))


class _Local(_Backend):
    """This machine's home, as the CLI uses it: no token, paths as the CLI takes them."""

    def __init__(self) -> None:
        from convlens.db.session import ensure_current

        ensure_current()

    def _do(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from convlens.ml.errors import ConvlensError, one_line

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            raise Invalid(one_line(exc)) from None
        except ConvlensError as exc:
            raise _error(exc.http_status, str(exc)) from None

    def _existing(self, job_id: str) -> JobView:
        from convlens.api import queries
        from convlens.worker.job_ids import resolve_id

        found = queries.get_job(self._do(resolve_id, job_id))
        if found is None:
            raise NotFound(f"job {job_id} not found")
        return found

    def submit(self, body: dict[str, Any]) -> JobView:
        from convlens.api.schemas import JobRequest
        from convlens.worker.tasks import submit

        req = self._do(JobRequest.model_validate, body)
        return self._existing(self._do(submit, req.kind, req.params, after=req.after, labels=req).job_id)

    def job(self, job_id: str) -> JobView:
        return self._existing(job_id)

    def jobs(self, query: dict[str, Any]) -> list[JobView]:
        from convlens.api import queries
        from convlens.api.job_search import JobSearch

        search = self._do(JobSearch.parse, query.get("filter"), query.get("sort"), query.get("tag") or [])
        return self._do(queries.list_jobs, query.get("status"), query.get("kind"), None, query["limit"], 0,
                        search=search)

    def get(self, job_id: str, what: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        from convlens.api import queries
        from convlens.api.schemas import PredictionFilter, parse_cursor
        from convlens.worker.sweeps import sweep_view

        job = self._existing(job_id)
        if what == "metrics":
            return {"metrics": [m.model_dump(mode="json", by_alias=True) for m in queries.metrics(job.id)]}
        if what == "history":
            return {"epochs": job.history or []}
        if what == "trials":
            return self._do(sweep_view, job.id).model_dump(mode="json")
        query = dict(query or {})
        limit, after = query.pop("limit"), parse_cursor(query.pop("after", None))
        filters = self._do(PredictionFilter.model_validate, query)
        rows = self._do(queries.predictions, job.id, filters, limit=limit, after=after)
        return PredictionsView(job_id=job.id, predictions=rows, limit=limit, offset=0,
                               next_after=queries.next_cursor(rows, limit)).model_dump(mode="json")

    def cancel(self, job_id: str) -> JobView:
        from convlens.worker.tasks import cancel

        self._do(cancel, self._existing(job_id).id)
        return self._existing(job_id)

    def edit(self, job_id: str, changes: dict[str, Any]) -> JobView:
        from convlens.worker.labels import LabelEdit, edit_labels

        job = self._existing(job_id)
        self._do(edit_labels, job.id, self._do(LabelEdit.model_validate, changes))
        return self._existing(job.id)


class Client:
    """See the module's docstring. `url`: the API's base URL (None: this machine's home); `token`: an API token."""

    PAGE = 10_000  # prediction rows per request (the API's largest page)

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        self._backend: _Backend = _Http(url, token, timeout) if url else _Local()

    def submit(self, kind: str, *, name: str | None = None, tags: list[str] | None = None, note: str | None = None,
               priority: str = "normal", after: list[str] | None = None, **params: Any) -> str:
        """Queues a job of `kind` with `params` (as `convlens submit KIND` takes them); returns its id."""
        body = {"kind": kind, "params": params, "name": name, "tags": tags or [], "note": note,
                "priority": priority, "after": after or []}
        return self._backend.submit(body).id

    def job(self, job_id: str) -> JobView:
        return self._backend.job(job_id)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 1.0) -> JobView:
        """The job once it has ended (succeeded, failed or cancelled); WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self._backend.job(job_id)
            if job.status in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout:g} s (it goes on)")
            time.sleep(poll)

    def jobs(self, filter: str | None = None, tag: list[str] | None = None,  # noqa: A002
             sort: str | None = None, status: str | None = None, kind: str | None = None,
             limit: int = 1000) -> pd.DataFrame:
        """Top-level jobs as a DataFrame: id, kind, status, name, tags, priority, dates, and a column per
        parameter (params.NAME) and headline figure (metrics.NAME)."""
        query = {k: v for k, v in {"filter": filter, "tag": tag, "sort": sort, "status": status, "kind": kind,
                                   "limit": limit}.items() if v is not None}
        rows = []
        for j in self._backend.jobs(query):
            row = j.model_dump(mode="json", include={"id", "kind", "status", "name", "tags", "priority",
                                                     "submitted_by", "created_at", "started_at", "finished_at"})
            row |= {f"params.{k}": v for k, v in j.params.items() if not isinstance(v, list | dict)}
            row |= {f"metrics.{k}": v for k, v in (j.metrics or {}).items()}
            rows.append(row)
        return pd.DataFrame(rows)

    def metrics(self, job_id: str) -> pd.DataFrame:
        """Every stored figure: split, fold, class, name, value."""
        return pd.DataFrame(self._backend.get(job_id, "metrics")["metrics"])

    def history(self, job_id: str) -> pd.DataFrame:
        """One row per finished epoch (while it trains too)."""
        return pd.DataFrame(self._backend.get(job_id, "history")["epochs"])

    def trials(self, sweep_id: str) -> pd.DataFrame:
        """A sweep's trials: number, job, state, value, epochs and each searched option."""
        view = self._backend.get(sweep_id, "trials")
        return pd.DataFrame([{k: v for k, v in t.items() if k != "params"} | t.get("params", {})
                             for t in view["trials"]])

    def predictions(self, job_id: str, **filters: Any) -> pd.DataFrame:
        """Every prediction row the filters select (label, true_label, min_confidence, misclassified, uncertain,
        errors, set_size, min_set_size), all pages followed."""
        rows: list[dict[str, Any]] = []
        after = None
        while True:
            page = self._backend.get(job_id, "predictions", {**filters, "limit": self.PAGE,
                                                              **({"after": after} if after else {})})
            rows += page["predictions"]
            after = page.get("next_after")
            if not after:
                return pd.DataFrame(rows)

    def cancel(self, job_id: str) -> JobView:
        return self._backend.cancel(job_id)

    def edit(self, job_id: str, **changes: Any) -> JobView:
        """name, note, add_tags, remove_tags, priority (as `convlens jobs edit` takes them)."""
        return self._backend.edit(job_id, changes)
