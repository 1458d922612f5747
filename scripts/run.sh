#!/usr/bin/env bash
# Serve the default model with gunicorn, as `make run` does. API_TOKENS, PORT and
# WEB_CONCURRENCY are taken from the environment when set; without API_TOKENS (and without
# AUTH_DISABLED) a random token is made for this local run and printed.
set -euo pipefail
cd "$(dirname "$0")/.."

token_hint='<one of your API_TOKENS>'
if [ -z "${API_TOKENS:-}" ] && [ -z "${AUTH_DISABLED:-}" ]; then
    API_TOKENS="dev-$(python -c 'import secrets; print(secrets.token_urlsafe(18))')"
    export API_TOKENS
    # Printed only because it was made here, for this local run; tokens given in the
    # environment are never echoed.
    token_hint="${API_TOKENS}"
    echo "API_TOKENS is not set: using the local development token ${API_TOKENS}"
fi
port="${PORT:-5000}"
cat <<HELP
Serving on http://127.0.0.1:${port}/ (Ctrl-C stops). Try:
  curl -s http://127.0.0.1:${port}/readyz
  API_TOKEN='${token_hint}' python -m client.send2api sample_images/astronaut.png --url http://127.0.0.1:${port}/
HELP
exec gunicorn -c gunicorn.conf.py
