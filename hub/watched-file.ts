import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from '../protocol/index.js';

/**
 * A file the running hub re-reads whenever it changes (registry.json, tokens.json): its inode, size
 * and mtime are compared on every use, and a watch on its folder (an atomic write replaces the
 * file, so the folder is watched, not the file) reloads it as soon as it is written, so listeners
 * hear of changes without waiting for a lookup. A file that turns bad while the hub runs is logged
 * once and the last good content is kept; at start a bad file is an error (the read throws).
 */
export class WatchedFile<T> {
  private readonly file: string;
  private readonly what: string;
  private readonly read: (file: string) => T;
  private readonly log: Logger;
  private value: T | undefined;
  private signature = '';
  private watcher: FSWatcher | null = null;
  private readonly listeners: Array<(value: T) => void> = [];

  /** Log fields that sum up a content (e.g. how many tokens), on every reload. */
  private readonly summary: (value: T) => Record<string, unknown>;
  /** What a missing file means, warned when it disappears while the hub runs. */
  private readonly ifMissing: string | undefined;

  constructor(opts: {
    file: string;
    what: string;
    read: (file: string) => T;
    log: Logger;
    summary?: (value: T) => Record<string, unknown>;
    ifMissing?: string;
  }) {
    this.file = opts.file;
    this.what = opts.what;
    this.read = opts.read;
    this.log = opts.log;
    this.summary = opts.summary ?? (() => ({}));
    this.ifMissing = opts.ifMissing;
  }

  /** Reads the file (throws its ConfigError) and starts watching it. */
  start(): T {
    if (this.currentSignature() === 'missing') this.log.warn({ file: this.file }, `${this.what} file missing`);
    const value = this.load();
    this.watcher?.close();
    try {
      const name = basename(this.file);
      this.watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) this.get();
      });
      this.watcher.on('error', (err) => this.log.warn({ err: err.message }, `${this.what} watch failed; changes are seen on the next use`));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, `cannot watch the ${this.what} folder; changes are seen on the next use`);
    }
    return value;
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
  }

  /** Called with the new content after every reload (not at start). */
  onChange(listener: (value: T) => void): void {
    this.listeners.push(listener);
  }

  /** The current content, re-read first if the file changed. */
  get(): T {
    const signature = this.currentSignature();
    if (signature !== this.signature || this.value === undefined) {
      let value: T;
      try {
        value = this.load();
      } catch (err) {
        this.signature = signature; // report a bad file once, not on every use
        this.log.error({ err: (err as Error).message }, `${this.what} changed but cannot be used; keeping the last good one`);
        if (this.value === undefined) throw err;
        return this.value;
      }
      // A deleted file reads as empty: that is a change, but rarely the one intended; say what it did.
      if (signature === 'missing') this.log.warn({ file: this.file }, `${this.what} file missing: ${this.ifMissing ?? 'read as empty'}`);
      this.log.info({ file: this.file, ...this.summary(value) }, `${this.what} reloaded`);
      for (const l of this.listeners) {
        try {
          l(value);
        } catch (err) {
          this.log.error({ err: (err as Error).message }, `${this.what} change listener failed`);
        }
      }
    }
    return this.value!;
  }

  private load(): T {
    const signature = this.currentSignature();
    const value = this.read(this.file);
    this.value = value;
    this.signature = signature;
    return value;
  }

  private currentSignature(): string {
    try {
      const st = statSync(this.file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }
}
