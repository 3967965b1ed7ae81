// Every chat command against role AND tenant, generated from the grammar: a
// command without a case here fails the suite (as routes do in
// access.test.ts). Each case is tried
//   - by people whose role on bank-a is too low, in bank-a's room: refused;
//   - from bank-b's room, by bank-a's tenant-admin (every role on bank-a) and
//     by the vendor admin, and by bank-b's admin in bank-a's room: bank-a's
//     objects are not found, listings show nothing of bank-a, requests of
//     another room cannot be confirmed — a room bound to bank-b cannot touch
//     bank-a, whoever speaks in it;
//   - by the right role in bank-a's room: answered (a plan for dangerous ones).
// Afterwards nothing of bank-a was changed by the refused ones, and every
// refusal is on record (surface chat). On both store backends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, type CommandId } from '../../hub/chat/grammar.js';
import type { OutMessage } from '../../hub/chat/types.js';
import { chatHarness, said } from '../helpers/chat.js';
import { startHub, type TestHub } from '../helpers/hub.js';
import { backends } from '../helpers/postgres.js';
import { apiClient, simAgents, simRelease } from '../helpers/sim-agents.js';
import { waitFor } from '../helpers/tmp.js';

type Who = 'admin' | 'aAdmin' | 'aOperator' | 'aApprover' | 'aViewer' | 'bAdmin';

interface World {
  th: TestHub;
  a1: { id: string; name: string };
  a2: { id: string; name: string };
  rollout: string;
  lock: string;
  /** Requests waiting in bank-a's room: made by aOperator; `approval` confirmed by him and waiting for an approver. */
  codes: { revoke: string; cancel: string; approval: string };
}

interface Case {
  text: (w: World) => string;
  /** Allowed (in bank-a's room): the reply kind expected last; null when another test runs it (named). */
  ok: { as: Who; kind: OutMessage['kind'] } | { elsewhere: string };
  /** In bank-a's room, a role too low (none: the lowest role may). */
  lower?: { as: Who[]; code?: string };
  /** From the other side: bank-a's objects not found (default), or a listing without bank-a in it. */
  foreign: { code: string } | 'list' | 'own';
}

const ROLLOUT = (w: World) => w.rollout;
const readLower = undefined; // viewer is the lowest role on a tenant; no lower one
const deployers = { as: ['aViewer', 'aApprover'] as Who[] };

const CASES: Record<CommandId, Case> = {
  // the engine's own: anyone, any linked person, the requester, an approver
  help: { text: () => 'ferry help', ok: { as: 'aViewer', kind: 'help' }, foreign: 'own' },
  link: { text: () => 'ferry link ZZZZ-ZZZZ', ok: { elsewhere: 'chat.test.ts: an unlinked account may only ask for help; a one-time code links it' }, foreign: 'own' },
  whoami: { text: () => 'ferry whoami', ok: { as: 'aViewer', kind: 'result' }, foreign: 'own' },
  confirm: { text: (w) => `ferry confirm ${w.codes.revoke}`, ok: { as: 'aOperator', kind: 'result' }, lower: { as: ['aApprover', 'aAdmin'], code: 'FERRY_E_CHAT_CONFIRMATION' }, foreign: { code: 'FERRY_E_CHAT_CONFIRMATION|FERRY_E_FORBIDDEN' } },
  approve: { text: (w) => `ferry approve ${w.codes.approval}`, ok: { as: 'aApprover', kind: 'result' }, lower: { as: ['aViewer'], code: 'FERRY_E_FORBIDDEN' }, foreign: { code: 'FERRY_E_CHAT_CONFIRMATION|FERRY_E_FORBIDDEN' } },
  cancel: { text: (w) => `ferry cancel ${w.codes.cancel}`, ok: { as: 'aOperator', kind: 'result' }, lower: { as: ['aViewer'], code: 'FERRY_E_CHAT_CONFIRMATION' }, foreign: { code: 'FERRY_E_CHAT_CONFIRMATION|FERRY_E_FORBIDDEN' } },
  // deploys: what the speaker may deploy to, within the room's tenants
  deploy: { text: () => 'ferry deploy ledger@1.0.0 to env=prod', ok: { as: 'aOperator', kind: 'confirm' }, lower: deployers, foreign: { code: 'FERRY_E_FORBIDDEN|FERRY_E_SELECTOR_EMPTY|FERRY_E_CHAT_CONFIRMATION|NO-BANK-A' } },
  'rollout create': { text: () => 'ferry rollout create ledger@1.0.0 to env=prod --waves 1,100%', ok: { as: 'aOperator', kind: 'confirm' }, lower: deployers, foreign: { code: 'FERRY_E_FORBIDDEN|FERRY_E_SELECTOR_EMPTY|NO-BANK-A' } },
  'rollout status': { text: (w) => `ferry rollout status ${ROLLOUT(w)}`, ok: { as: 'aViewer', kind: 'result' }, lower: readLower, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'rollout ls': { text: () => 'ferry rollout ls', ok: { as: 'aViewer', kind: 'result' }, foreign: 'list' },
  'rollout pause': { text: (w) => `ferry rollout pause ${ROLLOUT(w)} --dry-run`, ok: { as: 'aOperator', kind: 'result' }, lower: deployers, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'rollout resume': { text: (w) => `ferry rollout resume ${ROLLOUT(w)} --dry-run`, ok: { as: 'aOperator', kind: 'result' }, lower: deployers, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'rollout promote': { text: (w) => `ferry rollout promote ${ROLLOUT(w)}`, ok: { as: 'aOperator', kind: 'confirm' }, lower: deployers, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'rollout abort': { text: (w) => `ferry rollout abort ${ROLLOUT(w)}`, ok: { as: 'aOperator', kind: 'confirm' }, lower: deployers, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'rollout rollback': { text: (w) => `ferry rollout rollback ${ROLLOUT(w)}`, ok: { as: 'aOperator', kind: 'confirm' }, lower: deployers, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  // agents
  'agent ls': { text: () => 'ferry agents env=prod', ok: { as: 'aViewer', kind: 'result' }, foreign: 'list' },
  'agent show': { text: (w) => `ferry agent show ${w.a1.id}`, ok: { as: 'aViewer', kind: 'result' }, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'agent revoke': { text: (w) => `ferry agent revoke ${w.a1.id}`, ok: { as: 'aOperator', kind: 'confirm' }, lower: deployers, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  // releases and the audit log
  'release ls': { text: () => 'ferry release ls', ok: { as: 'aViewer', kind: 'result' }, foreign: 'list' },
  'release show': { text: () => 'ferry release show payments@2.0.0', ok: { as: 'aViewer', kind: 'result' }, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'audit verify': { text: () => 'ferry audit verify', ok: { as: 'aViewer', kind: 'result' }, foreign: 'list' },
  // locks
  lock: { text: () => 'ferry lock ledger env=prod "matrix" --dry-run', ok: { as: 'aOperator', kind: 'result' }, lower: { as: ['aViewer', 'aApprover'] }, foreign: { code: 'FERRY_E_FORBIDDEN|NO-BANK-A' } },
  unlock: { text: (w) => `ferry unlock ${w.lock}`, ok: { as: 'aOperator', kind: 'result' }, lower: { as: ['aViewer', 'aApprover'] }, foreign: { code: 'FERRY_E_NOT_FOUND' } },
  'lock ls': { text: () => 'ferry lock ls', ok: { as: 'aViewer', kind: 'result' }, foreign: 'list' },
  // the release bot's notices: the room's own setting, for who manages its chat (in bank-b's room the vendor admin may: bank-b's)
  subscribe: { text: () => 'ferry subscribe rollouts,alarms', ok: { as: 'aAdmin', kind: 'result' }, lower: { as: ['aOperator', 'aApprover', 'aViewer'] }, foreign: { code: 'FERRY_E_FORBIDDEN|NO-BANK-A' } },
  unsubscribe: { text: () => 'ferry unsubscribe agents', ok: { as: 'aAdmin', kind: 'result' }, lower: { as: ['aOperator', 'aViewer'] }, foreign: { code: 'FERRY_E_FORBIDDEN|NO-BANK-A' } },
  subscriptions: { text: () => 'ferry subscriptions', ok: { as: 'aViewer', kind: 'result' }, foreign: 'list' },
};

/** Who speaks from the other side, and where. */
const FOREIGN: { as: Who; room: string; what: string }[] = [
  { as: 'aAdmin', room: 'bank-b-ops', what: "bank-a's tenant-admin in bank-b's room" },
  { as: 'admin', room: 'bank-b-ops', what: "the vendor admin in bank-b's room" },
  { as: 'bAdmin', room: 'bank-a-ops', what: "bank-b's tenant-admin in bank-a's room" },
];

const last = (rs: OutMessage[]) => rs[rs.length - 1]!;

for (const backend of await backends()) {
  test(`[${backend}] every chat command: a lower role refused, another tenant's room (or person) touches nothing of bank-a, the right role answered`, async (t) => {
    const th = await startHub(t, { backend, rateLimitPerMinute: 0, checkpointMs: 3_600_000 });
    const api = apiClient(() => th.url, th.adminToken);
    const as = await simAgents(api, () => th.url, 'bank-a', 2, { labels: () => ({ env: 'prod' }), namePrefix: 'a' });
    const [b] = await simAgents(api, () => th.url, 'bank-b', 1, { labels: () => ({ env: 'prod' }), namePrefix: 'b' });
    for (const s of [...as, b!]) t.after(() => s.stop());
    await simRelease(api, 'payments', '2.0.0');
    await simRelease(api, 'ledger', '1.0.0');
    const who = await th.api('GET', '/v1/whoami');
    const P: Record<Who, { name: string; userId: string; token: string }> = {
      admin: { name: who.body.user, userId: who.body.userId, token: th.adminToken },
      aAdmin: await th.person({ tenants: { 'bank-a': 'tenant-admin' } }),
      aOperator: await th.person({ tenants: { 'bank-a': 'operator' } }),
      aApprover: await th.person({ tenants: { 'bank-a': 'approver' } }),
      aViewer: await th.person({ tenants: { 'bank-a': 'viewer' } }),
      bAdmin: await th.person({ tenants: { 'bank-b': 'tenant-admin' } }),
    };
    const h = chatHarness(th);
    await h.bind('bank-a-ops', ['bank-a']);
    await h.bind('bank-b-ops', ['bank-b']);
    const say = (text: string, as: Who, room = 'bank-a-ops') => h.chat(text, { as: P[as].userId, room });

    // bank-a's world: a running rollout (long bake), a lock, requests waiting in its room.
    const ro = await th.api('POST', '/v1/rollouts', { stack: 'payments', version: '2.0.0', selector: 'tenant=bank-a', waves: '1,100%', bakeMs: 3_600_000 });
    assert.equal(ro.status, 201, JSON.stringify(ro.body));
    // its first wave reached (so the plans below stay what they were when shown)
    await waitFor('wave 1 issued', async () => (await th.hub.store.rollouts.targets(ro.body.id)).some((x) => x.state !== 'pending' && x.state !== 'waiting'));
    const lock = await th.api('POST', '/v1/locks', { stack: 'zzz', reason: 'matrix' }, P.aOperator.token);
    assert.equal(lock.status, 201, JSON.stringify(lock.body));
    // a1 is gold: bank-a wants an approver for what touches it
    await th.api('POST', `/v1/agents/${as[0]!.id}/labels`, { set: { tier: 'gold' } });
    assert.equal((await th.api('POST', '/v1/chat/policies/bank-a', { approval: 'tier=gold' }, P.aAdmin.token)).status, 200);
    const code = (rs: OutMessage[]) => rs.find((r) => r.confirm)?.confirm?.code ?? assert.fail(`no confirmation in ${said(rs)}`);
    const approval = code(await say(`ferry rollout abort ${ro.body.id}`, 'aOperator'));
    assert.equal(last(await say(`ferry confirm ${approval}`, 'aOperator')).kind, 'confirm', 'confirmed, waiting for an approver');
    const agents = await th.api('GET', '/v1/agents?tenant=bank-a');
    const named = (id: string) => ({ id, name: agents.body.agents.find((a: any) => a.id === id).name as string });
    const w: World = {
      th,
      a1: named(as[0]!.id),
      a2: named(as[1]!.id),
      rollout: ro.body.id,
      lock: lock.body.id,
      codes: { revoke: code(await say(`ferry agent revoke ${as[1]!.id}`, 'aOperator')), cancel: code(await say(`ferry agent revoke ${as[1]!.id}`, 'aOperator')), approval },
    };
    const bankA = [w.a1.id, w.a1.name, w.a2.id, w.a2.name, w.rollout, w.lock, 'bank-a'];

    assert.deepEqual(Object.keys(CASES).sort(), COMMANDS.map((c) => c.id).sort(), 'every command of the grammar has a case here (and no case is stale)');
    const auditBefore = (await th.api('GET', '/v1/audit/bank-b/entries?limit=5000')).body.entries.length as number;
    let refusals = 0;

    // Refusals first: none of them may change anything the allowed ones then find.
    for (const id of Object.keys(CASES) as CommandId[]) {
      const c = CASES[id];
      await t.test(`${id}: refused below its role, and from the other side`, async () => {
        for (const low of c.lower?.as ?? []) {
          const r = last(await say(c.text(w), low));
          assert.equal(r.kind, 'error', `${id} as ${low}: ${r.text}`);
          assert.match(r.text, new RegExp(c.lower!.code ?? 'FERRY_E_FORBIDDEN'), `${id} as ${low}`);
          refusals++;
        }
        if (c.foreign === 'own') return;
        for (const f of FOREIGN) {
          const rs = await say(c.text(w), f.as, f.room);
          const text = said(rs.filter((r) => r.kind !== 'ack'));
          const where = `${id} by ${f.what}: ${text}`;
          if (c.foreign === 'list') {
            assert.notEqual(last(rs).kind, 'error', where);
          } else {
            const codes = c.foreign.code.split('|');
            const r = last(rs);
            // A deploy in bank-b's room by someone who may deploy there plans bank-b's agents only.
            if (r.kind !== 'error') assert.ok(codes.includes('NO-BANK-A'), where);
            else assert.ok(codes.some((x) => r.text.includes(x)), where);
            if (r.kind === 'error') refusals++;
          }
          // What bank-a owns does not show (the command itself named only the object it asked for).
          const asked = c.text(w);
          // (In bank-a's own room its name is no secret.)
          for (const x of bankA) if (!asked.includes(x) && !(x === 'bank-a' && f.room === 'bank-a-ops')) assert.ok(!text.includes(x), `${where}\n— shows ${x}`);
        }
      });
    }
    // Nothing of bank-a changed.
    assert.equal((await th.api('GET', `/v1/rollouts/${w.rollout}`)).body.state, 'running');
    for (const a of [w.a1, w.a2]) assert.notEqual((await th.api('GET', `/v1/agents/${a.id}`)).body.status, 'revoked');
    assert.ok((await th.api('GET', '/v1/locks')).body.locks.some((l: any) => l.id === w.lock), 'the lock holds');
    // Every refusal is on record, from chat, linked to the person.
    const logs = [...(await th.api('GET', '/v1/audit/bank-a/entries?limit=5000')).body.entries, ...(await th.api('GET', '/v1/audit/bank-b/entries?limit=5000')).body.entries.slice(auditBefore)];
    const refused = logs.filter((e: any) => e.surface === 'chat' && e.outcome === 'refused' && e.action.startsWith('chat.'));
    assert.ok(refused.length >= refusals, `${refused.length} refusals on record for ${refusals} refused`);
    assert.ok(refused.every((e: any) => typeof e.personalValues.operator === 'string' && e.details.platform === 'console'));

    // Then the right role. The approval before the confirmation that revokes a2 (its plan covers a2).
    const order = (Object.keys(CASES) as CommandId[]).sort((x, y) => Number(x === 'confirm') - Number(y === 'confirm'));
    for (const id of order) {
      const c = CASES[id];
      await t.test(`${id}: answered for the right role`, async (st) => {
        if ('elsewhere' in c.ok) return void st.diagnostic(`run in ${c.ok.elsewhere}`);
        const rs = await say(c.text(w), c.ok.as);
        assert.equal(last(rs).kind, c.ok.kind, `${id} as ${c.ok.as}: ${said(rs)}`);
      });
    }
    assert.equal((await th.api('GET', `/v1/rollouts/${w.rollout}`)).body.state, 'aborted', 'the approved abort was done');
    const rooms = (await th.api('GET', '/v1/chat/rooms')).body.rooms as any[];
    assert.deepEqual(rooms.find((r) => r.room === 'bank-a-ops').subscribe, ['rollouts', 'alarms', 'releases'], 'bank-a’s room hears what its admin said (unsubscribe agents ran after subscribe)');
    assert.match(said(await say('ferry subscriptions', 'aViewer')), /notices: rollouts, alarms, releases \(not: agents\)/);
    assert.equal((await th.api('GET', `/v1/agents/${w.a2.id}`)).body.status, 'revoked', 'the confirmed revoke was done');
  });
}
