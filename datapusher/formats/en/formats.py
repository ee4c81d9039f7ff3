"""Date-time formats for English (LANGUAGE_CODE en-us): to the second, with the zone, so that the
admin tells apart attempts a few seconds apart. The others are Django's own."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i:s"
