import os

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from console.request_id import TASK_HEADER, current_request_id, reset_request_id, set_request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("modelgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# The id of the web request that queued a task travels in the task's headers, so the audit
# events the task writes carry it (console/request_id.py).
@before_task_publish.connect
def _request_id_to_headers(headers=None, **kwargs):
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


@task_prerun.connect
def _request_id_from_headers(task=None, **kwargs):
    # A task run eagerly in the web process keeps the id of the request it runs in.
    request_id = getattr(task.request, TASK_HEADER, None) or current_request_id()
    task.request.request_id_token = set_request_id(request_id)


@task_postrun.connect
def _request_id_cleared(task=None, **kwargs):
    token = getattr(task.request, "request_id_token", None)
    if token is not None:
        reset_request_id(token)
