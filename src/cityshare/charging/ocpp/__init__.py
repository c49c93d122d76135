"""The OCPP door: a central system for OCPP 1.6-J and 2.0.1 chargers (see `server`)."""
