"""Assertions several test modules share."""


def assert_one_line_error(result, *needles):
    """A CLI run failed with one line on stderr, no traceback, naming every needle."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
