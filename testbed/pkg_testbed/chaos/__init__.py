"""The fault-injection suite's machinery: fault injectors, the end-state oracle, the records."""
