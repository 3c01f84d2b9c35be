import os

import pytest
import torch

# One thread per test process: the 2-core CI machine runs other work beside it, and small ops
# spin-wait badly when torch's OpenMP pool competes for cores (specs/drl.md §11).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_stray_plugins(monkeypatch):
    """Tests see only the built-ins unless they install a plugin themselves."""
    if os.environ.get("EBMKIT_TEST_PLUGINS") != "1":
        monkeypatch.setenv("EBMKIT_NO_PLUGINS", "1")
    yield
