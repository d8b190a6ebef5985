// The device's files, kept as a board keeps its flash: over a soft reset (in
// the device's thread) and over a hard reset (the launcher holds the last
// copy the device sent and hands it to the next device).

// Directories Emscripten makes afresh in every VM, not the board's files.
const FRESH = new Set(["/dev", "/proc", "/tmp"]);

/** Every file and directory of the VM's filesystem, with the files' bytes. */
export function files(FS, dir = "/", out = []) {
  for (const name of FS.readdir(dir)) {
    if (name === "." || name === "..") continue;
    const path = dir === "/" ? `/${name}` : `${dir}/${name}`;
    if (FRESH.has(path)) continue;
    const mode = FS.stat(path).mode;
    if (FS.isDir(mode)) {
      out.push({ path });
      files(FS, path, out);
    } else if (FS.isFile(mode)) {
      out.push({ path, data: FS.readFile(path) });
    }
  }
  return out;
}

/** Puts `kept` (from `files`) into a fresh VM's filesystem. */
export function restore(FS, kept) {
  for (const { path, data } of kept ?? []) {
    if (data) FS.writeFile(path, data);
    else if (!FS.analyzePath(path).exists) FS.mkdir(path);
  }
}

/**
 * Marks `changed.dirty` whenever the VM may change its files: the
 * filesystem calls its system calls make.
 */
export function watch(FS, changed) {
  for (const name of ["write", "mkdir", "rmdir", "unlink", "rename", "truncate", "ftruncate", "symlink"]) {
    const f = FS[name];
    FS[name] = function (...args) {
      changed.dirty = true;
      return f.apply(this, args);
    };
  }
}
