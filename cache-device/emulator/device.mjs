// The device itself, in a worker thread of launcher.mjs: the MicroPython VM
// and the REPL front a board's firmware puts before it.
//
// - Bytes arrive on a ring in shared memory (line.mjs) that this thread
//   reads with blocking waits, so an idle device costs no CPU. Output goes
//   out on another ring; when the launcher has not carried it yet, printing
//   waits, as on a board's UART. (The VM's own stdin has no source in this
//   build: input() and the VM's native raw-paste get nothing from the line.)
// - Ctrl-C while code runs: the launcher counts each Ctrl-C it delivers in
//   the input ring's header. The VM reads the clock over and over while it
//   sleeps (its sleeps wait on the clock), and wherever code asks for the
//   time; at such a read, and whenever the VM prints, a Ctrl-C not yet
//   accounted for, with the VM's interrupt character armed (code is running),
//   schedules a KeyboardInterrupt with mp_sched_keyboard_interrupt, as a
//   board's UART interrupt does, and that Ctrl-C is not read as input. The
//   clock read that takes it jumps ahead once, which ends a sleep in progress
//   (see JUMP). Code that neither reads the clock nor prints (a busy loop)
//   cannot be reached: the launcher restarts the device when a Ctrl-C stays
//   unanswered for 2 s.
// - The VM's return code says when it leaves its REPL (Ctrl-D on an empty
//   line, sys.exit()): as a board, the device then soft-resets.
import { parentPort, workerData } from "node:worker_threads";
import { loadMicroPython as load127 } from "mp127/micropython.mjs";
import { loadMicroPython as load129 } from "mp129/micropython.mjs";
import { linuxErrnos } from "./errno.mjs";
import { files, restore, watch } from "./flash.mjs";
import { Ring, SENT, ACCOUNTED, SEEN } from "./line.mjs";

const { firmware, rawPaste, input: inShared, output: outShared, kept } = workerData;
const load = { "1.27": load127, "1.29": load129 }[firmware];
const input = new Ring(0, inShared);
const output = new Ring(0, outShared);
const header = input.header;
linuxErrnos();

// A board's raw-paste window: half of MicroPython's default 256-byte stdin
// buffer (MICROPY_REPL_STDIN_BUFFER_MAX).
const PASTE_WINDOW = 128;
const CTRL_A = 0x01;
const CTRL_B = 0x02;
const CTRL_C = 0x03;
const CTRL_D = 0x04;
const CTRL_E = 0x05;
// pyexec's PYEXEC_FORCED_EXIT: the REPL was left (a soft reset follows).
const FORCED_EXIT = 0x100;
const RAW_BANNER = "raw REPL; CTRL-B to exit\r\n>";

let mp;
const armed = () => mp !== undefined && mp._module._mp_hal_get_interrupt_char() === CTRL_C;

// Ctrl-C bookkeeping: how many delivered Ctrl-Cs this thread has accounted
// for, and how many of those it took as interrupts (so their bytes, still in
// the ring, are skipped when read).
let accounted = 0;
let taken = 0;
function account() {
  accounted += 1;
  Atomics.store(header, ACCOUNTED, accounted);
}
const pending = () => Atomics.load(header, SENT) - accounted > 0;
// Takes a pending Ctrl-C as an interrupt if code runs with interrupts on;
// otherwise tells the launcher this device is alive and the Ctrl-C is input.
function interrupt() {
  if (!pending()) return false;
  if (!armed()) {
    Atomics.store(header, SEEN, Atomics.load(header, SENT));
    return false;
  }
  account();
  taken += 1;
  mp._module._mp_sched_keyboard_interrupt();
  return true;
}

// How far the clock read that takes an interrupt jumps, in ms. The VM's
// sleeps wait for 32-bit tick differences: time.sleep() and sleep_ms() on
// the milliseconds, sleep_us() on the same reading times 1000. After this
// jump the first difference is 2,550,136,832 ms more and the second
// 3 * 2^30 us more (JUMP * 1000 mod 2^32), both beyond any sleep, so the
// sleep ends and the interrupt is raised (for sleep_us, one begun in the
// last 18 minutes). A plain 2^31 would add nothing to the microseconds.
const JUMP = 0x98000000;
const wallClock = Date.now.bind(Date);
Date.now = () => (interrupt() ? wallClock() + JUMP : wallClock());

// Output. While muted (a fresh VM printing its banner on a soft reset),
// nothing goes out. After an emulated raw paste, the raw REPL's "OK" is
// dropped.
let muted = false;
let dropOk = 0;
function emit(bytes) {
  if (muted) return;
  const out = [];
  for (const b of bytes) {
    if (dropOk > 0 && b === "OK".charCodeAt(2 - dropOk)) {
      dropOk -= 1;
      continue;
    }
    dropOk = 0;
    out.push(b);
  }
  interrupt();
  if (out.length > 0 && output.pushBlocking(out, interrupt)) parentPort.postMessage("wake");
}
const say = (text) => emit(Buffer.from(text, "latin1"));

// The files, and whether the VM may have changed them since the launcher
// last got a copy.
const changed = { dirty: false };
async function boot(files) {
  mp = await load({ heapsize: 1024 * 1024, stdout: (b) => emit(b), linebuffer: false });
  restore(mp.FS, files);
  watch(mp.FS, changed);
  mp.replInit();
}
function sendFiles() {
  if (!changed.dirty) return;
  changed.dirty = false;
  parentPort.postMessage({ files: files(mp.FS) });
}

// The next input byte, blocking; Ctrl-Cs taken as interrupts are skipped.
function next() {
  for (;;) {
    const b = input.read();
    if (b !== CTRL_C) return b;
    if (taken > 0) {
      taken -= 1;
      continue;
    }
    account();
    return b;
  }
}

// The REPL, tracked to emulate raw-paste; `raw` and `lineEmpty` follow what
// the VM's raw REPL does with each byte.
let raw = false;
let lineEmpty = true;
let request = [];
let paste = null;

// Feeds one byte to the VM; a soft reset if the VM left its REPL.
async function vm(b) {
  let ret;
  if (raw && b === CTRL_A) {
    // A Ctrl-A may start the VM's own raw-paste, which gets stuck; the
    // launcher stops a VM that does not come back from it.
    parentPort.postMessage("paste");
    ret = mp.replProcessChar(b);
    parentPort.postMessage("idle");
  } else {
    ret = mp.replProcessChar(b);
  }
  sendFiles();
  if (ret & FORCED_EXIT) await softReset();
}

async function softReset() {
  // A board restarts MicroPython (its files stay), prints "MPY: soft reboot"
  // (since 1.20) and enters the REPL it was in: in the raw REPL, only the raw
  // REPL's banner; in the friendly one, the boot banner.
  const kept = files(mp.FS);
  say("MPY: soft reboot\r\n");
  muted = raw;
  await boot(kept);
  if (raw) {
    mp.replProcessChar(CTRL_A);
    muted = false;
    say(RAW_BANNER);
  }
  lineEmpty = true;
}

async function emulatedPaste(b) {
  if (b === CTRL_C) {
    // As a board's reader: end of data, and a KeyboardInterrupt.
    paste = null;
    say("\x04\x04KeyboardInterrupt: \r\n\x04>");
    return;
  }
  if (b === CTRL_D) {
    // End of data: acknowledge, then run the code on the VM's raw REPL.
    emit([CTRL_D]);
    const code = paste.code;
    paste = null;
    if (code.length === 0) {
      emit([CTRL_D, CTRL_D, 0x3e]);
      return;
    }
    for (const c of code) mp.replProcessChar(c);
    dropOk = 2;
    lineEmpty = true;
    return vm(CTRL_D);
  }
  paste.code.push(b);
  paste.taken += 1;
  if (paste.taken % PASTE_WINDOW === 0) emit([CTRL_A]);
}

async function feed(b) {
  if (paste) return emulatedPaste(b);
  if (raw && lineEmpty && (request.length > 0 || b === CTRL_E)) {
    request.push(b);
    const expect = [CTRL_E, 0x41, CTRL_A];
    if (request.every((x, i) => x === expect[i])) {
      if (request.length < 3) return;
      request = [];
      if (rawPaste === "emulate") {
        // As a board: R\x01, the window, and a first \x01 (two windows free).
        emit([0x52, 0x01, PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8, CTRL_A]);
        paste = { code: [], taken: 0 };
      } else if (rawPaste === "refuse") {
        emit([0x52, 0x00]);
      } else if (rawPaste === "old") {
        await vm(CTRL_A);
      } else {
        // The VM's own raw-paste (its stdin has no source in this build).
        mp.replProcessChar(CTRL_E);
        mp.replProcessChar(0x41);
        await vm(CTRL_A);
      }
      return;
    }
    // Not a raw-paste request after all: hand the bytes on.
    const held = request;
    request = [];
    for (const x of held) await feed(x);
    return;
  }
  if (b === CTRL_A) {
    raw = true;
    lineEmpty = true;
  } else if (b === CTRL_B) {
    raw = false;
  } else if (raw && (b === CTRL_C || b === CTRL_D)) {
    lineEmpty = true;
  } else if (raw) {
    lineEmpty = false;
  }
  await vm(b);
}

// Power-on (or the reset button, or a restart after an unanswered interrupt):
// the files kept, the boot banner and the friendly REPL.
await boot(kept);
for (;;) await feed(next());
