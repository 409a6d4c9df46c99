"""The store service: owns task state in SQL, applies the event stream, answers reads."""
