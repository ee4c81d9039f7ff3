"""SQLite's writers queue on the process's lock: a thread does not even try to begin a write while
another thread of its process is in one (so none waits in SQLite's sleeping busy handler)."""

import json
import os

from server.tests.conftest import python

# Six threads, five write transactions each, each holding the write lock for 20 ms; every thread
# notes when it asks to begin and, as its last step before COMMIT, that it is committing. Prints the
# notes, in order, as JSON.
SCRIPT = """
import json, threading, time
import django
django.setup()
from django.db import connection, transaction

notes, lock, start = [], threading.Lock(), threading.Barrier(6)

def note(what):
    with lock:
        notes.append((threading.get_ident(), what))

def asking_to_begin(execute, sql, params, many, context):
    if sql.startswith("BEGIN"):
        note("begin")
    return execute(sql, params, many, context)

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")

def writer():
    start.wait()
    for n in range(5):
        with connection.execute_wrapper(asking_to_begin):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO t VALUES (%s)", [n])
                time.sleep(0.02)
                note("committing")
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
    """Between a thread asking to begin a write and its commit, no other thread asks: 30
    transactions from six threads at once, each asking only once the one before is committing."""
    finished = python("-c", SCRIPT, env=_env(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    notes = json.loads(finished.stdout)
    assert [what for _, what in notes] == ["begin", "committing"] * 30
    assert all(notes[i][0] == notes[i + 1][0] for i in range(0, 60, 2))


# One thread holds a write transaction for 3 s; another, with the database's timeout at 0.5 s, tries
# to write meanwhile. Prints what each ended with.
BOUNDED = """
import threading, time
import django
from django.conf import settings
django.setup()
settings.DATABASES["default"]["OPTIONS"]["timeout"] = 0.5
from django.db import OperationalError, connection, transaction

held = threading.Event()
outcomes = {}

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")

def holder():
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        held.set()
        time.sleep(3)
    outcomes["holder"] = "committed"

def latecomer():
    held.wait()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (2)")
        outcomes["latecomer"] = "committed"
    except OperationalError as err:
        outcomes["latecomer"] = f"OperationalError: {err}"

threads = [threading.Thread(target=holder), threading.Thread(target=latecomer)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(outcomes["holder"], "|", outcomes["latecomer"])
"""


def test_a_writer_waits_for_the_lock_no_longer_than_the_database_timeout(tmp_path):
    """While another thread holds a write for 3 s, a writer with a 0.5 s timeout gets "database is
    locked" (which the app answers with 503) instead of waiting it out."""
    finished = python("-c", BOUNDED, env=_env(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip() == "committed | OperationalError: database is locked"
