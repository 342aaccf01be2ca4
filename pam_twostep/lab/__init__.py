"""A private stack on loopback for trying twostep and for its tests (see ``stack``)."""

__all__: list[str] = []
