"""Conversation deadlines: a message that opens a conversation must be followed by a closing
message within a term the connector declares (working days on the Dutch calendar, or hours).

``calendar``: Dutch working days; ``matching``: the correlation keys of a message;
``tracking``: open, close and list conversations in the store; ``monitor``: overdue metrics
and events.
"""
