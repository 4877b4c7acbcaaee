/**
 * `work`, failed after `timeoutMs` if it has not answered by then (it may still end later: the
 * caller stops waiting, the work is not stopped). For answers a caller must give in time whatever a
 * store does, such as `/readyz` and a `/metrics` scrape, where a connection gone silent would
 * otherwise hold them for the driver's own timeouts.
 */
export function answeredWithin<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  // A late rejection of `work` is already handled by the race.
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
