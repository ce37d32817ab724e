# rrule_next.py: python-dateutil's answer to each of recurrence_test.go's
# questions, one JSON object a line on stdin: {"rule", "start" (a wall clock),
# "tz" (an IANA name, or "" for a floating start)}. It prints the first
# occurrence after start of the series that starts there, as a wall clock, or
# null, a line each.
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

for line in sys.stdin:
    q = json.loads(line)
    start = datetime.fromisoformat(q["start"])
    if q["tz"]:
        start = start.replace(tzinfo=ZoneInfo(q["tz"]))
    nxt = rrulestr("RRULE:" + q["rule"], dtstart=start).after(start)
    if nxt is not None and nxt.year > 9999:
        nxt = None
    print(json.dumps(None if nxt is None else nxt.replace(tzinfo=None).isoformat()))
