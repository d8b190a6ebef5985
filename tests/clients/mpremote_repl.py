"""Types into `mpremote repl` on a terminal, as a user does: a long sleep,
then Ctrl-C, which mpremote passes to the device.

    python mpremote_repl.py DEVICE

Prints what the terminal showed after the Ctrl-C and the seconds until
"KeyboardInterrupt" appeared, as one JSON object; exits 1 (naming the step
that failed) if a step did not finish within its bound.
"""

import json
import os
import pty
import select
import sys
import time

pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "mpremote", "connect", sys.argv[1], "repl"])

seen = b""


def until(token, within):
    global seen
    end = time.monotonic() + within
    while token not in seen:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        try:
            seen += os.read(fd, 4096)
        except OSError:
            return False
    return True


def expect(token, within, stage):
    if not until(token, within):
        os.kill(pid, 9)
        print(json.dumps({"failed": stage, "seen": seen.decode(errors="replace")}))
        sys.exit(1)


expect(b"Use Ctrl-] or Ctrl-x to exit this shell", 10, "connect")
# Ctrl-B: the friendly REPL, from the raw one too.
os.write(fd, b"\x02")
expect(b">>> ", 5, "prompt")
seen = b""
os.write(fd, b"import time; time.sleep(30)\r")
expect(b"time.sleep(30)", 5, "echo")
time.sleep(1)
seen = b""
start = time.monotonic()
os.write(fd, b"\x03")
expect(b"KeyboardInterrupt", 5, "interrupt")
took = time.monotonic() - start
until(b">>> ", 2)
os.write(fd, b"\x1d")  # Ctrl-]: leave the REPL
os.waitpid(pid, 0)
print(json.dumps({"seen": seen.decode(errors="replace"), "took": took}))
