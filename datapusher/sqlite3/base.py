"""SQLite with writers that take turns promptly, within a process and across processes.

SQLite lets one transaction write at a time. A writer that finds the database locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10 … up to 100 ms between tries: under load, most of
a request's time went to those sleeps while the lock had long been free (p99 above 1 s).

Here a thread takes its process's writer lock before it begins a transaction (`atomic`) and gives
it back once the transaction has ended (COMMIT, ROLLBACK or the connection closed), so the threads
of a process queue on a lock that wakes them at once. The one thread of each process that then
begins (BEGIN IMMEDIATE) tries again every half millisecond while another process writes, instead
of sleeping in the busy handler. Both waits end with "database is locked" after the database's
`timeout` option, as SQLite's own would. A write outside `atomic` (a lone UPDATE in autocommit)
takes no lock here and waits in SQLite's busy handler as before; the ingest's writes are all in
transactions.
"""

import sqlite3
import threading
import time

from django.db import OperationalError
from django.db.backends.sqlite3 import base
from django.db.backends.utils import debug_transaction

_writer = threading.Lock()
# How long a writer waits before it tries BEGIN IMMEDIATE again while another process writes.
BEGIN_RETRY_SECONDS = 0.0005


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_writer = False

    def _start_transaction_under_autocommit(self):
        timeout = self.settings_dict["OPTIONS"].get("timeout", 5)
        give_up_at = time.monotonic() + timeout
        if not _writer.acquire(timeout=timeout):
            raise OperationalError("database is locked")
        self._holds_writer = True
        try:
            with self.wrap_database_errors, debug_transaction(self, "BEGIN IMMEDIATE"):
                self._begin_immediate(give_up_at, busy_timeout_ms=int(timeout * 1000))
        except BaseException:
            self._release_writer()
            raise

    def _begin_immediate(self, give_up_at: float, busy_timeout_ms: int) -> None:
        """BEGIN IMMEDIATE, tried every BEGIN_RETRY_SECONDS until `give_up_at` while another
        process holds the write lock (SQLite's busy handler is off meanwhile, then set back)."""
        connection = self.connection
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) or time.monotonic() >= give_up_at:
                        raise
                time.sleep(BEGIN_RETRY_SECONDS)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")

    def _commit(self):
        try:
            return super()._commit()
        finally:
            # A COMMIT that failed (a deferred foreign key) leaves the transaction open, to be
            # rolled back: the lock is given back then.
            if self.connection is None or not self.connection.in_transaction:
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
