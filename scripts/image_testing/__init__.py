"""The parts of scripts/image_test.py (which says what the test does), one job each: podman
(`podman`), the stand-in base image (`stand_in`), the build (`build`), the container
(`container`) and the checks run against it (`checks`)."""
