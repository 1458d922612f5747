"""The wire protocols the service speaks, one module each, over the core in `utils_serve`.

The contract of a dialect module:

- it parses its protocol's request into `utils_serve.ImageTask`s (or per-image `ApiError`s)
  with the core's helpers, and renders `utils_serve.run_tasks`' outcomes and `errors.ApiError`s
  in its protocol's shape, as plain functions of plain values;
- it imports the core (`utils_serve`, `registry`, `errors`, the detection types), never Flask,
  never cv2 (pictures go through `image_io` and `render`), never another dialect;
- the composition root (`serve_http.py`) owns HTTP: its route table names, per route, the view
  (a few lines that read the request and call the dialect; those of the other servers'
  protocols are in `compat/routes.py`) and the dialect's error renderer.

Adding a protocol is adding one module here, its views and its lines in that route table.

Our own JSON (`native`) is Google's AnnotateImage request and response plus our extras: its
route hands `google`'s batch parsing and rendering the native feature rule and extras, so that
neither module imports the other.
"""
