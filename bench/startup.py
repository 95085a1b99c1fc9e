"""Start-up time and memory of ``manage.py runworker`` beside a bare ``django.setup()``.

What it measures, for ``--runs`` (default 5) fresh worker processes on a real PostgreSQL
(``bench_startup``, migrated once) with the real registered tasks: the time from spawning the
process to its ``cron.ready`` log line, and to ``GET /healthz`` first answering 200 (polled every
``--poll`` s); medians are printed. One more worker is kept for ``--rss-after`` seconds (default
10) and its RSS (and USS) read with psutil. Baselines in the same run, same environment and
same way of timing (spawn -> a marker line on stdout): ``python -c pass``, and
``python -c "import django; django.setup()"`` with the project's settings, whose RSS is read
by the child itself just after setup. Goals: ready < 1.5 s, RSS < 100 MB.

Run: ``.venv/bin/python bench/startup.py`` (~25 s), ``--runs 3 --rss-after 5`` for quicker.
Needs PostgreSQL at ``BENCH_PG_URL``; creates and drops ``bench_startup_<pid>``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = common.run_name("bench_startup")
MB = 1024 * 1024

DJANGO_SETUP = """
import django, psutil
django.setup()
mem = psutil.Process().memory_full_info()
print("READY", mem.rss, mem.uss, flush=True)
"""
BARE = """
import psutil
mem = psutil.Process().memory_full_info()
print("READY", mem.rss, mem.uss, flush=True)
"""


def healthz_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def one_worker(env: dict[str, str], port: int, poll: float, keep: float = 0.0) -> dict[str, float]:
    """Spawn a worker; seconds to cron.ready and to /healthz 200; RSS after ``keep`` s."""
    child = common.Child(common.worker_args(), env, label="runworker")
    try:
        healthy = None
        deadline = child.spawned_at + 60
        while healthy is None and time.perf_counter() < deadline:
            if child.popen.poll() is not None:
                raise RuntimeError(f"worker exited ({child.popen.returncode}):\n{child.tail()}")
            if healthz_ok(port):
                healthy = time.perf_counter()
            else:
                time.sleep(poll)
        if healthy is None:
            raise TimeoutError(f"/healthz never answered 200:\n{child.tail()}")
        ready = child.wait_for("event=cron.ready", timeout=60)
        result = {"ready": ready - child.spawned_at, "healthz": healthy - child.spawned_at}
        if keep:
            time.sleep(max(0.0, child.spawned_at + keep - time.perf_counter()))
            import psutil

            mem = psutil.Process(child.pid).memory_full_info()
            result.update(
                rss=mem.rss / MB, uss=mem.uss / MB, threads=common.thread_count(child.pid)
            )
        return result
    finally:
        child.stop()


def one_script(code: str, env: dict[str, str]) -> dict[str, float]:
    child = common.Child([common.PYTHON, "-c", code], env, label="python -c")
    try:
        at = child.wait_for("READY", timeout=60)
        line = next(text for _, text in child.lines if text.startswith("READY"))
        _, rss, uss = line.split()
        return {"ready": at - child.spawned_at, "rss": int(rss) / MB, "uss": int(uss) / MB}
    finally:
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rss-after", type=float, default=10.0, help="seconds after spawn")
    parser.add_argument("--poll", type=float, default=0.005, help="/healthz poll period")
    parser.add_argument("--port", type=int, default=0, help="worker /healthz port; 0: a free one")
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args()

    args.port = args.port or common.free_port()
    print(f"preparing {DB} ...", flush=True)
    common.migrated_database(DB)
    try:
        env = common.django_env(common.db_url(DB), WORKER_HEALTH_PORT=str(args.port))
        one_worker(env, args.port, args.poll)  # warm the page cache and the job rows; not counted
        workers = [one_worker(env, args.port, args.poll) for _ in range(args.runs)]
        print(f"{args.runs} worker starts done; one more kept {args.rss_after:g} s ...", flush=True)
        held = one_worker(env, args.port, args.poll, keep=args.rss_after)
        setups = [one_script(DJANGO_SETUP, env) for _ in range(args.runs)]
        bares = [one_script(BARE, env) for _ in range(args.runs)]
    finally:
        if not args.keep_databases:
            with contextlib.suppress(Exception):
                common.drop_database(DB)

    def med(runs: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in runs]
        return f"{common.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"

    rows = [
        ["spawn -> ready line (median, min-max)", med(workers, "ready"), med(setups, "ready"),
         med(bares, "ready"), "< 1.5 s"],
        ["spawn -> /healthz 200 (median, min-max)", med(workers, "healthz"), "-", "-", "< 1.5 s"],
        [f"RSS (worker after {args.rss_after:g} s)", f"{held['rss']:.1f} MB",
         f"{common.median([r['rss'] for r in setups]):.1f} MB",
         f"{common.median([r['rss'] for r in bares]):.1f} MB", "< 100 MB"],
        ["USS (private memory)", f"{held['uss']:.1f} MB",
         f"{common.median([r['uss'] for r in setups]):.1f} MB",
         f"{common.median([r['uss'] for r in bares]):.1f} MB", ""],
        ["threads", f"{held['threads']:.0f}", "1", "1", ""],
    ]  # fmt: skip
    headers = ["metric", "runworker", "django.setup()", "python -c pass", "goal"]
    print(f"\nStart-up over {args.runs} runs each (after one unmeasured warm-up worker)")
    print(common.table(headers, rows))


if __name__ == "__main__":
    main()
