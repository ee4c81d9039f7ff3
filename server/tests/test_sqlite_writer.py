"""SQLite's writers take turns on the process's lock: a thread does not even try to begin a write
while another thread of its process is in one (none waits in SQLite's sleeping busy handler), and
every wait for the lock ends within the database's timeout."""

import json
import os

from server.tests.conftest import python

# Six threads, five write transactions each, each holding the write lock for 20 ms. SQLite reports
# every statement as it starts running (its trace callback): the BEGINs and COMMITs are noted, with
# the thread that ran them. Prints the notes, in order, as JSON.
SCRIPT = """
import json, threading, time
import django
django.setup()
from django.db import connection, transaction
from django.db.backends.signals import connection_created

notes, lock, start = [], threading.Lock(), threading.Barrier(6)

def trace(sql):
    if sql.startswith(("BEGIN", "COMMIT")):
        with lock:
            notes.append((threading.get_ident(), sql.split()[0]))

def traced(connection, **kwargs):
    connection.connection.set_trace_callback(trace)

connection_created.connect(traced)

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")

def writer():
    start.wait()
    for n in range(5):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (%s)", [n])
            time.sleep(0.02)
    connection.close()

threads = [threading.Thread(target=writer) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(notes))
"""


def _env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "datapusher.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'writers.sqlite3'}",
        "SECRET_KEY": "writer-test",
        "DEBUG": "false",
    }


def test_threads_of_a_process_begin_writing_one_after_another(tmp_path):
    """Between one thread's BEGIN and its COMMIT no other thread's BEGIN starts (none waits inside
    SQLite): 30 transactions from six threads at once run one after another."""
    finished = python("-c", SCRIPT, env=_env(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    notes = json.loads(finished.stdout)
    assert [what for _, what in notes] == ["BEGIN", "COMMIT"] * 30
    assert all(notes[i][0] == notes[i + 1][0] for i in range(0, 60, 2))


# With the database's timeout at 0.5 s, a writer tries to write while the lock is held: by another
# thread of this process for 3 s; by another connection (as another process would) for 3 s; by
# another connection for 0.1 s. Prints what each try ended with.
BOUNDED = """
import sqlite3, threading, time
import django
from django.conf import settings
django.setup()
settings.DATABASES["default"]["OPTIONS"]["timeout"] = 0.5
from django.db import OperationalError, connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")

def write():
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (2)")
        return "committed"
    except OperationalError as err:
        return f"OperationalError: {err}"

held = threading.Event()

def thread_holding():
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        held.set()
        time.sleep(3)

def connection_holding(seconds):
    other = sqlite3.connect(settings.DATABASES["default"]["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    other.execute("COMMIT")

outcomes = []
for holder, args in ((thread_holding, ()), (connection_holding, (3,)), (connection_holding, (0.1,))):
    held.clear()
    thread = threading.Thread(target=holder, args=args)
    thread.start()
    held.wait()
    outcomes.append(write())
    thread.join()
print(" | ".join(outcomes))
"""


def test_a_writer_waits_for_the_lock_no_longer_than_the_database_timeout(tmp_path):
    """While another thread, or another connection, holds the write lock for 3 s, a writer with a
    0.5 s timeout gets "database is locked" (which the app answers with 503); a lock held for
    0.1 s is waited out."""
    finished = python("-c", BOUNDED, env=_env(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    locked = "OperationalError: database is locked"
    assert finished.stdout.strip() == f"{locked} | {locked} | committed"


# A transaction whose COMMIT fails (a deferred foreign key) and is rolled back; then another thread
# writes, with the database's timeout at 0.5 s; then this connection's busy timeout is read back.
AFTER_A_FAILED_COMMIT = """
import threading
import django
from django.conf import settings
django.setup()
settings.DATABASES["default"]["OPTIONS"]["timeout"] = 0.5
from django.db import IntegrityError, OperationalError, connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    cursor.execute("CREATE TABLE c (p_id INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)")
outcomes = []
try:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO c VALUES (42)")
except IntegrityError:
    outcomes.append("IntegrityError")

def other():
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO p VALUES (1)")
        outcomes.append("committed")
    except OperationalError as err:
        outcomes.append(f"OperationalError: {err}")

thread = threading.Thread(target=other)
thread.start()
thread.join()
with connection.cursor() as cursor:
    cursor.execute("PRAGMA busy_timeout")
    outcomes.append(str(cursor.fetchone()[0]))
print(" | ".join(outcomes))
"""


def test_a_failed_commit_gives_the_lock_back_and_the_busy_timeout_is_restored(tmp_path):
    """After a COMMIT refused by a deferred foreign key, another thread writes at once, and the
    connection's busy timeout is the database's timeout again."""
    finished = python("-c", AFTER_A_FAILED_COMMIT, env=_env(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip() == "IntegrityError | committed | 500"
