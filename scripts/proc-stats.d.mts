// Types for scripts/proc-stats.mjs (imported by test/daemon/harness.ts).
export declare function fdCounts(pid: number): { fds: number; sockets: number };
export declare function procStats(pid: number): { rssMiB: number; fds: number; sockets: number };
