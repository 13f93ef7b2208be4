/** Calls `abort` once with the signal's reason when it fires (at once, in a microtask, if it already has). Returns the unlisten. */
export function onAbort(signal: AbortSignal | undefined, abort: (reason: Error) => void): () => void {
  if (!signal) return () => undefined;
  const fire = (): void => abort(signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError'));
  if (signal.aborted) {
    queueMicrotask(fire);
    return () => undefined;
  }
  signal.addEventListener('abort', fire, { once: true });
  return () => signal.removeEventListener('abort', fire);
}
