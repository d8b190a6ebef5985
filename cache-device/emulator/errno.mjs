// The VM's system calls answer in Linux's errno numbers, as a board's
// MicroPython does (its errno module uses them: errno.ENOENT is 2), not in
// Emscripten's (WASI's: ENOENT is 44). Clients rely on them: mpremote tells a
// missing file by OSError 2.

// WASI errno -> Linux errno, for the ones a filesystem can give.
const LINUX = new Map([
  [1, 7], [2, 13], [6, 11], [8, 9], [10, 16], [12, 10], [18, 33], [20, 17],
  [21, 14], [22, 27], [26, 115], [27, 4], [28, 22], [29, 5], [31, 21],
  [32, 40], [33, 24], [34, 31], [37, 36], [41, 23], [43, 19], [44, 2],
  [45, 8], [48, 12], [51, 28], [52, 38], [54, 20], [55, 39], [58, 95],
  [59, 25], [60, 6], [61, 75], [63, 1], [64, 32], [68, 34], [69, 30],
  [70, 29], [71, 3], [73, 110], [74, 26], [75, 18],
]);
const linux = (e) => LINUX.get(e) ?? e;

// Emscripten's system calls return -errno; WASI's fd_* calls return errno.
function wrap(imports) {
  const env = { ...imports.env };
  for (const [name, f] of Object.entries(env)) {
    if (!name.startsWith("__syscall_") || typeof f !== "function") continue;
    env[name] = (...args) => {
      const r = f(...args);
      return typeof r === "number" && r < 0 ? -linux(-r) : r;
    };
  }
  const wasi = { ...imports.wasi_snapshot_preview1 };
  for (const [name, f] of Object.entries(wasi)) {
    if (typeof f !== "function") continue;
    wasi[name] = (...args) => {
      const r = f(...args);
      return typeof r === "number" && r > 0 ? linux(r) : r;
    };
  }
  return { ...imports, env, wasi_snapshot_preview1: wasi };
}

/** Makes every VM instantiated from now on in this thread answer in Linux's numbers. */
export function linuxErrnos() {
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = (source, imports) =>
    instantiate.call(WebAssembly, source, imports ? wrap(imports) : imports);
}
