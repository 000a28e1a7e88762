"""The engine: pure decisions, the plan, and the run state machine. No I/O but through ports."""
