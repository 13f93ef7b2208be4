import { executableSuite } from './exe-suite.js';

// The arm64 executable, under qemu-aarch64-static on an x64 host (natively on an arm64 one); the
// service side (ssh's ProxyCommand) is this checkout's dist/devstreams.mjs on the host.
executableSuite('arm64', { serviceSide: 'checkout' });
