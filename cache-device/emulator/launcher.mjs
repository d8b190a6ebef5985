// A MicroPython device on stdin/stdout: the real VM (WebAssembly build)
// behind a board's REPL, for cache-device's tests and benchmarks, and for
// any client of a board (mpremote is one in the tests).
//
//   node launcher.mjs [--firmware 1.27|1.29] [--baud 115200|0]
//                     [--raw-paste emulate|refuse|old|native] [--listen]
//
// - Bytes on stdin go to the device; the device's bytes go to stdout. With
//   --listen, the device is on TCP instead: the launcher listens on a free
//   loopback port, prints "listening PORT" on stdout, and serves one
//   connection at a time (a new one replaces the old, as a serial bridge
//   does; output with no one connected is lost). Either way, the launcher
//   exits when its stdin ends, whatever the device is doing.
// - --baud paces both directions at what a serial line carries (10 bits a
//   byte); 0 turns pacing off. Output waits for its reader. Input the device
//   has no room for (1 MiB unread) is lost, as in a board's UART overrun,
//   but a Ctrl-C always gets through.
// - The device (device.mjs) runs in a worker thread, so the line stays
//   served while code runs. Ctrl-C interrupts running code with
//   KeyboardInterrupt, as on a board. Code the VM cannot be reached in (a
//   busy loop that neither reads the clock nor prints) is ended by a restart
//   when a Ctrl-C stays unanswered for 2 s while the device reads nothing:
//   the boot banner and the friendly REPL, as after a hard reset, and the
//   bytes sent after the last Ctrl-C still arrive.
// - Ctrl-D on an empty raw-REPL line (or sys.exit()) is a soft reset, as on
//   a board: a fresh VM (everything defined is gone, files stay), "OK",
//   "MPY: soft reboot" (the banner boards print since MicroPython 1.20, so
//   both emulated firmwares), and the raw REPL's banner.
// - SIGUSR1 is the reset button: a fresh VM (files stay) that prints its boot
//   banner and waits in the friendly REPL, as a board does after a hard reset.
// - --raw-paste says what a raw-paste request (Ctrl-E "A" Ctrl-A on an empty
//   raw-REPL line) meets:
//   - emulate (default): the protocol as a board speaks it (R\x01, a 128-byte
//     window and a first \x01, \x01 for each window taken, \x04 at the end),
//     with the code run on the VM's raw REPL;
//   - refuse: R\x00, as firmware that knows raw-paste but has it off;
//   - old: as firmware before raw-paste, which only sees the Ctrl-A and
//     prints the raw REPL banner;
//   - native: the VM's own raw-paste, which gets stuck; the launcher stops
//     it, and the device answers nothing until a Ctrl-C restarts it. Only for
//     showing what the VM does.
import net from "node:net";
import { Worker } from "node:worker_threads";
import { Ring, pace, READ, SENT, ACCOUNTED, SEEN, IDLE } from "./line.mjs";

const USAGE =
  "usage: node launcher.mjs [--firmware 1.27|1.29] [--baud RATE|0] [--raw-paste emulate|refuse|old|native] [--listen]";
const fail = (message) => {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
};
const options = { "--firmware": "1.27", "--baud": "115200", "--raw-paste": "emulate", "--listen": false };
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === "--listen") options[arg] = true;
  else if (arg in options && i + 1 < process.argv.length) options[arg] = process.argv[++i];
  else fail(`unknown or incomplete option ${JSON.stringify(arg)}`);
}
const firmware = options["--firmware"];
if (!["1.27", "1.29"].includes(firmware)) fail(`unknown --firmware ${firmware}; use 1.27 or 1.29`);
if (!/^\d{1,8}$/.test(options["--baud"])) fail(`bad --baud ${JSON.stringify(options["--baud"])}; use a whole rate such as 115200, or 0`);
const baud = Number(options["--baud"]);
const byteMs = baud > 0 ? 10000 / baud : 0;
const rawPaste = options["--raw-paste"];
if (!["emulate", "refuse", "old", "native"].includes(rawPaste)) {
  fail(`unknown --raw-paste ${rawPaste}; use emulate, refuse, old or native`);
}
const listen = options["--listen"];
// How long a Ctrl-C may go unanswered before the device is restarted.
const INTERRUPT_MS = 2000;
// How long the VM's own raw-paste may take before it counts as stuck.
const STUCK_MS = 250;
// The device's input buffer, and its output buffer: small, as a board's UART
// transmit buffer, so output waiting for the line is at most 0.35 s of it at
// 115200 baud.
const RING = 1 << 20;
const OUT_RING = 1 << 12;
// LAUNCHER_DEBUG=1 logs both directions on stderr.
const debug = process.env.LAUNCHER_DEBUG
  ? (dir, buf) => process.stderr.write(`${dir} ${JSON.stringify(Buffer.from(buf).toString("latin1"))}\n`)
  : () => {};
const tick = () => new Promise((r) => setTimeout(r, 1));

// Where the device's bytes go: stdout, or the TCP connection (nowhere while
// no one is connected). A writer that is full holds the line until it drains.
// stdout, when it is a pipe or socket, is written asynchronously, so a
// reader that stops reading holds up the device, not the launcher.
function stdoutWriter() {
  let w;
  try {
    w = new net.Socket({ fd: 1, readable: false });
  } catch {
    w = process.stdout;
  }
  // A reader that went away ends the line.
  w.on("error", () => process.exit(0));
  return w;
}
let writer = listen ? null : stdoutWriter();

// The device: a worker, replaced on a hard reset. Its files outlive it.
let device = null;
let kept = [];
function start(carry = []) {
  if (device) {
    device.stopped = true;
    device.worker.terminate();
  }
  const input = new Ring(RING);
  const output = new Ring(OUT_RING);
  // Not drained until the device wakes the launcher.
  Atomics.store(output.header, IDLE, 1);
  const worker = new Worker(new URL("./device.mjs", import.meta.url), {
    workerData: { firmware, rawPaste, input: input.shared(), output: output.shared(), kept },
    stdout: true,
    stderr: true,
  });
  const me = { worker, input, output, stopped: false };
  device = me;
  // Nothing the worker prints may reach the device's output.
  worker.stdout.on("data", (d) => process.stderr.write(d));
  worker.stderr.on("data", (d) => process.stderr.write(d));
  worker.on("message", (message) => {
    if (device !== me) return;
    if (message === "wake") drain();
    else if (message === "paste") {
      // A VM that has not come back from its own raw-paste soon is spinning
      // where no input reaches it: it is stopped, and the device answers
      // nothing until a Ctrl-C goes unanswered and restarts it.
      me.stuck = setTimeout(() => {
        process.stderr.write("the VM's own raw-paste is stuck: the device stops until a Ctrl-C restarts it\n");
        me.stopped = true;
        worker.terminate();
      }, STUCK_MS);
    } else if (message === "idle") clearTimeout(me.stuck);
    else if (message.files) kept = message.files;
  });
  // A device that fails or stops on its own (code on it can end its thread)
  // starts again, as a board whose firmware crashed.
  const restart = (why) => {
    if (device !== me || me.stopped) return;
    me.stopped = true;
    process.stderr.write(`the device ${why}; restarting it\n`);
    start();
  };
  worker.on("error", (e) => restart(`failed (${e?.stack ?? e})`));
  worker.on("exit", (code) => restart(`stopped (exit ${code})`));
  for (const b of carry) input.tryPush(b);
}

// Output, paced at the line rate.
let draining = false;
const outLine = pace(byteMs);
function drain() {
  if (draining) return;
  draining = true;
  outLine.start();
  step();
}
function step() {
  const ring = device.output;
  const n = Math.min(outLine.due(), ring.used(), 65536);
  if (n > 0) {
    outLine.took(n);
    const buf = ring.take(n);
    debug("OUT", buf);
    if (writer && !writer.write(buf)) {
      writer.once("drain", step);
      return;
    }
  }
  if (ring.used() === 0 && !ring.rest()) {
    draining = false;
    return;
  }
  setTimeout(step, 1);
}

// Delivers one byte to the device: lost if it has no room (a Ctrl-C always
// has room).
let overrun = false;
function deliver(b) {
  const me = device;
  if (!me.input.tryPush(b)) {
    if (!overrun) process.stderr.write("the device's input is full: bytes are lost\n");
    overrun = true;
    return;
  }
  overrun = false;
  if (b === 0x03) watch(me, me.input.header, Atomics.load(me.input.header, SENT));
}
// Restarts a device that has not answered Ctrl-C number `sent` within 2 s
// and read nothing meanwhile.
function watch(me, header, sent) {
  const read = Atomics.load(header, READ);
  setTimeout(() => {
    if (device !== me) return;
    const answered = (n) => ((Atomics.load(header, n) - sent) | 0) >= 0;
    if (answered(ACCOUNTED) || answered(SEEN)) return;
    if (!me.stopped && Atomics.load(header, READ) !== read) return watch(me, header, sent);
    process.stderr.write(`the device did not answer Ctrl-C in ${INTERRUPT_MS} ms; restarting it\n`);
    // A hard reset loses what was waiting, but for what followed the last
    // Ctrl-C: a client taking over (mpremote sends Ctrl-C, then Ctrl-A)
    // still gets what it asked for.
    const unread = me.input.unread();
    start(unread.slice(unread.lastIndexOf(0x03) + 1));
  }, INTERRUPT_MS);
}

// Input, paced at the line rate, delivered strictly in order.
const inQueue = [];
let inOffset = 0;
let feeding = false;
const inLine = pace(byteMs);
async function pump() {
  if (feeding) return;
  feeding = true;
  inLine.start();
  while (inQueue.length > 0) {
    let n = inLine.due();
    if (n === 0) {
      await tick();
      continue;
    }
    while (n > 0 && inQueue.length > 0) {
      const chunk = inQueue[0];
      const end = Math.min(chunk.length, inOffset + n);
      for (let i = inOffset; i < end; i++) deliver(chunk[i]);
      inLine.took(end - inOffset);
      n -= end - inOffset;
      inOffset = end;
      if (inOffset === chunk.length) {
        inQueue.shift();
        inOffset = 0;
      }
    }
  }
  feeding = false;
}
function received(data) {
  debug("IN", data);
  inQueue.push(data);
  pump();
}

start();
process.on("SIGUSR1", () => start());
process.stdin.on("end", () => process.exit(0));
if (listen) {
  let current = null;
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    // The newest connection has the line: the old one is closed, and what
    // the device said to it and was not carried yet is gone.
    current?.destroy();
    current = socket;
    device.output.take(OUT_RING);
    writer = socket;
    socket.on("data", (d) => current === socket && received(d));
    socket.on("error", () => {});
    socket.on("close", () => {
      if (current === socket) writer = null;
      if (draining) step();
    });
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
  process.stdin.resume();
} else {
  process.stdin.on("data", received);
}
