// Slack: a slash command (`/ferry rollout pause R-12`) and interactive
// buttons (confirm, approve, cancel), both POSTed by Slack to the hub as
// form bodies signed with the app's signing secret (v0, 5-minute window,
// each signature accepted once). The first reply answers the request itself
// (Slack wants one within 3 s); later ones go to its response_url. Notices go
// to the channel by chat.postMessage (bot token) or an incoming webhook.
import type { RoomRecord } from '../../store/chat.js';
import type { Settings } from '../config.js';
import { plainText, TransportError, type Inbound, type OutMessage, type Transport } from '../types.js';
import { refusedBy, sendJson } from './http.js';

/** Slack's message: text, and buttons for a request waiting for a decision. */
export function slackMessage(m: OutMessage): Record<string, unknown> {
  const text = plainText({ ...m, confirm: undefined });
  if (!m.confirm) return { text };
  const style: Record<string, string> = { confirm: 'primary', approve: 'primary', cancel: 'danger' };
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 2900) } },
      {
        type: 'actions',
        block_id: `ferry_${m.confirm.code}`,
        elements: m.confirm.actions.map((a) => ({ type: 'button', action_id: `ferry_${a}`, text: { type: 'plain_text', text: a }, value: `${m.confirm!.code} ${m.confirm!.planHash.slice(0, 12)}`, ...(style[a] ? { style: style[a] } : {}) })),
      },
    ],
  };
}

export class SlackTransport implements Transport {
  readonly platform = 'slack' as const;
  readonly signingSecret: string;
  private readonly botToken: string | undefined;
  private readonly apiUrl: string;

  constructor(
    readonly name: string,
    settings: Settings,
    private readonly roomSettings: (room: RoomRecord) => Settings,
  ) {
    this.signingSecret = settings.secret('signingSecret');
    this.botToken = settings.secret('botToken', true);
    this.apiUrl = (settings.text('apiUrl') ?? 'https://slack.com/api').replace(/\/+$/, '');
  }

  async send(room: RoomRecord, m: OutMessage): Promise<void> {
    const msg = slackMessage(m);
    if (this.botToken) {
      const a = await sendJson(`${this.apiUrl}/chat.postMessage`, { channel: room.room, ...msg, ...(m.thread ? { thread_ts: m.thread } : {}) }, { headers: { authorization: `Bearer ${this.botToken}` } });
      if (a.body.ok === true) return;
      if (a.body.error === 'ratelimited') throw new TransportError(`${this.name}: ratelimited`, 1000);
      throw refusedBy('slack', { ...a, status: a.status >= 400 ? a.status : 400 }, String(a.body.error ?? 'not ok'));
    }
    const hook = this.roomSettings(room).secret('webhook', true);
    if (!hook) throw new TransportError(`${this.name}: room ${room.room} has neither a bot token nor an incoming webhook`, null, true);
    const a = await sendJson(hook, msg);
    if (a.status >= 400) throw refusedBy('slack', a, String(a.body.text ?? ''));
  }

  /** A reply to a command, by its response_url (in the channel, not only to the sender). */
  async respond(responseUrl: string, m: OutMessage): Promise<void> {
    const a = await sendJson(responseUrl, { response_type: 'in_channel', replace_original: false, ...slackMessage(m) });
    if (a.status >= 400) throw refusedBy('slack', a, String(a.body.text ?? ''));
  }
}

/** A slash command's form body as an Inbound (and where later replies go). */
export function slackCommand(transport: string, form: URLSearchParams, sigKey: string): { inbound: Inbound; responseUrl: string | null } {
  const text = form.get('text') ?? '';
  return {
    inbound: { transport, platform: 'slack', room: form.get('channel_id') ?? '', account: form.get('user_id') ?? '', text: `ferry ${text}`, messageId: form.get('trigger_id') ?? sigKey, thread: null },
    responseUrl: form.get('response_url'),
  };
}

/** An interactive button press (block_actions) as the text command it stands for. */
export function slackAction(transport: string, form: URLSearchParams): { inbound: Inbound; responseUrl: string | null } | null {
  const raw = form.get('payload');
  if (!raw) return null;
  const p = JSON.parse(raw) as { type?: string; user?: { id?: string }; channel?: { id?: string }; actions?: { action_id?: string; value?: string; action_ts?: string }[]; response_url?: string; trigger_id?: string; container?: { thread_ts?: string } };
  const a = p.actions?.[0];
  const verb = /^ferry_(confirm|approve|cancel)$/.exec(a?.action_id ?? '')?.[1];
  if (p.type !== 'block_actions' || !verb || !a?.value) return null;
  const [code, hash] = a.value.split(' ');
  return {
    inbound: { transport, platform: 'slack', room: p.channel?.id ?? '', account: p.user?.id ?? '', text: `ferry ${verb} ${code}${verb === 'confirm' && hash ? ` ${hash}` : ''}`, messageId: p.trigger_id ?? a.action_ts ?? code!, thread: p.container?.thread_ts ?? null },
    responseUrl: p.response_url ?? null,
  };
}
