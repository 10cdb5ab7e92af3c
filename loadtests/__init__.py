"""Load tests of the pack: Locust scenarios (locustfile.py) and the benchmark (``python -m loadtests.bench``)."""
