// The fleet's filters as the API (GET /v1/agents?state=…) and the console's
// fleet page take them: one schema, one reading into the store's filter.
import { z } from 'zod';
import { FerryError } from '../../shared/errors.js';
import { LABEL_KEY, LABEL_VALUE } from '../store/fleet.js';
import { AGENT_STATES, type AgentFilter } from '../store/fleet-query.js';
import type { TenantScope } from '../store/fleet.js';

/** An empty form field is no filter. */
const text = (max: number) => z.preprocess((v) => (v === '' ? undefined : v), z.string().max(max).optional());

export const FleetFilterFields = {
  tenant: text(64),
  state: z.preprocess((v) => (v === '' ? undefined : v), z.enum(AGENT_STATES).optional()),
  /** key or key=value */
  label: text(130),
  stack: text(64),
  version: text(64),
  /** Part of an agent's name, id or host facts. */
  q: text(100),
};

export type FleetFilterInput = { tenant?: string; state?: (typeof AGENT_STATES)[number]; label?: string; stack?: string; version?: string; q?: string };

/** The store's filter for what the caller asked within what it may see; another tenant's name answers like one that does not exist. */
export function fleetFilter(q: FleetFilterInput, scope: TenantScope): AgentFilter {
  if (q.tenant && scope && !scope.includes(q.tenant)) throw new FerryError('FERRY_E_NOT_FOUND', `tenant ${q.tenant}`);
  let label: AgentFilter['label'];
  if (q.label !== undefined) {
    const eq = q.label.indexOf('=');
    const key = eq < 0 ? q.label : q.label.slice(0, eq);
    const value = eq < 0 ? null : q.label.slice(eq + 1);
    if (!LABEL_KEY.test(key) || (value !== null && !LABEL_VALUE.test(value))) throw new FerryError('FERRY_E_VALIDATION', `label ${JSON.stringify(q.label.slice(0, 80))}: key or key=value (letters, digits, . _ - /)`);
    label = { key, value };
  }
  return { scope, tenant: q.tenant, label, state: q.state, stack: q.stack, version: q.version, text: q.q };
}
