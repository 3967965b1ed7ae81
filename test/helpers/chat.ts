// Chat with no platform at all: messages straight into the hub's chat engine,
// replies collected (`chat("ferry rollout pause R-1", { as })` -> replies).
// Rooms are the console's own (bound through the API like any room); a
// console room's person is the one named, as the console's session would say.
import type { OutMessage } from '../../hub/chat/types.js';
import type { TestHub } from './hub.js';

export interface Say {
  /** The person speaking (their user id); with `account`, the platform account instead. */
  as?: string;
  room?: string;
  transport?: string;
  account?: string;
  thread?: string;
}

export interface ChatHarness {
  chat(text: string, who: Say): Promise<OutMessage[]>;
  /** Binds a console room to tenants (null: the vendor's room). */
  bind(room: string, tenants: string[] | null, subscribe?: string[]): Promise<{ id: string }>;
}

let n = 0;

export function chatHarness(th: TestHub): ChatHarness {
  return {
    async chat(text, who) {
      const replies: OutMessage[] = [];
      const transport = who.transport ?? 'console';
      await th.hub.chat.handle(
        { transport, platform: 'console', room: who.room ?? 'ops', account: who.account ?? `user:${who.as}`, text, messageId: `harness-${process.pid}-${++n}`, thread: who.thread ?? null },
        async (r) => void replies.push(r),
      );
      return replies;
    },
    async bind(room, tenants, subscribe) {
      const r = await th.api('POST', '/v1/chat/rooms', { transport: 'console', room, ...(tenants ? { tenants } : { vendor: true }), ...(subscribe ? { subscribe } : {}) });
      if (r.status !== 201) throw new Error(`bind ${room}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
  };
}

/** The text of all replies, one per line (for assertions that read like the room). */
export const said = (rs: OutMessage[]) => rs.map((r) => r.text).join('\n');
