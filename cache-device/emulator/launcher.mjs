// A MicroPython device on stdin/stdout: the real VM (WebAssembly build)
// behind its REPL, for cache-device's tests and benchmarks.
//
//   node launcher.mjs [--firmware 1.27|1.29] [--baud 115200|0]
//
// - Bytes on stdin go to the REPL one by one; the REPL's bytes go to stdout.
// - --baud throttles both directions to what a serial line carries
//   (10 bits a byte); 0 turns throttling off.
// - Ctrl-D on an empty raw-REPL line is a soft reset, as on a board: a fresh
//   VM (everything defined is gone), "soft reboot", and the raw REPL again.
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

// Output, paced at the line rate.
const outQueue = [];
let draining = false;
let muted = false;
function emit(bytes) {
  if (muted) return;
  for (const b of bytes) outQueue.push(b);
  if (!draining) drain();
}
function drain() {
  if (outQueue.length === 0) {
    draining = false;
    return;
  }
  draining = true;
  if (byteMs === 0) {
    process.stdout.write(Buffer.from(outQueue.splice(0)));
    draining = false;
    return;
  }
  // Send what the line carried since the last tick, at least one byte.
  const n = Math.max(1, Math.floor(4 / byteMs));
  process.stdout.write(Buffer.from(outQueue.splice(0, n)));
  setTimeout(drain, n * byteMs);
}

let mp;
async function boot() {
  mp = await load({ heapsize: 1024 * 1024, stdout: (b) => emit(b), linebuffer: false });
  mp.replInit();
}

// Raw REPL tracking, to emulate a soft reset.
let raw = false;
let lineEmpty = true;

async function feed(b) {
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
      emit(Buffer.from("soft reboot\r\n"));
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
async function pump() {
  if (feeding) return;
  feeding = true;
  while (inQueue.length > 0) {
    await feed(inQueue.shift());
    if (byteMs > 0 && inQueue.length % 8 === 0) {
      await new Promise((r) => setTimeout(r, 8 * byteMs));
    }
  }
  feeding = false;
}

await boot();
process.stdin.on("data", (data) => {
  for (const b of data) inQueue.push(b);
  pump();
});
process.stdin.on("end", () => process.exit(0));
