// Alert rules, pure: what an alert becomes given what is observed now. The
// leader (hub/checks/alerts.ts) reads the observations from the database,
// asks these, and records and sends what changed.
//
// De-duplication is the alert's own state: an alert is notified when it
// changes (firing, resolved, flapping or not), and, while it keeps firing,
// again every `repeatMs` (a reminder) — never twice for the same change.

export interface AlertOptions {
  /** An agent not connected for this long is offline. */
  offlineMs: number;
  /** A running or paused rollout in which nothing moved for this long is stuck. */
  stuckMs: number;
  /** Reminders of an alert still firing (0: none). */
  repeatMs: number;
  /** A check that changed state `flapCount` times within `flapWindowMs` is flapping: one alert, not one per change. */
  flapWindowMs: number;
  flapCount: number;
  /** How often the leader looks at changed checks and due reminders. */
  tickMs: number;
  /** How often agents and rollouts are looked at (a scan of each). */
  scanMs: number;
  /** Check history kept for this long. */
  historyMs: number;
}

export const ALERT_DEFAULTS: AlertOptions = Object.freeze({
  offlineMs: 5 * 60_000,
  stuckMs: 30 * 60_000,
  repeatMs: 4 * 3600_000,
  flapWindowMs: 10 * 60_000,
  flapCount: 4,
  tickMs: 2000,
  scanMs: 15_000,
  historyMs: 30 * 86_400_000,
});

export interface AlertState {
  state: 'firing' | 'resolved';
  flapping: boolean;
}

/** A check's alert: firing while failing or flapping; resolved once passing and steady. null: nothing changes. */
export function checkAlert(prev: AlertState | undefined, state: 'pending' | 'passing' | 'failing', flaps: number, o: Pick<AlertOptions, 'flapCount'>): AlertState | null {
  if (state === 'pending') return null;
  const flapping = flaps >= o.flapCount;
  const firing = state === 'failing' || flapping;
  if (!prev && !firing) return null; // a check that was never alerted and passes: nothing to say
  const next: AlertState = { state: firing ? 'firing' : 'resolved', flapping };
  return prev && prev.state === next.state && prev.flapping === next.flapping ? null : next;
}

/** The notice's name for a check alert. */
export function checkEvent(a: AlertState): string {
  if (a.state === 'resolved') return 'check.recovered';
  return a.flapping ? 'check.flapping' : 'check.failing';
}

/** Offline: not connected and last seen longer ago than `offlineMs` (an agent never seen is not offline, only new). */
export function isOffline(a: { connected: boolean; revoked: boolean; lastSeenAt: number | null }, now: number, o: Pick<AlertOptions, 'offlineMs'>): boolean {
  return !a.connected && !a.revoked && a.lastSeenAt !== null && now - a.lastSeenAt >= o.offlineMs;
}

/** Stuck: nothing moved in a running or paused rollout for `stuckMs`. */
export function isStuck(r: { lastMoved: number }, now: number, o: Pick<AlertOptions, 'stuckMs'>): boolean {
  return now - r.lastMoved >= o.stuckMs;
}
