"""The id of the web request being served, or of the web request that queued the running
Celery task: audit events and log lines carry it, so one id follows a click into the worker.

``RequestIdMiddleware`` sets it for a request. A task queued meanwhile carries it in its
message headers, and the worker sets it while the task runs (the Celery signals in
``console/celery.py``). Plain Python: the Celery app imports this before Django is set up.
"""

from contextvars import ContextVar, Token

_request_id: ContextVar[str] = ContextVar("request_id", default="")

# The task message header that carries the id from the web process to the worker.
TASK_HEADER = "modelgate_request_id"


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> Token:
    return _request_id.set(value)


def reset_request_id(token: Token) -> None:
    _request_id.reset(token)
