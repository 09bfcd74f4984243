import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own prepared-data cache (never the user's ~/.cache)."""
    monkeypatch.setenv("RELIEF_MPI_CACHE_DIR", str(tmp_path_factory.mktemp("relief-cache")))
