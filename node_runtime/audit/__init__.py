"""The processing log (verwerkingenregister): what was done with whose data, and why."""
