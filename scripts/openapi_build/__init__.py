"""The parts of scripts/build_openapi.py (which says what the build takes from where), one job
each: values from the code's tables (`values`), the detection parameters (`parameters`), the
routes' operations and error responses (`operations`) and the document as a whole
(`document`). Standard library and the service's own modules only."""
