#!/usr/bin/env bash
# Serve the default model with gunicorn, as `make run` does. API_TOKENS, PORT and
# WEB_CONCURRENCY are taken from the environment when set; without API_TOKENS (and without
# AUTH_DISABLED) a random token is made for this local run and printed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${API_TOKENS:-}" ] && [ -z "${AUTH_DISABLED:-}" ]; then
    API_TOKENS="dev-$(python -c 'import secrets; print(secrets.token_urlsafe(18))')"
    export API_TOKENS
    echo "API_TOKENS is not set: using the local development token ${API_TOKENS}"
fi
port="${PORT:-5000}"
token="${API_TOKENS%%,*}"
cat <<HELP
Serving on http://127.0.0.1:${port}/ (Ctrl-C stops). Try:
  curl -s http://127.0.0.1:${port}/readyz
  python -m client.send2api sample_images/astronaut.png --url http://127.0.0.1:${port}/ --token '${token}'
HELP
exec gunicorn -c gunicorn.conf.py
