// Types for scripts/binary-config.mjs (imported by test/packaging).
export declare const NODE_VERSION: string;
export declare const TARGETS: Record<'arm64' | 'x64', { npmPackage: string; strip: string; stripPackage: string; cc: string; ccPackage: string; debArch: string }>;
export declare function binaryName(arch: string): string;
export declare function newestBinaryInput(root: string): { file: string; mtimeMs: number };
