"""Reference figures for `gatehouse bench-tasks`, measured on this machine in the same run:

* dramatiq with the dramatiq-pg broker on the same PostgreSQL: no-op tasks sent one `send()`
  each, then drained by `dramatiq --processes P --threads T`, from the first message consumed to
  the last one done;
* Celery with a Redis broker: one `delay()` call per no-op task (Celery has no batched send).

Run through `scripts/queue-reference`, which prepares the database and the virtualenv. As a
module this file is also the dramatiq worker's actor module.
"""

import argparse
import os
import subprocess
import sys
import time

import dramatiq
import psycopg2
from dramatiq_pg import PostgresBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq_pg.utils import make_pool

PG_URL = os.environ.get("QUEUE_REFERENCE_PG_URL", "")

# The broker is configured at import: the dramatiq worker processes import this module too.
# Each busy worker thread holds a connection of the broker's pool, and an acknowledgement that
# finds the pool empty leaves its message consumed for ever (the pool's default of 16 runs dry
# at 16 threads), so the pool has one per thread and a few for the consumer. No results
# backend: a no-op task has none to keep.
THREADS = int(os.environ.get("QUEUE_REFERENCE_THREADS", "16"))
if PG_URL:
    dramatiq.set_broker(PostgresBroker(pool=make_pool(PG_URL, maxconn=THREADS + 4), results=False))
else:
    dramatiq.set_broker(StubBroker())


@dramatiq.actor(max_retries=0)
def noop():
    """The task every queue runs: nothing."""


def count(cursor, state_sql):
    cursor.execute(f"SELECT count(*) FROM dramatiq.queue WHERE {state_sql}")
    return cursor.fetchone()[0]


def dramatiq_figures(tasks, processes, threads):
    """Sends `tasks` no-op messages, then drains them with a dramatiq worker process group.
    Returns the send rate and the drain rate, or why there is none."""
    started = time.perf_counter()
    for _ in range(tasks):
        noop.send()
    send_rate = tasks / (time.perf_counter() - started)

    connection = psycopg2.connect(PG_URL)
    connection.autocommit = True
    cursor = connection.cursor()
    here = os.path.dirname(os.path.abspath(__file__))
    worker = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "dramatiq"), "reference", "--processes", str(processes),
         "--threads", str(threads), "--path", here, "--skip-logging"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "QUEUE_REFERENCE_THREADS": str(threads)},
    )
    try:
        deadline = time.monotonic() + 60
        # The clock starts at the first message taken, as the worker's start-up (interpreter,
        # imports, connections) is not draining.
        while count(cursor, "state <> 'queued'") == 0:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the dramatiq worker never took a message")
            time.sleep(0.002)
        first_taken = time.perf_counter()
        done, progressed = 0, time.monotonic()
        while done < tasks:
            if worker.poll() is not None:
                raise SystemExit("the dramatiq worker stopped before the queue was drained")
            now_done = count(cursor, "state = 'done'")
            if now_done > done:
                done, progressed = now_done, time.monotonic()
            elif time.monotonic() - progressed > 30:
                stuck = count(cursor, "state = 'consumed'")
                return send_rate, f"none: it stopped at {done} of {tasks} done, {stuck} consumed and never acknowledged"
            time.sleep(0.02)
        drain_rate = f"{tasks / (time.perf_counter() - first_taken):.0f}"
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    connection.close()
    return send_rate, drain_rate


def celery_delay_rate(tasks, redis_url):
    """One `delay()` call per no-op task on a Redis broker; the queue is emptied afterwards."""
    import celery
    import redis

    app = celery.Celery("reference", broker=redis_url)

    @app.task(name="reference.noop")
    def celery_noop():
        """The task every queue runs: nothing."""

    started = time.perf_counter()
    for _ in range(tasks):
        celery_noop.delay()
    rate = tasks / (time.perf_counter() - started)
    redis.Redis.from_url(redis_url).flushdb()
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue", choices=["celery", "dramatiq"])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    if args.queue == "celery":
        print(f"celery delay {celery_delay_rate(args.count, args.redis):.0f}")
    else:
        send_rate, drain_rate = dramatiq_figures(args.count, args.processes, args.threads)
        print(f"dramatiq send {send_rate:.0f} drain {drain_rate}")


if __name__ == "__main__":
    main()
