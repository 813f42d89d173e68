"""Protocol and SQL fuzzing of the proxy against a real cluster (see test_fuzz.py)."""
