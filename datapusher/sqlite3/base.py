"""SQLite with one writer at a time per process, queued on a lock instead of polling.

SQLite lets one transaction write at a time. A writer that finds the database locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10 … up to 100 ms between tries: under load, most of
a request's time went to those sleeps while the lock had long been free (p99 above 800 ms). Here a
thread takes this process's writer lock before BEGIN IMMEDIATE and gives it back at COMMIT or
ROLLBACK, so the threads of a process wait their turn on a lock that wakes them at once. Other
processes still meet in the busy handler, one writer each.
"""

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

_writer = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_writer = False

    def _start_transaction_under_autocommit(self):
        # Bounded like SQLite's own wait for the lock (the "timeout" option, 20 s here).
        if not _writer.acquire(timeout=self.settings_dict["OPTIONS"].get("timeout", 5)):
            raise OperationalError("database is locked")
        self._holds_writer = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_writer()

    def _release_writer(self):
        if self._holds_writer:
            self._holds_writer = False
            _writer.release()
