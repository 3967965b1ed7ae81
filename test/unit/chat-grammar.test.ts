// The chat grammar: words as the CLI's, typed parameters, flags anywhere,
// quotes, keywords, suggestions for typos, and help generated from it. Pure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import { COMMANDS, addressed, help, parse, suggest, tokenize, usage } from '../../hub/chat/grammar.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as FerryError).code;
  }
  return null;
};

test('messages for the bot start with ferry (or /ferry, after mentions)', () => {
  assert.equal(addressed('ferry rollout status R-1'), 'rollout status R-1');
  assert.equal(addressed('@Ferry-bot  /ferry help'), 'help');
  assert.equal(addressed('FERRY'), '');
  assert.equal(addressed('ferrying goods'), null);
  assert.equal(addressed('hello ferry help'), null);
});

test('tokens keep quoted runs, in ASCII and typographic quotes', () => {
  assert.deepEqual(tokenize('lock payments env=prod "quarter close"'), ['lock', 'payments', 'env=prod', 'quarter close']);
  assert.deepEqual(tokenize('lock * “季度 结账”'), ['lock', '*', '季度 结账']);
  assert.deepEqual(tokenize("a '' b"), ['a', '', 'b']);
  assert.equal(code(() => tokenize('lock x "open')), 'FERRY_E_CHAT_USAGE');
});

test('commands parse into typed arguments, with keywords, rest selectors and flags anywhere', () => {
  const d = parse('ferry deploy payments@2.4.0 to tenant in (bank-a,bank-b),env=prod');
  assert.equal(d.spec.id, 'deploy');
  assert.deepEqual(d.args, { release: 'payments@2.4.0', selector: 'tenant in (bank-a,bank-b),env=prod' });
  const r = parse('rollout create payments@2.4.0 --waves 1,10%,100% to env=prod --bake 10m --dry-run');
  assert.deepEqual(r.flags, { waves: '1,10%,100%', bake: '10m' });
  assert.equal(r.dryRun, true);
  assert.equal(r.canonical, 'ferry rollout create payments@2.4.0 to env=prod --waves 1,10%,100% --bake 10m --dry-run');
  assert.deepEqual(parse('ferry agents env=prod offline').args, { selector: 'env=prod', state: 'offline' });
  assert.deepEqual(parse('ferry agent ls offline').args, { state: 'offline' });
  assert.equal(parse('ferry rollout pause r-12').args.id, 'R-12');
  assert.deepEqual(parse('ferry lock payments env=prod "quarter close"').args, { stack: 'payments', selector: 'env=prod', reason: 'quarter close' });
  assert.deepEqual(parse('ferry lock * "freeze"').args, { stack: '*', reason: 'freeze' });
  assert.equal(parse('ferry').spec.id, 'help');
  assert.equal(parse('ferry releases payments').spec.id, 'release ls');
});

test('wrong arguments and unknown flags are usage errors naming the usage line', () => {
  assert.equal(code(() => parse('rollout pause')), 'FERRY_E_CHAT_USAGE');
  assert.equal(code(() => parse('rollout pause R-1 R-2')), 'FERRY_E_CHAT_USAGE');
  assert.equal(code(() => parse('deploy payments to env=prod')), 'FERRY_E_CHAT_USAGE');
  assert.equal(code(() => parse('rollout create p@1.0.0 to x=y --wavez 1')), 'FERRY_E_CHAT_USAGE');
  assert.equal(code(() => parse('rollout create p@1.0.0 to x=y --on-failure explode')), 'FERRY_E_CHAT_USAGE');
  assert.equal(code(() => parse('lock payments')), 'FERRY_E_CHAT_USAGE');
  assert.throws(() => parse('rollout pause'), /usage: ferry rollout pause ID/);
});

test('typos get the nearest command; nonsense gets `ferry help`', () => {
  assert.throws(() => parse('rolout pause R-1'), /did you mean `ferry rollout pause ID`/);
  assert.throws(() => parse('agnets'), /did you mean `ferry agent ls/);
  assert.throws(() => parse('make me a sandwich'), (e: unknown) => (e as FerryError).code === 'FERRY_E_CHAT_UNKNOWN' && /`ferry help` lists/.test((e as Error).message));
  assert.equal(suggest(['rollot', 'statu'])?.id, 'rollout status');
});

test('help lists what `may` allows, and one command or group in detail', () => {
  const all = help(() => true);
  for (const c of COMMANDS) assert.ok(all.includes(usage(c)), `help lacks ${c.id}`);
  const reads = help((s) => s.action === 'read' || s.action === 'anyone' || s.action === null);
  assert.ok(!reads.includes('ferry deploy') && reads.includes('ferry rollout status'));
  assert.match(help(() => true, 'rollout'), /ferry rollout create[\s\S]*ferry rollout rollback/);
  assert.match(help(() => true, 'agents'), /e\.g\. ferry agents env=prod offline/);
  assert.match(help((s) => s.id !== 'deploy', 'deploy'), /No command "deploy" you may run here/);
});

test('a new verb is one row: every row has words, a usage line, an example that parses to it', () => {
  for (const c of COMMANDS) {
    const p = parse(c.example.replace(/agt_3f…/, 'agt_3f00').replace('7KQ2-XD9P', '7KQ2XD9P'));
    assert.equal(p.spec.id, c.id, c.example);
  }
});
