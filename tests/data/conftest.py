from collections.abc import Callable

import pytest

from relief_mpi.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own prepared-data cache (never the user's ~/.cache)."""
    monkeypatch.setenv("RELIEF_MPI_CACHE_DIR", str(tmp_path_factory.mktemp("relief-cache")))


@pytest.fixture
def relief(capsys: pytest.CaptureFixture,
           monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], tuple[int, str, str]]:
    """The relief-mpi entry point run in this process (no interpreter start-up, which takes half a
    minute on a loaded 2-core host): args -> (exit code, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["relief-mpi", *args])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
