"""What every client script shares: its arguments and its one line of JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the server's base URL, ending with /")
    parser.add_argument("--token", default="", help="the API key the client sends")
    parser.add_argument("--model", required=True, help="the model a custom-model call names")
    parser.add_argument("--dog", required=True)
    parser.add_argument("--bus", required=True)
    parser.add_argument("--closed-url", default=None, help="a server without OPEN_ROUTES")
    return parser.parse_args()


def error_text(call: Any) -> str:
    """Run `call`, which should fail, and return what the client raised, as it says it."""
    try:
        call()
    except Exception as exc:  # the client's own exception class, whatever it is
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def emit(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
