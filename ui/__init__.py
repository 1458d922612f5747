"""The web UI (docs/ui.md): its static files in `static/`, served by `routes.py`."""
