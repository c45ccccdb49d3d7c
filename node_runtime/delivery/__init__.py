"""Push delivery: outbox workers with retries, per-endpoint limits and circuit breakers."""
