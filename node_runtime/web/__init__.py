"""What every HTTP app of ours shares: RFC 9457 problem details and running uvicorn servers."""
