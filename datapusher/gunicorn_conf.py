"""gunicorn settings beyond `make serve`'s command line (`--config python:datapusher.gunicorn_conf`).

Metrics in multiprocess mode (server/metrics.py): a worker that exits has its files marked dead, so
that live gauges stop counting it; its counters stay in the sums.
"""

import os

from prometheus_client import multiprocess


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
