// Rate limits and digests per platform. Pure: the notifier (hub/chat/notifier.ts)
// gives the times of what it sent and the notices waiting; these say when
// the next message may go and what it says.
//
// Published limits: DingTalk and WeCom robots 20 messages a minute, Feishu
// custom bots 5 a second and 100 a minute, Slack about 1 a second per
// channel. Matrix servers answer 429 with retry_after_ms (honoured by the
// transport); Ferry keeps below 10 in 10 s. A burst waits for the next slot
// and goes out as one digest: alarms first and never left out (a digest too
// long for the platform carries the alarms and says how many other notices
// it summarised; alarms that do not fit go in the next slot).

export type Platform = 'console' | 'matrix' | 'slack' | 'dingtalk' | 'feishu' | 'wecom' | 'webhook';
export const PLATFORMS: readonly Platform[] = ['console', 'matrix', 'slack', 'dingtalk', 'feishu', 'wecom', 'webhook'];

export interface Window {
  max: number;
  ms: number;
}

export const LIMITS: Record<Platform, readonly Window[]> = {
  console: [{ max: 50, ms: 1000 }],
  matrix: [{ max: 10, ms: 10_000 }],
  slack: [{ max: 1, ms: 1000 }],
  dingtalk: [{ max: 20, ms: 60_000 }],
  feishu: [
    { max: 5, ms: 1000 },
    { max: 100, ms: 60_000 },
  ],
  wecom: [{ max: 20, ms: 60_000 }],
  webhook: [{ max: 10, ms: 1000 }],
};

/** The longest message each platform takes, in UTF-8 bytes (WeCom text: 2048; others leave room). */
export const MAX_BYTES: Record<Platform, number> = { console: 16_000, matrix: 32_000, slack: 3000, dingtalk: 18_000, feishu: 28_000, wecom: 2000, webhook: 32_000 };

/** How many sent times a room must remember to apply its windows. */
export function historySize(p: Platform): number {
  return Math.max(...LIMITS[p].map((w) => w.max));
}

/** When the next message may be sent, given the times the last ones were (any order). */
export function nextSlot(p: Platform, sent: readonly number[], now: number): number {
  const times = [...sent].sort((a, b) => b - a);
  let at = now;
  for (const w of LIMITS[p]) {
    // The max-th most recent send must be out of the window.
    const t = times[w.max - 1];
    if (t !== undefined) at = Math.max(at, t + w.ms);
  }
  return at;
}

/** Keeps the times the windows still need. */
export function trimHistory(p: Platform, sent: readonly number[]): number[] {
  return [...sent].sort((a, b) => b - a).slice(0, historySize(p));
}

/** Backoff after a failed send: doubling from 2 s, at most 10 min, with jitter from `rand`. */
export function backoffMs(attempts: number, rand: number): number {
  const base = Math.min(600_000, 2000 * 2 ** Math.min(attempts, 12));
  return Math.round(base / 2 + (base / 2) * rand);
}

export interface Pending {
  id: number;
  alarm: boolean;
  text: string;
  at: number;
}

export interface Digest {
  text: string;
  /** The notices this message delivers (said in full, or counted in the summary line). */
  ids: number[];
}

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * One message for what waits: the notice itself when it is alone, else a
 * digest. Alarms come first and are never only counted; other notices are
 * listed while they fit and counted after that.
 */
export function digest(p: Platform, waiting: readonly Pending[]): Digest {
  if (!waiting.length) return { text: '', ids: [] };
  const max = MAX_BYTES[p];
  if (waiting.length === 1) {
    const w = waiting[0]!;
    return { text: fit(w.text, max), ids: [w.id] };
  }
  const alarms = waiting.filter((w) => w.alarm);
  const others = waiting.filter((w) => !w.alarm).sort((a, b) => a.at - b.at || a.id - b.id);
  const head = (n: number) => `${n} updates:`;
  const lines: string[] = [];
  const ids: number[] = [];
  let size = bytes(head(waiting.length)) + 64;
  for (const a of alarms) {
    const line = `• ${a.text}`;
    if (ids.length && size + bytes(line) + 1 > max) break;
    lines.push(fit(line, max - 64));
    ids.push(a.id);
    size += bytes(line) + 1;
  }
  const alarmsLeft = alarms.length - ids.length;
  let counted = 0;
  for (const o of others) {
    const line = `• ${o.text}`;
    if (alarmsLeft === 0 && size + bytes(line) + 1 <= max) {
      lines.push(line);
      size += bytes(line) + 1;
    } else if (alarmsLeft === 0) counted++;
    else continue; // alarms still waiting go first next time; these wait with them
    ids.push(o.id);
  }
  if (counted) lines.push(`… and ${counted} more (see the console or \`ferry rollout status\`)`);
  if (alarmsLeft) lines.push(`(${alarmsLeft} more alarm${alarmsLeft > 1 ? 's' : ''} follow)`);
  return { text: [head(ids.length), ...lines].join('\n'), ids };
}

function fit(text: string, max: number): string {
  if (bytes(text) <= max) return text;
  let t = text;
  while (bytes(t) > max - 3) t = t.slice(0, Math.floor(t.length * 0.9));
  return `${t}…`;
}
