import pytest

pytest.register_assert_rewrite("asktell.testing")
