// Polling that rests while the tab is hidden: the one helper of every page that polls (the
// lists, a run and its followed log, a backfill, a pool), so none asks the API for what no
// one sees, and each catches up at once when it is seen again.

/** Calls ``ask`` again and again: each call ``delay(spent)`` ms after the one before has
 * settled (``spent``: how long that one took), never two at once. While the tab is hidden
 * (``document.hidden``) nothing is asked; when it is shown again, ``ask`` is called at once
 * (unless a call is on its way: its answer is fresh) and polling goes on from there. ``ask``
 * resolving to ``false`` ends the polling; a rejection does not (``ask`` shows its errors).
 * ``now``: the first call at once, hidden or not (the page needs its data), else after the
 * first delay. Returns the function that stops it. */
export function pollWhileVisible(ask: () => Promise<unknown>, delay: (spentMs: number) => number, now = true): () => void {
  let stopped = false;
  let asking = false;
  let timer = 0;
  const call = async () => {
    window.clearTimeout(timer);
    if (stopped || asking) return;
    asking = true;
    const began = performance.now();
    let more: unknown = true;
    try {
      more = await ask();
    } catch {
      // ask reports its own errors; polling goes on
    } finally {
      asking = false;
    }
    if (stopped) return;
    if (more === false) stop();
    else timer = window.setTimeout(due, delay(performance.now() - began));
  };
  const due = () => { if (!document.hidden) call(); }; // hidden: the tab's return calls
  const onVisibility = () => { if (!document.hidden) call(); };
  const stop = () => {
    stopped = true;
    window.clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
  document.addEventListener("visibilitychange", onVisibility);
  if (now) call();
  else timer = window.setTimeout(due, delay(0));
  return stop;
}
