"""Fuzz tests report how many cases they ran."""

from cases import RUNS


def pytest_terminal_summary(terminalreporter):
    if RUNS:
        terminalreporter.write_line("fuzz cases run: " + ", ".join(f"{name} {count:,}" for name, count in RUNS.items()))
