#!/usr/bin/env bash
# Proves the zero-setup path: with no DATABASE_URL/REDIS_URL/MQTT_URL the project starts its own
# embedded PostgreSQL and Redis, migrates, and a real `runworker` runs a scheduled task and
# connects to the embedded MQTT broker (which it starts), then shuts down cleanly on SIGTERM
# leaving no run marked "running".
# Needs the project installed in .venv (make install). Usage: bash .ci/embedded_smoke.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
TASK_NAME="acceptance_tick"
SUCCESS_TIMEOUT=30  # seconds for the first successful run of an Every(1) task
MQTT_TIMEOUT=30     # seconds for the worker to start the embedded broker and connect to it
EXIT_TIMEOUT=40     # seconds for the worker to exit after SIGTERM

unset DATABASE_URL REDIS_URL MQTT_URL
work_dir="$(mktemp -d)"
export EMBEDDED_DATA_DIR="$work_dir/data"
worker_log="$work_dir/worker.log"
worker_pid=""

fail() {
	echo "FAIL: $*" >&2
	if [ -s "$worker_log" ]; then
		echo "--- worker log (last 60 lines) ---" >&2
		tail -n 60 "$worker_log" >&2
	fi
	exit 1
}

cleanup() {
	if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
		kill -KILL "$worker_pid" 2>/dev/null || true
	fi
	"$PY" manage.py embedded stop >/dev/null 2>&1 || echo "warning: embedded stop failed" >&2
	rm -rf "$work_dir"
}
trap cleanup EXIT

# Prints how many TaskRun rows have status $1, of task $2 if given, else of every task.
count_runs() {
	"$PY" manage.py shell -v 0 -c "
from services.models import TaskRun
runs = TaskRun.objects.filter(status='$1')
print(runs.filter(job__name='${2:-}').count() if '${2:-}' else runs.count())
" 2>/dev/null | tail -n 1
}

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "--- migrate into embedded servers under $EMBEDDED_DATA_DIR"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py embedded status

echo "--- start runworker with WORKER_TASK_MODULES=tests.acceptance.worker_tasks"
# A free health port: a developer's `make run` may hold 8001.
WORKER_TASK_MODULES=tests.acceptance.worker_tasks WORKER_HEALTH_PORT="$(free_port)" \
	"$PY" manage.py runworker >"$worker_log" 2>&1 &
worker_pid=$!

echo "--- wait up to ${SUCCESS_TIMEOUT}s for a successful run of $TASK_NAME"
deadline=$((SECONDS + SUCCESS_TIMEOUT))
until [ "$(count_runs success "$TASK_NAME")" -gt 0 ] 2>/dev/null; do
	kill -0 "$worker_pid" 2>/dev/null || fail "runworker exited before $TASK_NAME succeeded"
	[ "$SECONDS" -lt "$deadline" ] || fail "no successful $TASK_NAME run within ${SUCCESS_TIMEOUT}s"
	sleep 1
done
echo "ok: $TASK_NAME ran successfully"

echo "--- wait up to ${MQTT_TIMEOUT}s for the worker to connect to the embedded MQTT broker"
deadline=$((SECONDS + MQTT_TIMEOUT))
until grep -q 'event=mqtt.connected' "$worker_log"; do
	kill -0 "$worker_pid" 2>/dev/null || fail "runworker exited before connecting to MQTT"
	[ "$SECONDS" -lt "$deadline" ] || fail "no event=mqtt.connected within ${MQTT_TIMEOUT}s"
	sleep 1
done
echo "ok: $(grep -m1 'event=mqtt.connected' "$worker_log" | sed 's/.*event=/event=/')"
"$PY" manage.py embedded status | grep -A1 '^MQTT'

echo "--- SIGTERM; the worker must exit with code 0 within ${EXIT_TIMEOUT}s"
kill -TERM "$worker_pid"
deadline=$((SECONDS + EXIT_TIMEOUT))
while kill -0 "$worker_pid" 2>/dev/null; do
	[ "$SECONDS" -lt "$deadline" ] || fail "runworker still running ${EXIT_TIMEOUT}s after SIGTERM"
	sleep 0.2
done
exit_code=0
wait "$worker_pid" || exit_code=$?
worker_pid=""
[ "$exit_code" -eq 0 ] || fail "runworker exited with code $exit_code after SIGTERM"
echo "ok: runworker exited with code 0"

running="$(count_runs running)"
[ "$running" = "0" ] || fail "$running TaskRun row(s) left in status running"
echo "ok: no run left in status running"
echo "embedded smoke test passed"
