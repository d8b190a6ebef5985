"""Interrupts a long sleep on a device through mpremote's own transport, as
mpremote does when it takes over a board: code runs in the raw REPL, a
Ctrl-C goes to the device, and the KeyboardInterrupt must come back.

    python mpremote_interrupt.py DEVICE

Prints the output, the error output and the seconds the interrupt took, as
one JSON object.
"""

import json
import sys
import time

from mpremote.transport_serial import SerialTransport

t = SerialTransport(sys.argv[1], baudrate=115200)
t.enter_raw_repl(soft_reset=False)
t.exec_raw_no_follow("import time\ntime.sleep(30)")
time.sleep(1)
start = time.monotonic()
t.serial.write(b"\x03")
out, err = t.follow(timeout=5)
took = time.monotonic() - start
t.exit_raw_repl()
t.close()
print(json.dumps({"out": out.decode(), "err": err.decode(), "took": took}))
