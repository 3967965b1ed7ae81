// ChatOps from the CLI, as an admin sets it up: the real `ferry` binary
// against a real hub. Transports with secrets from a file, from standard
// input or named on the hub's host (never printed back), rooms bound to a
// tenant, the maker-checker rule, a chat account linked with a code from
// `ferry user link-chat`, and locks with the same words as in chat.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { chatHarness, said } from '../helpers/chat.js';
import { startHub } from '../helpers/hub.js';
import { run } from '../helpers/proc.js';
import { apiClient, simAgents, simRelease } from '../helpers/sim-agents.js';
import { tempDir } from '../helpers/tmp.js';

function cliEnv(t: TestContext, hub: string, token: string): NodeJS.ProcessEnv {
  const home = tempDir(t, 'ferry-cli-');
  return { HOME: home, XDG_CONFIG_HOME: join(home, 'xdg'), FERRY_HUB: hub, FERRY_TOKEN: token, FERRY_CONTEXT: undefined, FERRY_CA_FILE: undefined };
}

test('ferry chat transport|room|policy, user link-chat, lock|unlock: set up from the CLI, secrets never printed', async (t) => {
  const th = await startHub(t, { rateLimitPerMinute: 0, checkpointMs: 3_600_000 });
  const api = apiClient(() => th.url, th.adminToken);
  const [a] = await simAgents(api, () => th.url, 'bank-a', 1, { labels: () => ({ env: 'prod' }) });
  t.after(() => a!.stop());
  await simRelease(api, 'payments', '1.0.0');
  const op = await th.person({ tenants: { 'bank-a': 'operator' } });
  const viewer = await th.person({ tenants: { 'bank-a': 'viewer' } });
  const admin = cliEnv(t, th.url, th.adminToken);
  const printed: string[] = [];
  const ferry = async (args: string[], env = admin, input?: string) => {
    const r = await run('ferry', args, { env, ...(input !== undefined ? { input } : {}) });
    printed.push(r.stdout, r.stderr);
    return r;
  };
  const ok = async (args: string[], env = admin, input?: string) => {
    const r = await ferry(args, env, input);
    assert.equal(r.code, 0, `ferry ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  };
  const fails = async (args: string[], exit: number, code: string, env = admin) => {
    const r = await ferry(args, env);
    assert.equal(r.code, exit, `ferry ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^error ${code}: .+\n  \\S`, 'm'));
    return r;
  };

  // Transports: a secret from a file here, one from standard input, one the hub reads on its host.
  const dir = tempDir(t);
  writeFileSync(join(dir, 'hook-secret'), 'file-secret-value-1\n');
  const added = await ok(['chat', 'transport', 'add', 'hook', '--platform', 'webhook', '--secret-file', `secret=${join(dir, 'hook-secret')}`]);
  assert.match(added.stdout, /^added webhook transport hook: secret=set \(encrypted\)$/m);
  assert.match(added.stderr, new RegExp(`the platform calls: ${th.url}/v1/chat/hooks/webhook/hook`));
  await ok(['chat', 'transport', 'add', 'ding', '--platform', 'dingtalk', '--secret-stdin', 'appSecret'], admin, 'stdin-secret-value-2\n');
  // (the hub runs on this host here: the file is its own)
  writeFileSync(join(dir, 'slack-signing'), 'hub-file-secret-3\n');
  await ok(['chat', 'transport', 'add', 'slack', '--platform', 'slack', '--hub-file', `signingSecret=${join(dir, 'slack-signing')}`]);
  await fails(['chat', 'transport', 'add', 'slack2', '--platform', 'slack', '--hub-file', `signingSecret=${join(dir, 'nope')}`], 7, 'FERRY_E_VALIDATION');
  const ls = await ok(['chat', 'transport', 'ls']);
  assert.match(ls.stdout, /^ding\s+dingtalk\s+appSecret=set \(encrypted\)/m);
  assert.match(ls.stdout, new RegExp(`^slack\\s+slack\\s+signingSecret=file ${join(dir, 'slack-signing')}`, 'm'));
  await fails(['chat', 'transport', 'add', 'hook', '--platform', 'webhook', '--secret-file', `secret=${join(dir, 'hook-secret')}`], 5, 'FERRY_E_CONFLICT');
  await fails(['chat', 'transport', 'add', 'bad', '--platform', 'webhook', '--set', 'secret'], 7, 'FERRY_E_VALIDATION');
  await fails(['chat', 'transport', 'add', 'bad', '--platform', 'webhook', '--secret-file', `secret=${join(dir, 'missing')}`], 7, 'FERRY_E_VALIDATION');
  await fails(['chat', 'transport', 'add', 'bad', '--platform', 'icq'], 7, 'FERRY_E_VALIDATION');
  await fails(['chat', 'transport', 'ls'], 3, 'FERRY_E_FORBIDDEN', cliEnv(t, th.url, viewer.token));

  // Rooms and the approval rule.
  const bound = await ok(['chat', 'room', 'bind', '--transport', 'hook', '--room', 'ops', '--tenant', 'bank-a', '--subscribe', 'rollouts,alarms', '--json']);
  const room = JSON.parse(bound.stdout);
  assert.deepEqual([room.tenants, room.subscribe], [['bank-a'], ['rollouts', 'alarms']]);
  await fails(['chat', 'room', 'bind', '--transport', 'hook', '--room', 'x'], 7, 'FERRY_E_VALIDATION');
  await fails(['chat', 'room', 'bind', '--transport', 'nope', '--room', 'x', '--tenant', 'bank-a'], 4, 'FERRY_E_NOT_FOUND');
  assert.match((await ok(['chat', 'room', 'ls'])).stdout, new RegExp(`^${room.id}\\s+hook\\s+ops\\s+bank-a\\s+rollouts,alarms`, 'm'));
  assert.match((await ok(['chat', 'policy', 'bank-a', '--approval', 'env=prod'])).stdout, /bank-a: deploys to env=prod need a different person with the approver role/);

  // A chat account linked with the operator's code; in the room it is the operator, and bank-a's rule applies.
  const opEnv = cliEnv(t, th.url, op.token);
  const link = (await ok(['user', 'link-chat'], opEnv)).stdout.trim();
  assert.match(link, /^ferry link [A-Z0-9]{4}-[A-Z0-9]{4}$/);
  const h = chatHarness(th);
  const who = { transport: 'hook', account: 'u-7', room: 'ops' };
  assert.match(said(await h.chat(link, who)), new RegExp(`linked: .* is ${op.name}`));
  assert.match(said(await h.chat(`ferry deploy payments@1.0.0 --agent ${a!.id}`, who)), /a different person with the approver role on bank-a approves it/);

  // Locks, with the words chat uses.
  const locked = await ok(['lock', 'payments', 'env=prod', 'quarter close'], opEnv);
  const id = /locked: (L-\d+) by /.exec(locked.stdout)?.[1] ?? assert.fail(locked.stdout);
  assert.match(locked.stdout, /"quarter close" \(payments on env=prod, bank-a\)/);
  assert.match((await ok(['lock', 'ls'], cliEnv(t, th.url, viewer.token))).stdout, new RegExp(`${id} .*quarter close`));
  assert.match(said(await h.chat(`ferry deploy payments@1.0.0 --agent ${a!.id} --dry-run`, who)), /FERRY_E_LOCKED: .*quarter close/);
  await fails(['lock', 'payments', 'env=prod'], 3, 'FERRY_E_FORBIDDEN', cliEnv(t, th.url, viewer.token));
  await fails(['unlock', id], 3, 'FERRY_E_FORBIDDEN', cliEnv(t, th.url, viewer.token));
  assert.match((await ok(['unlock', id.toLowerCase()], opEnv)).stdout, new RegExp(`^unlocked ${id}$`, 'm'));
  await fails(['lock', 'payments'], 7, 'FERRY_E_VALIDATION', opEnv);

  // Removing.
  assert.match((await ok(['chat', 'room', 'unbind', room.id])).stdout, new RegExp(`unbound room ${room.id}`));
  assert.match((await ok(['chat', 'transport', 'rm', 'ding'])).stdout, /removed transport ding/);
  await fails(['chat', 'transport', 'rm', 'ding'], 4, 'FERRY_E_NOT_FOUND');

  for (const secret of ['file-secret-value-1', 'stdin-secret-value-2', 'hub-file-secret-3']) assert.ok(!printed.some((p) => p.includes(secret)), `${secret} was printed`);
  const stored = JSON.stringify(await th.rawSql('SELECT * FROM chat_transports'));
  assert.ok(!stored.includes('file-secret-value-1'), 'secrets are stored encrypted');
});
