"""`bench perf` prints its speed ratios."""

from click.testing import CliRunner

from bench.cli import main


def test_perf_command_prints_ratios():
    result = CliRunner().invoke(main, ["perf", "--quick"])
    assert result.exit_code == 0, result.output
    assert "data pipeline" in result.output and "TAIL" in result.output and "x" in result.output
