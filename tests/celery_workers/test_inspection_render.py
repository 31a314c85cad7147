"""What ``status`` prints of a worker that named its queues but did not say in time what it
runs: unknown, never "idle" (a loaded host answers the second question late)."""

from __future__ import annotations

from rich.console import Console

from usm_bridge.workers.inspection import ActiveTask, WorkersView, WorkerView
from usm_bridge.workers.inspection_render import workers_renderables


def _printed(view: WorkersView) -> str:
    console = Console(width=200, record=True)
    for renderable in workers_renderables(view):
        console.print(renderable)
    return console.export_text()


def test_a_worker_that_did_not_say_what_it_runs_is_not_shown_idle() -> None:
    late = WorkerView("w1@host", ("tool.it-snow",), active_known=False)
    idle = WorkerView("w2@host", ("tool.hr-mail",))
    busy = WorkerView("w3@host", ("tool.fac",), (ActiveTask("cycle", "fac", 2.5),))
    view = WorkersView("redis://127.0.0.1:6379/0", 0.5, (late, idle, busy))
    rows = {line.split()[1]: line for line in _printed(view).splitlines() if "@host" in line}
    assert "did not say what it runs in time" in rows["w1@host"]
    assert "idle" not in rows["w1@host"]
    assert "idle" in rows["w2@host"]
    assert "fac" in rows["w3@host"] and "idle" not in rows["w3@host"]
    documents = [worker.as_json()["active"] for worker in view.workers]
    assert documents[0] is None and documents[1] == []
    assert documents[2] == [{"task": "cycle", "instance": "fac", "running_seconds": 2.5}]
