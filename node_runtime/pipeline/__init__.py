"""The intake pipeline: parse → identify → validate → rules → convert → route → filter."""
