// A MicroPython device on stdin/stdout: the real VM (WebAssembly build)
// behind its REPL, for cache-device's tests and benchmarks.
//
//   node launcher.mjs [--firmware 1.27|1.29] [--baud 115200|0]
//                     [--raw-paste native|emulate|refuse|old] [--listen]
//
// - Bytes on stdin go to the REPL one by one; the REPL's bytes go to stdout.
//   With --listen, the device is on TCP instead: the launcher listens on a
//   free loopback port, prints "listening PORT" on stdout, and serves one
//   connection at a time.
// - --baud throttles both directions to what a serial line carries
//   (10 bits a byte); 0 turns throttling off.
// - Ctrl-D on an empty raw-REPL line is a soft reset, as on a board: a fresh
//   VM (everything defined is gone), "MPY: soft reboot" (the banner boards
//   print since MicroPython 1.20, so both emulated firmwares), and the raw
//   REPL again.
// - SIGUSR1 is the reset button: a fresh VM that prints its boot banner and
//   waits in the friendly REPL, as a board does after a hard reset.
// - --raw-paste says what a raw-paste request (Ctrl-E "A" Ctrl-A on an empty
//   raw-REPL line) meets. native (default): the VM itself, which answers
//   R\x01 and its window and then stalls. emulate: the launcher speaks the
//   protocol as a board does (R\x01, a 64-byte window, \x01 for each window
//   taken, \x04 at the end) and runs the code on the VM. refuse: R\x00, as
//   firmware that knows raw-paste but has it off. old: as firmware before
//   raw-paste, which only sees the Ctrl-A and prints the raw REPL banner.
import net from "node:net";
import { loadMicroPython as load127 } from "mp127/micropython.mjs";
import { loadMicroPython as load129 } from "mp129/micropython.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const firmware = opt("--firmware", "1.27");
const baud = Number(opt("--baud", "115200"));
const loaders = { "1.27": load127, "1.29": load129 };
const load = loaders[firmware];
if (!load) {
  process.stderr.write(`unknown --firmware ${firmware}; use 1.27 or 1.29\n`);
  process.exit(2);
}
const byteMs = baud > 0 ? 10000 / baud : 0;
const rawPaste = opt("--raw-paste", "native");
if (!["native", "emulate", "refuse", "old"].includes(rawPaste)) {
  process.stderr.write(`unknown --raw-paste ${rawPaste}; use native, emulate, refuse or old\n`);
  process.exit(2);
}
const PASTE_WINDOW = 64;
const listen = args.includes("--listen");
// LAUNCHER_DEBUG=1 logs both directions on stderr.
const debug = process.env.LAUNCHER_DEBUG
  ? (dir, buf) => process.stderr.write(`${dir} ${JSON.stringify(Buffer.from(buf).toString("latin1"))}\n`)
  : () => {};
// Where the device's bytes go: stdout, or the TCP connection (and nowhere
// while no one is connected).
let out = listen ? () => {} : (buf) => process.stdout.write(buf);
const sink = (buf) => {
  debug("OUT", buf);
  out(buf);
};

// Output, paced at the line rate.
const outQueue = [];
let draining = false;
let muted = false;
// After an emulated raw paste, the VM's "OK" (standard raw REPL) is not sent.
let dropOk = 0;
function emit(bytes) {
  if (muted) return;
  for (const b of bytes) {
    if (dropOk > 0 && b === "OK".charCodeAt(2 - dropOk)) {
      dropOk -= 1;
      continue;
    }
    dropOk = 0;
    outQueue.push(b);
  }
  if (!draining) drain();
}
// A line carries one byte every byteMs: a byte is delivered once the line
// has carried it. `line()` keeps that account for one direction, on the
// wall clock, so late timers do not slow the line down.
function line() {
  let since = 0;
  let carried = 0;
  return {
    // Starts the clock when the line was idle.
    start() {
      since = performance.now();
      carried = 0;
    },
    // How many more bytes the line has carried by now.
    due() {
      const n = Math.floor((performance.now() - since) / byteMs) - carried;
      return Math.max(0, n);
    },
    took(n) {
      carried += n;
    },
  };
}
const tick = () => new Promise((r) => setTimeout(r, 1));

const outLine = line();
function drain() {
  if (outQueue.length === 0) {
    draining = false;
    return;
  }
  if (byteMs === 0) {
    sink(Buffer.from(outQueue.splice(0)));
    return;
  }
  if (!draining) outLine.start();
  draining = true;
  const n = Math.min(outLine.due(), outQueue.length);
  if (n > 0) {
    outLine.took(n);
    sink(Buffer.from(outQueue.splice(0, n)));
  }
  if (outQueue.length === 0) {
    draining = false;
    return;
  }
  setTimeout(drain, 1);
}

let mp;
async function boot() {
  mp = await load({ heapsize: 1024 * 1024, stdout: (b) => emit(b), linebuffer: false });
  mp.replInit();
}

// Raw REPL tracking, to emulate a soft reset.
let raw = false;
let lineEmpty = true;

// Raw-paste: the request's bytes seen so far, and the code of a paste.
let request = [];
let paste = null;

function emulatedPaste(b) {
  if (b === 0x04) {
    // End of data: acknowledge, then run the code on the VM's raw REPL.
    emit([0x04]);
    if (paste.code.length === 0) {
      // Nothing to run (Ctrl-D on an empty line would be a soft reset).
      paste = null;
      emit([0x04, 0x04, 0x3e]);
      return;
    }
    for (const c of paste.code) mp.replProcessChar(c);
    paste = null;
    dropOk = 2;
    mp.replProcessChar(0x04);
    lineEmpty = true;
    return;
  }
  paste.code.push(b);
  paste.taken += 1;
  if (paste.taken % PASTE_WINDOW === 0) emit([0x01]);
}

async function feed(b) {
  if (paste) return emulatedPaste(b);
  if (rawPaste !== "native" && raw && lineEmpty && (request.length > 0 || b === 0x05)) {
    request.push(b);
    const expect = [0x05, 0x41, 0x01];
    if (request.every((x, i) => x === expect[i])) {
      if (request.length < 3) return;
      request = [];
      if (rawPaste === "emulate") {
        emit([0x52, 0x01, PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8]);
        paste = { code: [], taken: 0 };
      } else if (rawPaste === "refuse") {
        emit([0x52, 0x00]);
      } else {
        mp.replProcessChar(0x01);
      }
      return;
    }
    // Not a raw-paste request after all: hand the bytes on.
    const held = request;
    request = [];
    for (const x of held) await feed(x);
    return;
  }
  if (b === 0x01) {
    raw = true;
    lineEmpty = true;
  } else if (b === 0x02) {
    raw = false;
  } else if (raw && b === 0x04) {
    if (lineEmpty) {
      // Soft reset: a fresh VM, the banner boards print, the raw REPL again.
      muted = true;
      await boot();
      muted = false;
      emit(Buffer.from("MPY: soft reboot\r\n"));
      mp.replProcessChar(0x01);
      lineEmpty = true;
      return;
    }
    lineEmpty = true;
  } else if (raw && b !== 0x03) {
    lineEmpty = false;
  }
  mp.replProcessChar(b);
}

// Input, paced at the line rate, processed strictly in order.
const inQueue = [];
let feeding = false;
const inLine = line();
async function pump() {
  if (feeding) return;
  feeding = true;
  inLine.start();
  while (inQueue.length > 0) {
    if (byteMs === 0) {
      await feed(inQueue.shift());
      continue;
    }
    let n = Math.min(inLine.due(), inQueue.length);
    if (n === 0) {
      await tick();
      continue;
    }
    inLine.took(n);
    while (n-- > 0) await feed(inQueue.shift());
  }
  feeding = false;
}

await boot();
process.on("SIGUSR1", async () => {
  raw = false;
  lineEmpty = true;
  request = [];
  paste = null;
  await boot();
});
if (listen) {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    out = (buf) => socket.write(buf);
    socket.on("data", (data) => {
      debug("IN", data);
    for (const b of data) inQueue.push(b);
      pump();
    });
    socket.on("error", () => {});
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
} else {
  process.stdin.on("data", (data) => {
    debug("IN", data);
    for (const b of data) inQueue.push(b);
    pump();
  });
  process.stdin.on("end", () => process.exit(0));
}
