/**
 * Why the hub cannot listen, said so that an operator knows what to change: the two common causes
 * are a port below 1024 without the capability to bind it, and a port another program already uses.
 * `where` names the setting: "FILE: listen" (hub.yaml) or "--listen" (the command line).
 */
export function listenProblem(err: NodeJS.ErrnoException, host: string, port: number, where: string): string {
  const code = err.code ?? err.message;
  const what = `cannot listen on ${host}:${port} (${code})`;
  switch (err.code) {
    case 'EACCES':
      if (port >= 1024) return `${what}: the system refused this port to the hub's user; pick another port in ${where}`;
      return (
        `${what}: ports below 1024 need the capability CAP_NET_BIND_SERVICE or root. The devstreams-hub systemd ` +
        `unit grants it (AmbientCapabilities=CAP_NET_BIND_SERVICE): check that no drop-in emptied AmbientCapabilities= or ` +
        `CapabilityBoundingSet= (systemctl cat devstreams-hub); or use a port above 1023 in ${where}`
      );
    case 'EADDRINUSE':
      return `${what}: another program, or another hub, already uses this port (ss -ltnp 'sport = :${port}' shows which); stop it or change ${where}`;
    case 'EADDRNOTAVAIL':
      return `${what}: ${host} is not an address of this machine; change ${where} (0.0.0.0 listens on every address)`;
    default:
      return `${what}; check ${where}`;
  }
}
