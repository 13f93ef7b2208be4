import { randomBytes } from 'node:crypto';
import { constants as fsConstants, mkdirSync, readFileSync } from 'node:fs';
import { access, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import initSqlJs from 'sql.js/dist/sql-wasm-inline.js';
import type { Database, SqlJsStatic, Statement } from 'sql.js';
import { ConfigError, type Logger, type StreamQuery, type StreamRecord } from '../protocol/index.js';
import { fromRow, HISTORY_SCHEMA_SQL, HISTORY_SCHEMA_VERSION, INSERT_SQL, queryOf, toParams, type HistoryScope } from './history-sql.js';

/**
 * The stream history: every stream's record in an embedded SQLite database (sql.js, SQLite
 * compiled to WebAssembly, so the same code runs on Node 20 and in the single executable with no
 * native addon; see ARCHITECTURE "Stream history"). The database lives in memory and is written
 * to `file` as a whole (temporary file, fsync, rename) at most once per `flushDelayMs` after a
 * change, and on stop. Retention: records older than `maxAgeMs` and all but the newest
 * `maxRecords` are deleted at each write.
 */
export interface HistoryStoreOptions {
  /** The database file; null keeps the history in memory only. */
  file: string | null;
  maxAgeMs: number;
  maxRecords: number;
  log: Logger;
  /** Delay between a change and its write to disk (default 1 s). */
  flushDelayMs?: number;
}

let sqlJs: Promise<SqlJsStatic> | undefined;

/** Longest a finished stream's record waits to be inserted with the ones that follow it. */
const PENDING_WINDOW_MS = 100;

export class HistoryStore {
  private readonly o: HistoryStoreOptions;
  private readonly log: Logger;
  private db: Database | null = null;
  /**
   * Prepared once: preparing the INSERT for every record cost ~0.8 ms of CPU per stream, and
   * `exec('BEGIN')` / `exec('COMMIT')` another ~0.12 ms per transaction.
   */
  private stmts: { insert: Statement; begin: Statement; commit: Statement } | null = null;
  /**
   * Records not yet in the database: inserted together, in one transaction, at most
   * `PENDING_WINDOW_MS` after the first of them. A transaction of one record cost ~100 us of CPU
   * (sql.js), of ten ~20 us each, so under a stream rate that matters the window fills. Every read
   * and every write to disk inserts them first, so nothing can see the gap.
   */
  private pending: StreamRecord[] = [];
  private pendingFlush: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private dirty = false;
  private lastWriteError: string | null = null;

  constructor(opts: HistoryStoreOptions) {
    this.o = opts;
    this.log = opts.log.child({ component: 'history' });
  }

  async start(): Promise<void> {
    if (this.db) return;
    sqlJs ??= initSqlJs();
    const SQL = await sqlJs;
    const { file } = this.o;
    let bytes: Buffer | undefined;
    if (file) {
      try {
        mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
        bytes = readFileSync(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT') throw new ConfigError('history.file', [`cannot read ${file} (${code ?? 'error'})`]);
      }
    }
    const db = bytes ? new SQL.Database(bytes) : new SQL.Database();
    try {
      db.exec(HISTORY_SCHEMA_SQL);
      const version = Number(db.exec('PRAGMA user_version')[0]?.values[0]?.[0] ?? 0);
      if (version > HISTORY_SCHEMA_VERSION) throw new Error(`schema version ${version} is newer than this hub's`);
      db.exec(`PRAGMA user_version = ${HISTORY_SCHEMA_VERSION}`);
    } catch (err) {
      db.close();
      throw new ConfigError('history.file', [`${file} is not a usable devstreams history database (${(err as Error).message}); move it away to start a new one`]);
    }
    this.db = db;
    this.prune();
    this.log.info({ file, records: this.count() }, 'stream history open');
  }

  /** Writes what is pending and closes the database. Idempotent. */
  async stop(): Promise<void> {
    if (!this.db) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.writing;
    this.insertPending();
    if (this.dirty) await this.flush();
    if (this.stmts) for (const st of Object.values(this.stmts)) st.free();
    this.stmts = null;
    this.db.close();
    this.db = null;
  }

  insert(record: StreamRecord): void {
    if (!this.db) return;
    this.pending.push(record);
    if (!this.pendingFlush) {
      this.pendingFlush = setTimeout(() => this.insertPending(), PENDING_WINDOW_MS);
      this.pendingFlush.unref();
    }
    this.changed();
  }

  private insertPending(): void {
    if (this.pendingFlush) clearTimeout(this.pendingFlush);
    this.pendingFlush = null;
    const db = this.db;
    if (!db || this.pending.length === 0) return;
    const records = this.pending;
    this.pending = [];
    const st = (this.stmts ??= { insert: db.prepare(INSERT_SQL), begin: db.prepare('BEGIN'), commit: db.prepare('COMMIT') });
    st.begin.run();
    try {
      for (const r of records) st.insert.run(toParams(r));
      st.commit.run();
    } catch (err) {
      db.exec('ROLLBACK');
      this.log.error({ records: records.length, err: (err as Error).message }, 'stream records not stored');
    }
  }

  /** Newest first (by end time), filtered, and only what `scope` (a service token's) may see. */
  query(q: StreamQuery, scope?: HistoryScope): StreamRecord[] {
    if (!this.db) return [];
    this.insertPending();
    const { sql, params } = queryOf(q, scope);
    const stmt = this.db.prepare(sql);
    try {
      stmt.bind(params);
      const out: StreamRecord[] = [];
      while (stmt.step()) out.push(fromRow(stmt.getAsObject()));
      return out;
    } finally {
      stmt.free();
    }
  }

  count(): number {
    if (!this.db) return 0;
    this.insertPending();
    return Number(this.db.exec('SELECT count(*) FROM streams')[0]?.values[0]?.[0] ?? 0);
  }

  /**
   * Null when the store works: open, its folder writable, its last write to disk succeeded.
   * Otherwise what is wrong (for /readyz).
   */
  async problem(): Promise<string | null> {
    if (!this.db) return 'stream history is closed';
    const { file } = this.o;
    if (!file) return null;
    try {
      await access(dirname(file), fsConstants.W_OK);
    } catch (err) {
      return `history folder ${dirname(file)} is not writable (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    }
    return this.lastWriteError;
  }

  /** Writes the database to its file now (tests and stop use it; otherwise writes are scheduled). */
  async flush(): Promise<void> {
    if (this.writing) await this.writing;
    if (!this.db) return;
    this.writing = this.write().finally(() => (this.writing = null));
    await this.writing;
  }

  private changed(): void {
    this.dirty = true;
    if (this.timer || !this.o.file) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.o.flushDelayMs ?? 1000);
    this.timer.unref();
  }

  private prune(): void {
    const db = this.db;
    if (!db) return;
    db.run('DELETE FROM streams WHERE closed_at < ?', [Date.now() - this.o.maxAgeMs]);
    db.run(
      'DELETE FROM streams WHERE seq <= (SELECT seq FROM streams ORDER BY seq DESC LIMIT 1 OFFSET ?)',
      [this.o.maxRecords],
    );
  }

  private async write(): Promise<void> {
    const { file } = this.o;
    const db = this.db;
    if (!file || !db) return;
    this.insertPending();
    this.prune();
    this.dirty = false;
    const data = db.export();
    const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      if (this.lastWriteError) this.log.info({ file }, 'stream history written again');
      this.lastWriteError = null;
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      const problem = `cannot write ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
      if (problem !== this.lastWriteError) this.log.error({ file, err: problem }, 'stream history not written');
      this.lastWriteError = problem;
      this.dirty = true;
    }
  }
}
