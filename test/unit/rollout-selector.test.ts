import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import { matches, parseSelector, type Selectable } from '../../hub/rollouts/selector.js';

const a = (id: string, tenant: string, labels: Record<string, string> = {}, name = id): Selectable => ({ id, tenant, name, labels });
const fleet = [a('agt_1', 'bank-a', { env: 'prod', region: 'eu' }), a('agt_2', 'bank-b', { env: 'prod' }), a('agt_3', 'bank-c', { env: 'dev', gpu: '' }), a('agt_4', 'bank-a', { env: 'dev', legacy: 'yes' })];
const pick = (s: string) => fleet.filter((x) => matches(parseSelector(s), x)).map((x) => x.id);

test('the issue example: tenant in (...) and a label', () => {
  assert.deepEqual(pick('tenant in (bank-a,bank-b),env=prod'), ['agt_1', 'agt_2']);
  assert.deepEqual(pick(' tenant in ( bank-a , bank-b ) , env = prod '), ['agt_1', 'agt_2']);
});

test('every operator', () => {
  assert.deepEqual(pick('tenant=bank-a'), ['agt_1', 'agt_4']);
  assert.deepEqual(pick('id=agt_3'), ['agt_3']);
  assert.deepEqual(pick('name=agt_2'), ['agt_2']);
  assert.deepEqual(pick('region!=eu'), ['agt_2', 'agt_3', 'agt_4']);
  assert.deepEqual(pick('env notin (dev)'), ['agt_1', 'agt_2']);
  assert.deepEqual(pick('gpu'), ['agt_3']);
  assert.deepEqual(pick('!legacy,env=dev'), ['agt_3']);
  assert.deepEqual(pick('id in (agt_1,agt_4)'), ['agt_1', 'agt_4']);
  assert.deepEqual(pick('*'), ['agt_1', 'agt_2', 'agt_3', 'agt_4']);
});

test('bad selectors are refused with FERRY_E_SELECTOR_INVALID and say why', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['tenant in (bank-a,bank-b', /never closed/],
    ['tenant in bank-a)', /without its/],
    ['env=prod,,tenant=a', /empty term/],
    ['env=prod,', /empty term/],
    ['env=', /value ""/],
    ['Env=prod', /not a key/],
    ['env=pr od', /value/],
    ['tenant in ()', /list is empty/],
    ['env>prod', /not a key|cannot read/],
    ['tenant in ((a))', /nest/],
    ['env = prod = x', /value/],
  ];
  for (const [s, re] of cases) {
    assert.throws(() => parseSelector(s), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_SELECTOR_INVALID' && re.test(e.message), s);
  }
});
