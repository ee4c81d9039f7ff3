#!/usr/bin/env bash
# Serve Data Pusher on a scratch database and run the Postman collection (newman) and the
# .http file (httpyac) against it, in order, as an integrator would. Needs Node.js and npm.
# Usage: sample_apis/check.sh   (from the repository root, after `make install`)
# Environment: PORT, the port to serve on (default: a free one); RECEIVER_URL, where the demo
# destinations point (default: a closed local port, so deliveries fail fast and are reported; pushes
# still answer 200); NEWMAN_REPORT, a file for newman's JSON report (sample_apis/record_examples.py
# turns one into the collection's saved examples).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
WORK=$(mktemp -d)
PORT=${PORT:-$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export DATABASE_URL="sqlite:///$WORK/db.sqlite3" SECRET_KEY="sample-apis-check" DEBUG=false
export DATAPUSHER_ALLOWED_NETWORKS="127.0.0.0/8,::1/128"
BASE_URL="http://127.0.0.1:$PORT"
RECEIVER_URL=${RECEIVER_URL:-http://127.0.0.1:9}

(cd sample_apis && npm ci --no-audit --no-fund --ignore-scripts --silent)
$PY manage.py migrate --noinput --verbosity 0
TOKEN=$($PY manage.py create_api_token sample-apis 2>/dev/null)

$PY manage.py runserver "127.0.0.1:$PORT" --noreload >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
  curl -fs --max-time 2 -o /dev/null "$BASE_URL/api/schema/" && break
  sleep 0.2
done
# A PORT already taken: runserver exits, and the checks must not run against whatever holds it.
kill -0 $SERVER 2>/dev/null || { cat "$WORK/server.log" >&2; echo "the server did not start on port $PORT" >&2; exit 1; }

echo "== Postman collection (newman)"
sample_apis/node_modules/.bin/newman run sample_apis/datapusher.postman_collection.json \
  --env-var "base_url=$BASE_URL" --env-var "api_token=$TOKEN" --env-var "receiver_url=$RECEIVER_URL" \
  --bail --color off ${NEWMAN_REPORT:+--reporters cli,json --reporter-json-export "$NEWMAN_REPORT"}

echo "== .http file (httpyac)"
# As a user would: set the variables at the top of the file, then send every request in order.
sed -e "s|^@base_url = .*|@base_url = $BASE_URL|" -e "s|^@api_token = .*|@api_token = $TOKEN|" \
  -e "s|^@receiver_url = .*|@receiver_url = $RECEIVER_URL|" sample_apis/datapusher.http >"$WORK/datapusher.http"
(cd "$WORK" && "$OLDPWD/sample_apis/node_modules/.bin/httpyac" send datapusher.http --all --bail --output short)
