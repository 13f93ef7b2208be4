import { statSync } from 'node:fs';
import { dirname } from 'node:path';

/** A numeric owner and group for chown. */
export interface Owner {
  uid: number;
  gid: number;
}

/**
 * The owner a file that root writes into a hub folder must get so that the hub keeps reading it.
 * Under systemd the hub runs as its own user (devstreams) and the admin commands are meant to run
 * as that user (runuser -u devstreams -- devstreams hub ...). An admin who runs them as root
 * instead would leave registry.json, tokens.json or a device's key owned by root, mode 0600: the
 * running hub gets EACCES and will not start again. So, when this process is root, a file takes
 * the owner of the file it replaces, else of its folder (the nearest one that exists), as if
 * runuser had been used. Null when nothing is to be changed: not root, or everything is root's.
 */
export function ownerForNewFile(file: string): Owner | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  for (let p = file; ; p = dirname(p)) {
    const st = statOrNull(p);
    // The file itself when it exists, then its nearest existing folder; a root-owned file in a
    // folder of another user (left by an earlier root run) gets the folder's owner back.
    if (st && st.uid !== 0) return { uid: st.uid, gid: st.gid };
    if (st && p !== file) return null;
    if (dirname(p) === p) return null;
  }
}

function statOrNull(p: string): { uid: number; gid: number } | null {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}
