"""The usage event: one stream entry per request the gateway admitted, on USAGE_STREAM.

An event is one stream field, "e": these values in this order, joined by \\x1f. (One
packed field instead of sixteen pairs costs the gateway a tenth of the packing.) The
gateway writes it in its completion script; the metering consumer reads it back."""
EVENT_FIELDS = ("rid", "tenant", "key", "dep", "name", "ver", "proto", "ep", "status", "lat", "up", "cus", "cold",
                "bin", "bout", "flags", "ts")
EVENT_FIELD = "e"
SEPARATOR = "\x1f"


def usage_event_pack(values) -> str:
    """Pack the values of EVENT_FIELDS, in order, as the event's one field."""
    return SEPARATOR.join(values)


def usage_event_unpack(fields: dict) -> dict:
    """A stream entry's fields as {name: value}; an entry not in this format gives {}
    or a dict without "rid", which the consumer discards."""
    return dict(zip(EVENT_FIELDS, fields.get(EVENT_FIELD, "").split(SEPARATOR), strict=False))
