// The serial line between the launcher (main thread) and the device (its
// worker): two byte rings in shared memory, one each way, and the pacing of a
// line at a baud rate. The launcher never blocks on a ring; the device waits
// on them (Atomics.wait), so a device with nothing to do costs no CPU, and a
// device printing faster than the line carries waits, as a board's UART does.

// A ring header's slots (Int32): bytes written, bytes read; on the input ring
// also Ctrl-Cs delivered, Ctrl-Cs the device has accounted for (read, or taken
// as an interrupt), and the count of delivered Ctrl-Cs the device has seen
// with interrupts off (they stay input). Counts wrap at 2^32; differences
// stay right.
export const WRITTEN = 0;
export const READ = 1;
export const SENT = 2;
export const ACCOUNTED = 3;
export const SEEN = 4;
// On the output ring: 1 while the launcher is not draining it. The device
// clears it (compare-and-exchange) after writing and then wakes the
// launcher; the launcher sets it when it stops and looks once more, so no
// byte written as it stops is left behind.
export const IDLE = 5;
const SLOTS = 6;
// Room kept for Ctrl-C in a ring otherwise full, as a board's UART interrupt
// sees Ctrl-C even when its buffer overflows.
const RESERVE = 64;

/** A single-producer single-consumer byte ring in shared memory. */
export class Ring {
  /** A fresh ring of `size` bytes (a power of two), or one shared with another thread. */
  constructor(size, shared) {
    this.buffer = shared?.buffer ?? new SharedArrayBuffer(size);
    this.header = shared?.header ?? new Int32Array(new SharedArrayBuffer(SLOTS * 4));
    this.data = new Uint8Array(this.buffer);
    this.mask = this.data.length - 1;
  }

  /** What another thread needs to share this ring. */
  shared() {
    return { buffer: this.buffer, header: this.header };
  }

  /** Bytes written and not yet read. */
  used() {
    return (Atomics.load(this.header, WRITTEN) - Atomics.load(this.header, READ)) | 0;
  }

  /**
   * Writes `b` unless the ring is full (a Ctrl-C may use the reserve); says
   * whether it did. A Ctrl-C is counted before it can be read.
   */
  tryPush(b) {
    const room = this.data.length - this.used();
    if (room <= 0 || (room <= RESERVE && b !== 0x03)) return false;
    const written = this.header[WRITTEN];
    this.data[written & this.mask] = b;
    if (b === 0x03) Atomics.add(this.header, SENT, 1);
    Atomics.store(this.header, WRITTEN, (written + 1) | 0);
    Atomics.notify(this.header, WRITTEN);
    return true;
  }

  /**
   * Writes `bytes`, waiting while the ring is full; `waiting()` runs before
   * each wait of at most 50 ms. Returns whether the reader is idle and must
   * be woken (see IDLE).
   */
  pushBlocking(bytes, waiting) {
    let wake = false;
    for (const b of bytes) {
      for (;;) {
        const read = Atomics.load(this.header, READ);
        if (((this.header[WRITTEN] - read) | 0) < this.data.length) break;
        wake = this.claim() || wake;
        waiting();
        Atomics.wait(this.header, READ, read, 50);
      }
      const written = this.header[WRITTEN];
      this.data[written & this.mask] = b;
      Atomics.store(this.header, WRITTEN, (written + 1) | 0);
    }
    return this.claim() || wake;
  }

  /** Takes the reader's idle mark: true if it was idle (it must be woken). */
  claim() {
    return Atomics.compareExchange(this.header, IDLE, 1, 0) === 1;
  }

  /**
   * The reader stops: marks it idle, then looks once more; true if bytes
   * came meanwhile and the reader must go on.
   */
  rest() {
    Atomics.store(this.header, IDLE, 1);
    return this.used() > 0 && this.claim();
  }

  /** Up to `max` bytes, without waiting. */
  take(max) {
    const read = this.header[READ];
    const n = Math.min(max, this.used());
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.data[(read + i) & this.mask];
    Atomics.store(this.header, READ, (read + n) | 0);
    Atomics.notify(this.header, READ);
    return out;
  }

  /** The next byte, waiting (without spinning) until one is written. */
  read() {
    const read = this.header[READ];
    for (;;) {
      const written = Atomics.load(this.header, WRITTEN);
      if (written !== read) break;
      Atomics.wait(this.header, WRITTEN, written);
    }
    const b = this.data[read & this.mask];
    Atomics.store(this.header, READ, (read + 1) | 0);
    return b;
  }

  /** Bytes written and not read, left in place (for a device that stopped). */
  unread() {
    const out = [];
    for (let i = Atomics.load(this.header, READ); i !== this.header[WRITTEN]; i = (i + 1) | 0) {
      out.push(this.data[i & this.mask]);
    }
    return out;
  }
}

/**
 * One direction of a line at `byteMs` a byte: a byte is delivered once the
 * line has carried it. The account is kept on the wall clock, so late timers
 * do not slow the line down.
 */
export function pace(byteMs) {
  let since = 0;
  let carried = 0;
  return {
    /** Starts the clock when the line was idle. */
    start() {
      since = performance.now();
      carried = 0;
    },
    /** How many more bytes the line has carried by now. */
    due() {
      if (byteMs === 0) return Infinity;
      return Math.max(0, Math.floor((performance.now() - since) / byteMs) - carried);
    },
    took(n) {
      carried += n;
    },
  };
}
