// A device whose CPU has no AES instructions (the Raspberry Pi 3, 4 and Zero 2 W: their Broadcom
// chips lack the ARMv8 crypto extensions), stood in for on x86-64 by OpenSSL's own capability
// switch: OPENSSL_ia32cap masks AES-NI and PCLMULQDQ for the device side's process alone, the agent
// for devstreams and sshd for `ssh -L` (whose default cipher, ChaCha20-Poly1305, it leaves as fast).
// One stream up and down through each, runs interleaved, with the device side's CPU per byte; and
// through a devstreams whose agent keeps AES-GCM (`hub.tlsCipher: aes-gcm`), as every agent did
// before it chose its cipher (the thirteenth round).
import { startDevstreams, startSsh } from './stack.mjs';
import { cpuNs } from './procs.mjs';
import * as load from './load.mjs';
import { summary } from './stats.mjs';
import { NO_AES_NI_ENV } from './no-aes-env.mjs';

/** Null where the stand-in does not apply (not x86-64). `ssh`: measure `ssh -L` too. */
export async function noAesBulk(targetPort, { bytes, maxS, runs = 3, ssh = true } = {}) {
  if (process.arch !== 'x64') return null;
  const paths = [await startDevstreams(targetPort, { agentEnv: NO_AES_NI_ENV })];
  try {
    paths.push(await startDevstreams(targetPort, { agentEnv: NO_AES_NI_ENV, agentTlsCipher: 'aes-gcm' }));
    if (ssh) paths.push(await startSsh(targetPort, { sshdEnv: NO_AES_NI_ENV }));
    const raw = paths.map(() => ({ up: [], down: [], nsUp: [], nsDown: [] }));
    for (const p of paths) await load.download(p.port, 1024 * 1024); // warm-up
    for (let run = 0; run < runs; run++) {
      for (const [i, p] of paths.entries()) {
        for (const dir of ['up', 'down']) {
          const c0 = cpuNs(p.devicePid); // the device side: devstreams' agent, ssh -L's sshd
          const x = await (dir === 'up' ? load.upload(p.port, bytes, maxS) : load.download(p.port, bytes, maxS));
          raw[i][dir].push(x.bytes / 1e6 / x.secs);
          raw[i][dir === 'up' ? 'nsUp' : 'nsDown'].push((cpuNs(p.devicePid) - c0) / x.bytes);
        }
      }
    }
    const of = (r) => ({ up: summary(r.up), down: summary(r.down), deviceNsUp: summary(r.nsUp), deviceNsDown: summary(r.nsDown) });
    // The cipher the hub gave the agent's relay connection (its log line for the device's connection).
    const cipher = (p) => {
      const line = p.hub.lines.find((l) => l.includes('multiplexed connection open') && l.includes('"device"'));
      return line ? (JSON.parse(line).cipher ?? null) : null;
    };
    return {
      env: NO_AES_NI_ENV,
      runs,
      bytes,
      devstreams: { ...of(raw[0]), cipher: cipher(paths[0]) },
      devstreamsAesGcm: { ...of(raw[1]), cipher: cipher(paths[1]) },
      ssh: ssh ? of(raw[2]) : null,
    };
  } finally {
    for (const p of paths) await p.stop();
  }
}
