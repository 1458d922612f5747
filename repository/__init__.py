"""The image repository: photos uploaded once, deduplicated, their EXIF and detections stored
and searchable by label, thumbnails and renditions made on the fly.

Modules, each with one job: `tables` (the schema), `db` (engines and transactions), `storage`
(content-addressed files under DATA_DIR), `exif` (metadata from the header), `renditions`
(thumbnails and renders), `pages` (signed page tokens), `records` (the values the operations
take and give), `rows` (what they write), `queries` (the list filters), `service` (upload,
list, get, delete, detect: the transactions), `maintenance` (`gc` and `check`), `shapes` (the
JSON answers), `routes` (the HTTP views; the only module here that knows Flask) and
`__main__` (the `python -m repository migrate|gc|check|detect` command). See
docs/repository.md.
"""
