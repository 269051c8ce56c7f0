"""Python models that exist only for the tests (importable in the backend stub: tests/ is under the project)."""
