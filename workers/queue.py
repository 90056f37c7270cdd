"""Work queued for the Celery workers, sent by task name on the control queue.

The services and the autoscaler queue the tasks of workers/tasks.py through here, so that
they need not import the module that calls them (the gateway sends its tasks by name the
same way, gateway/coldstart.py). One function per task, with the task's arguments."""
from celery import current_app

QUEUE = "control"


def _send(task: str, *args) -> None:
    current_app.send_task(f"workers.tasks.{task}", args=args, queue=QUEUE)


def deployment_load(deployment_id: int) -> None:
    _send("deployment_load", deployment_id)


def deployment_wake(deployment_id: int) -> None:
    _send("deployment_wake", deployment_id)


def deployment_scale_down(deployment_id: int, reason: str) -> None:
    _send("deployment_scale_down", deployment_id, reason)


def deployment_reconfigure(deployment_id: int, instances: int | None = None) -> None:
    _send("deployment_reconfigure", deployment_id, instances)


def deployment_replicas_fit(deployment_id: int) -> None:
    _send("deployment_replicas_fit", deployment_id)


def deployment_unload(deployment_id: int) -> None:
    _send("deployment_unload", deployment_id)
