// The access matrix, generated from the hub's own route table: every route
// the hub serves must have a case here (a new route without one fails the
// suite), and each case is tried with no credentials, as a person of another
// tenant, as a person whose role is too low, and as one whose role allows it.
// What another tenant owns answers 404 exactly as what does not exist; lists
// show nothing of it. Run on both store backends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { encodePublicKey, generateKeyPair, sign } from '../../shared/keys.js';
import { digestOfTranscript } from '../../shared/operation.js';
import { enrollBody, postEnroll } from '../helpers/agents.js';
import { startHub, type TestHub } from '../helpers/hub.js';
import { backends } from '../helpers/postgres.js';
import { apiClient, simRelease, simTenant } from '../helpers/sim-agents.js';
import { tinyBundle } from '../helpers/upgrade.js';

type Who = 'none' | 'admin' | 'vViewer' | 'vOperator' | 'vRM' | 'aAdmin' | 'aOperator' | 'aApprover' | 'aViewer' | 'bOperator' | 'opScopedB';

interface World {
  th: TestHub;
  tokens: Record<Exclude<Who, 'none'>, string>;
  agentA: string;
  agentB: string;
  rolloutA: string;
  rolloutB: string;
  /** An answered exec operation on agentA, with its transcript. */
  operationA: string;
  /** A rollout of bank-a for the console's commands (the API's cases end rolloutA). */
  rolloutA2: string;
  /** A hashed console asset URL. */
  assetUrl: string;
  /** A fresh agent of bank-a (for cases that change one). */
  newAgentA(): Promise<string>;
  /** A fresh person (for cases that change one). */
  newPerson(): Promise<string>;
  newTokenOf(who: Exclude<Who, 'none'>): Promise<string>;
  /** A fresh chat transport (vendor-wide), a console room bound to bank-a, a lock of bank-a's. */
  newTransport(): Promise<string>;
  newRoomA(): Promise<string>;
  newLockA(): Promise<string>;
}

interface Req {
  method?: string;
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** An agent bundle archive as the body (application/gzip), instead of JSON. */
  archive?: Buffer;
}

interface Case {
  req: (w: World) => Req | Promise<Req>;
  /** Allowed, with the status it then answers. */
  ok: { as: Who; status: number };
  /** Visible but beyond this person's role: 403. */
  lower?: Who;
  /** Of another tenant: 404 (or, for a listing, nothing of bank-a in the answer). */
  foreign?: Who;
  /** The listing's answer as `foreign` shows nothing of bank-a. */
  list?: true;
  /** The code `foreign` gets, when not FERRY_E_NOT_FOUND (still a 404: what it cannot see does not exist). */
  foreignCode?: string;
  public?: true;
  /**
   * A console page or form (HTML): without credentials it sends the browser
   * to /login (a redirect, not a 401); refusals are error pages carrying the
   * same codes, read from the page.
   */
  page?: true;
}

const A = (w: World) => w.agentA;
const wrongKey = generateKeyPair();
const WRONG_SIG = { publicKey: encodePublicKey(wrongKey.publicKey), sig: Buffer.from(sign(Buffer.from('not the statement'), wrongKey.secretKey)).toString('base64') };
/** Agent bundle versions uploaded by the matrix (each upload needs a new one). */
let bundleN = 0;

const CASES: Record<string, Case> = {
  // ---- public -----------------------------------------------------------------------
  'GET /livez': { public: true, req: () => ({ url: '/livez' }), ok: { as: 'none', status: 200 } },
  'GET /readyz': { public: true, req: () => ({ url: '/readyz' }), ok: { as: 'none', status: 200 } },
  'GET /agent/v1/challenge': { public: true, req: () => ({ url: '/agent/v1/challenge' }), ok: { as: 'none', status: 200 } },
  'POST /agent/v1/enroll': { public: true, req: () => ({ method: 'POST', url: '/agent/v1/enroll', body: { token: 'ferry_enr_nope', publicKey: 'x', name: 'a', proof: 'x' } }), ok: { as: 'none', status: 401 } },
  // signed by an agent key, not a person: unsigned is 401 (registry-origin.test.ts covers the rest)
  'GET /agent/v1/registry/v2/*': { public: true, req: () => ({ url: `/agent/v1/registry/v2/127.0.0.1:5000/x/manifests/sha256:${'0'.repeat(64)}` }), ok: { as: 'none', status: 401 } },
  'POST /v1/sessions': { public: true, req: () => ({ method: 'POST', url: '/v1/sessions', body: { user: 'nobody', password: 'wrong password here' } }), ok: { as: 'none', status: 401 } },

  // ---- tenants and agents ---------------------------------------------------------------
  'GET /v1/tenants': { list: true, req: () => ({ url: '/v1/tenants' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /v1/tenants': { req: () => ({ method: 'POST', url: '/v1/tenants', body: { name: `t-${Math.random().toString(36).slice(2, 8)}` } }), lower: 'vOperator', ok: { as: 'admin', status: 201 } },
  'POST /v1/tenants/:tenant/enrollment-tokens': { req: () => ({ method: 'POST', url: '/v1/tenants/bank-a/enrollment-tokens', body: {} }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 201 } },
  'GET /v1/agents': { list: true, req: () => ({ url: '/v1/agents' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/agents/:id': { req: (w) => ({ url: `/v1/agents/${A(w)}` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/agents/:id/images': { req: (w) => ({ url: `/v1/agents/${A(w)}/images` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /v1/agents/:id/revoke': { req: async (w) => ({ method: 'POST', url: `/v1/agents/${await w.newAgentA()}/revoke` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 200 } },
  'POST /v1/agents/:id/labels': { req: (w) => ({ method: 'POST', url: `/v1/agents/${A(w)}/labels`, body: { set: { env: 'prod' } } }), foreign: 'opScopedB', lower: 'aViewer', ok: { as: 'aAdmin', status: 200 } },
  // not connected: authorised, then 503 from the agent's absence
  'GET /v1/agents/:id/plan': { req: (w) => ({ url: `/v1/agents/${A(w)}/plan` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 503 } },
  'GET /v1/agents/:id/directives/:seq': { req: (w) => ({ url: `/v1/agents/${A(w)}/directives/1` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /v1/deploy': { req: (w) => ({ method: 'POST', url: '/v1/deploy', body: { stack: 'payments', version: '1.0.0', agent: A(w) } }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 200 } },

  // ---- remote operations: the agents are not connected, so an authorised operation answers 503 FERRY_E_AGENT_OFFLINE ----
  'POST /v1/agents/:id/operations': { req: (w) => ({ method: 'POST', url: `/v1/agents/${A(w)}/operations`, body: { kind: 'restart', stack: 'payments', service: 'web' } }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 503 } },
  // exec is stricter than operate: a tenant operator may not
  'POST /v1/agents/:id/exec': { req: (w) => ({ method: 'POST', url: `/v1/agents/${A(w)}/exec`, body: { stack: 'payments', service: 'web', command: 'status' } }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 503 } },
  'GET /v1/agents/:id/logs': { req: (w) => ({ url: `/v1/agents/${A(w)}/logs?stack=payments&service=web&tail=10` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 503 } },
  'GET /v1/agents/:id/stats': { req: (w) => ({ url: `/v1/agents/${A(w)}/stats` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 503 } },
  'GET /v1/agents/:id/networks': { req: (w) => ({ url: `/v1/agents/${A(w)}/networks` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 503 } },
  'GET /v1/agents/:id/operations': { req: (w) => ({ url: `/v1/agents/${A(w)}/operations` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/operations/:id': { req: (w) => ({ url: `/v1/operations/${w.operationA}` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/operations/:id/transcript': { req: (w) => ({ url: `/v1/operations/${w.operationA}/transcript` }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 200 } },
  // a selector over what the caller may operate: bank-b's operator selecting bank-a finds nothing
  'POST /v1/operations/plan': { req: () => ({ method: 'POST', url: '/v1/operations/plan', body: { kind: 'restart', stack: 'payments', service: 'web', selector: 'tenant=bank-a' } }), foreign: 'bOperator', foreignCode: 'FERRY_E_SELECTOR_EMPTY', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },
  // one agent selected (other cases enroll more of bank-a), so no confirmation is needed; it is not connected, so it is reported skipped
  'POST /v1/operations': { req: () => ({ method: 'POST', url: '/v1/operations', body: { kind: 'restart', stack: 'payments', service: 'web', selector: 'tenant=bank-a,name=a-host' } }), foreign: 'bOperator', foreignCode: 'FERRY_E_SELECTOR_EMPTY', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },

  // ---- people -------------------------------------------------------------------------------
  'GET /v1/whoami': { req: () => ({ url: '/v1/whoami' }), ok: { as: 'aViewer', status: 200 } },
  'GET /v1/users': { req: () => ({ url: '/v1/users' }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /v1/users': { req: () => ({ method: 'POST', url: '/v1/users', body: { name: `u-${Math.random().toString(36).slice(2, 8)}` } }), lower: 'vOperator', ok: { as: 'admin', status: 201 } },
  'GET /v1/users/:name': { req: async (w) => ({ url: `/v1/users/${await w.newPerson()}` }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /v1/users/:name/grants': { req: async (w) => ({ method: 'POST', url: `/v1/users/${await w.newPerson()}/grants`, body: { tenant: 'bank-a', role: 'viewer' } }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /v1/users/:name/revoke': { req: async (w) => ({ method: 'POST', url: `/v1/users/${await w.newPerson()}/revoke`, body: { tenant: 'bank-a' } }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /v1/users/:name/password': { req: async (w) => ({ method: 'POST', url: `/v1/users/${await w.newPerson()}/password`, body: { password: 'a long enough password' } }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /v1/users/:name/disable': { req: async (w) => ({ method: 'POST', url: `/v1/users/${await w.newPerson()}/disable` }), lower: 'vOperator', ok: { as: 'admin', status: 200 } },
  'POST /v1/users/:name/enable': { req: async (w) => ({ method: 'POST', url: `/v1/users/${await w.newPerson()}/enable` }), lower: 'vOperator', ok: { as: 'admin', status: 200 } },
  'GET /v1/api-tokens': { req: () => ({ url: '/v1/api-tokens' }), ok: { as: 'aViewer', status: 200 } },
  'POST /v1/api-tokens': { req: () => ({ method: 'POST', url: '/v1/api-tokens', body: { name: 'ci', role: 'viewer', tenants: ['bank-a'] } }), ok: { as: 'aViewer', status: 201 } },
  // someone else's token answers like one that does not exist
  'POST /v1/api-tokens/:id/revoke': { req: async (w) => ({ method: 'POST', url: `/v1/api-tokens/${await w.newTokenOf('aOperator')}/revoke` }), foreign: 'bOperator', ok: { as: 'admin', status: 200 } },
  'GET /v1/sessions/current': { req: () => ({ url: '/v1/sessions/current' }), ok: { as: 'aViewer', status: 200 } },
  // a bearer token has no session to end
  'DELETE /v1/sessions/current': { req: () => ({ method: 'DELETE', url: '/v1/sessions/current' }), ok: { as: 'aViewer', status: 400 } },

  // ---- trust and releases ---------------------------------------------------------------------
  'GET /v1/tenants/:tenant/trust': { req: () => ({ url: '/v1/tenants/bank-a/trust' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  // the root exists already: authorised, then 409
  'POST /v1/tenants/:tenant/trust/init': { req: () => ({ method: 'POST', url: '/v1/tenants/bank-a/trust/init', body: { root: [{ public: 'A'.repeat(43) + '=' }], rootThreshold: 1, release: [{ public: 'A'.repeat(43) + '=' }], releaseThreshold: 1 } }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 409 } },
  'POST /v1/tenants/:tenant/trust/propose': { req: () => ({ method: 'POST', url: '/v1/tenants/bank-a/trust/propose', body: { thresholds: { release: 1 } } }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 201 } },
  // no pending root of that version: authorised, then 404 of the version
  'POST /v1/tenants/:tenant/trust/signatures': { req: () => ({ method: 'POST', url: '/v1/tenants/bank-a/trust/signatures', body: { version: 99, keyid: 'a'.repeat(64), sig: 'A'.repeat(86) + '==' } }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aApprover', status: 404 } },
  'POST /v1/releases': { req: () => ({ method: 'POST', url: '/v1/releases', body: { payload: 'e30=' } }), lower: 'aAdmin', ok: { as: 'vRM', status: 400 } },
  'GET /v1/releases': { list: true, req: () => ({ url: '/v1/releases' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/releases/:stack/:version': { req: () => ({ url: '/v1/releases/payments/1.0.0' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /v1/releases/:stack/:version/tenants': { req: () => ({ method: 'POST', url: '/v1/releases/payments/1.0.0/tenants', body: { tenants: ['bank-a'] } }), lower: 'aAdmin', ok: { as: 'vRM', status: 200 } },
  // a signature that does not verify: authorised, then 403 of the signature check
  'POST /v1/releases/:stack/:version/signatures': { req: () => ({ method: 'POST', url: '/v1/releases/payments/1.0.0/signatures', body: { publicKey: 'A'.repeat(43) + '=', sig: 'A'.repeat(86) + '==' } }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aApprover', status: 403 } },

  // ---- rollouts ----------------------------------------------------------------------------------
  // a selector over what the caller may deploy to: bank-b's operator selecting bank-a finds nothing
  'POST /v1/rollouts': { req: () => ({ method: 'POST', url: '/v1/rollouts', body: { stack: 'api', version: '1.0.0', selector: 'tenant=bank-a' } }), foreign: 'bOperator', foreignCode: 'FERRY_E_SELECTOR_EMPTY', lower: 'aViewer', ok: { as: 'aOperator', status: 201 } },
  'GET /v1/rollouts': { list: true, req: () => ({ url: '/v1/rollouts' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/rollouts/:id/images': { req: (w) => ({ url: `/v1/rollouts/${w.rolloutA}/images` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/rollouts/:id': { req: (w) => ({ url: `/v1/rollouts/${w.rolloutA}` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/events': { list: true, req: () => ({ url: '/v1/events?since=0' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /v1/rollouts/:id/pause': { req: (w) => ({ method: 'POST', url: `/v1/rollouts/${w.rolloutA}/pause` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 200 } },
  'POST /v1/rollouts/:id/resume': { req: (w) => ({ method: 'POST', url: `/v1/rollouts/${w.rolloutA}/resume` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 200 } },
  // no wave to promote past: authorised, then 409
  'POST /v1/rollouts/:id/promote': { req: (w) => ({ method: 'POST', url: `/v1/rollouts/${w.rolloutA}/promote` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 409 } },
  'POST /v1/rollouts/:id/abort': { req: (w) => ({ method: 'POST', url: `/v1/rollouts/${w.rolloutA}/abort` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aAdmin', status: 200 } },
  // an aborted rollout can still be rolled back
  'POST /v1/rollouts/:id/rollback': { req: (w) => ({ method: 'POST', url: `/v1/rollouts/${w.rolloutA}/rollback` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },

  // ---- audit ---------------------------------------------------------------------------------------
  'GET /v1/audit': { list: true, req: () => ({ url: '/v1/audit' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/audit/:log/entries': { req: () => ({ url: '/v1/audit/bank-a/entries' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/audit/:log/export': { req: () => ({ url: '/v1/audit/bank-a/export' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/audit/:log/proof': { req: () => ({ url: '/v1/audit/bank-a/proof?index=0' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },

  // ---- checks, alerts, metrics -------------------------------------------------------------------
  'GET /v1/checks': { list: true, req: () => ({ url: '/v1/checks' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  // another tenant's name answers like one that does not exist
  'GET /v1/agents/:id/checks': { req: (w) => ({ url: `/v1/agents/${A(w)}/checks` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/alerts': { list: true, req: () => ({ url: '/v1/alerts' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  // the fleet's figures across tenants: a vendor-wide role with hub.read (a viewer's token); a tenant's admin is not enough
  'GET /metrics': { req: () => ({ url: '/metrics' }), lower: 'aAdmin', ok: { as: 'vViewer', status: 200 } },
  'POST /v1/audit/:log/checkpoint': { req: () => ({ method: 'POST', url: '/v1/audit/bank-a/checkpoint' }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 200 } },

  // ---- chat --------------------------------------------------------------------------------------
  'GET /v1/chat/transports': { req: () => ({ url: '/v1/chat/transports' }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /v1/chat/transports': { req: () => ({ method: 'POST', url: '/v1/chat/transports', body: { name: `t-${Math.random().toString(36).slice(2, 8)}`, platform: 'webhook', config: { secret: { value: 'a webhook secret' } } } }), lower: 'aAdmin', ok: { as: 'admin', status: 201 } },
  'DELETE /v1/chat/transports/:name': { req: async (w) => ({ method: 'DELETE', url: `/v1/chat/transports/${await w.newTransport()}` }), lower: 'vOperator', ok: { as: 'admin', status: 200 } },
  'GET /v1/chat/rooms': { list: true, req: () => ({ url: '/v1/chat/rooms' }), foreign: 'bOperator', ok: { as: 'aAdmin', status: 200 } },
  // binding a room to bank-a: bank-b's operator does not see the tenant; bank-a's operator does not manage its chat
  'POST /v1/chat/rooms': { req: () => ({ method: 'POST', url: '/v1/chat/rooms', body: { transport: 'console', room: `r-${Math.random().toString(36).slice(2, 8)}`, tenants: ['bank-a'] } }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 201 } },
  'DELETE /v1/chat/rooms/:id': { req: async (w) => ({ method: 'DELETE', url: `/v1/chat/rooms/${await w.newRoomA()}` }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 200 } },
  'POST /v1/chat/policies/:tenant': { req: () => ({ method: 'POST', url: '/v1/chat/policies/bank-a', body: { approval: null } }), foreign: 'bOperator', lower: 'aOperator', ok: { as: 'aAdmin', status: 200 } },
  'POST /v1/chat/link-codes': { req: () => ({ method: 'POST', url: '/v1/chat/link-codes', body: {} }), ok: { as: 'aViewer', status: 201 } },
  'GET /v1/locks': { list: true, req: () => ({ url: '/v1/locks' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  // a lock covers what its maker may deploy to: a viewer may deploy nowhere
  'POST /v1/locks': { req: () => ({ method: 'POST', url: '/v1/locks', body: { stack: 'zzz', reason: 'matrix' } }), lower: 'aViewer', ok: { as: 'aOperator', status: 201 } },
  'POST /v1/locks/:id/unlock': { req: async (w) => ({ method: 'POST', url: `/v1/locks/${await w.newLockA()}/unlock` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },
  'GET /v1/chat/console/rooms': { list: true, req: () => ({ url: '/v1/chat/console/rooms' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/chat/console/rooms/:room/messages': { req: () => ({ url: '/v1/chat/console/rooms/a-room/messages' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/chat/console/rooms/:room/stream': { req: () => ({ url: '/v1/chat/console/rooms/a-room/stream' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  // reading a room is enough to speak in it: each command then checks its own rule (chat-access.test.ts)
  'POST /v1/chat/console/rooms/:room/messages': { req: () => ({ method: 'POST', url: '/v1/chat/console/rooms/a-room/messages', body: { text: 'ferry help' } }), foreign: 'bOperator', ok: { as: 'aViewer', status: 201 } },
  'POST /v1/chat/console/rooms/:room/decisions': { req: () => ({ method: 'POST', url: '/v1/chat/console/rooms/a-room/decisions', body: { code: 'NOPE42', decision: 'cancel' } }), foreign: 'bOperator', ok: { as: 'aViewer', status: 201 } },
  // platform callbacks: verified by the platform's scheme, so unsigned is 401 (chat-platforms.test.ts covers the schemes)
  'GET /v1/chat/hooks/wecom/:transport': { public: true, req: () => ({ url: '/v1/chat/hooks/wecom/m-wecom?msg_signature=0&timestamp=1&nonce=n&echostr=x' }), ok: { as: 'none', status: 401 } },
  'POST /v1/chat/hooks/slack/:transport/commands': { public: true, req: () => ({ method: 'POST', url: '/v1/chat/hooks/slack/m-slack/commands', body: { text: 'ferry help' } }), ok: { as: 'none', status: 401 } },
  'POST /v1/chat/hooks/slack/:transport/interactive': { public: true, req: () => ({ method: 'POST', url: '/v1/chat/hooks/slack/m-slack/interactive', body: {} }), ok: { as: 'none', status: 401 } },
  'POST /v1/chat/hooks/dingtalk/:transport': { public: true, req: () => ({ method: 'POST', url: '/v1/chat/hooks/dingtalk/m-ding', body: {} }), ok: { as: 'none', status: 401 } },
  'POST /v1/chat/hooks/feishu/:transport': { public: true, req: () => ({ method: 'POST', url: '/v1/chat/hooks/feishu/m-feishu', body: { type: 'url_verification', token: 'wrong', challenge: 'c' } }), ok: { as: 'none', status: 401 } },
  'POST /v1/chat/hooks/wecom/:transport': { public: true, req: () => ({ method: 'POST', url: '/v1/chat/hooks/wecom/m-wecom?msg_signature=0&timestamp=1&nonce=n', body: { encrypt: 'x' } }), ok: { as: 'none', status: 401 } },
  'POST /v1/chat/hooks/webhook/:transport': { public: true, req: () => ({ method: 'POST', url: '/v1/chat/hooks/webhook/m-hook', body: { room: 'r', user: 'u', text: 'ferry help', id: '1' } }), ok: { as: 'none', status: 401 } },
  // ---- the console (pages and forms; writes are the API's, forwarded) ------------------------------
  'GET /assets/:file': { public: true, page: true, req: (w) => ({ url: w.assetUrl }), ok: { as: 'none', status: 200 } },
  'GET /': { public: true, page: true, req: () => ({ url: '/' }), ok: { as: 'none', status: 302 } },
  'GET /login': { public: true, page: true, req: () => ({ url: '/login' }), ok: { as: 'none', status: 200 } },
  // the API's answer to a wrong password, as a page
  'POST /login': { public: true, page: true, req: () => ({ method: 'POST', url: '/login', body: { user: 'nobody', password: 'wrong password here' }, headers: { origin: 'http://localhost:80' } }), ok: { as: 'none', status: 401 } },
  // a bearer token has no session to end
  'POST /logout': { page: true, req: () => ({ method: 'POST', url: '/logout' }), ok: { as: 'aViewer', status: 400 } },
  'GET /fleet': { page: true, list: true, req: () => ({ url: '/fleet' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /enroll': { page: true, list: true, req: () => ({ url: '/enroll' }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },
  'POST /enroll': { page: true, req: () => ({ method: 'POST', url: '/enroll', body: { tenant: 'bank-a' } }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },
  'GET /agents/:id': { page: true, req: (w) => ({ url: `/agents/${A(w)}` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /agents/:id/labels': { page: true, req: (w) => ({ method: 'POST', url: `/agents/${A(w)}/labels`, body: { set: 'env=prod' } }), foreign: 'opScopedB', lower: 'aViewer', ok: { as: 'aAdmin', status: 200 } },
  'POST /agents/:id/revoke': { page: true, req: async (w) => ({ method: 'POST', url: `/agents/${await w.newAgentA()}/revoke` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 303 } },
  'GET /releases': { page: true, list: true, req: () => ({ url: '/releases' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /releases/:stack/:version': { page: true, req: () => ({ url: '/releases/payments/1.0.0' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /stacks': { page: true, list: true, req: () => ({ url: '/stacks' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /rollouts': { page: true, list: true, req: () => ({ url: '/rollouts' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /rollouts/new': { page: true, list: true, req: () => ({ url: '/rollouts/new' }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },
  'POST /rollouts/preview': { page: true, req: () => ({ method: 'POST', url: '/rollouts/preview', body: { release: 'shop@1.0.0', selector: 'tenant=bank-a', waves: '100%' } }), foreign: 'bOperator', foreignCode: 'FERRY_E_SELECTOR_EMPTY', lower: 'aViewer', ok: { as: 'aOperator', status: 200 } },
  'POST /rollouts': { page: true, req: () => ({ method: 'POST', url: '/rollouts', body: { release: 'shop@1.0.0', selector: 'tenant=bank-a', waves: '100%' } }), foreign: 'bOperator', foreignCode: 'FERRY_E_SELECTOR_EMPTY', lower: 'aViewer', ok: { as: 'aOperator', status: 303 } },
  'GET /rollouts/:id': { page: true, req: (w) => ({ url: `/rollouts/${w.rolloutA2}` }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'POST /rollouts/:id/pause': { page: true, req: (w) => ({ method: 'POST', url: `/rollouts/${w.rolloutA2}/pause` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 303 } },
  'POST /rollouts/:id/resume': { page: true, req: (w) => ({ method: 'POST', url: `/rollouts/${w.rolloutA2}/resume` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aOperator', status: 303 } },
  // one agent, one wave: authorised, then the API's 409
  'POST /rollouts/:id/promote': { page: true, req: (w) => ({ method: 'POST', url: `/rollouts/${w.rolloutA2}/promote` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 409 } },
  'POST /rollouts/:id/abort': { page: true, req: (w) => ({ method: 'POST', url: `/rollouts/${w.rolloutA2}/abort` }), foreign: 'bOperator', lower: 'aApprover', ok: { as: 'aAdmin', status: 303 } },
  'POST /rollouts/:id/rollback': { page: true, req: (w) => ({ method: 'POST', url: `/rollouts/${w.rolloutA2}/rollback` }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aOperator', status: 303 } },
  'GET /audit': { page: true, list: true, req: () => ({ url: '/audit' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /audit/:log': { page: true, req: () => ({ url: '/audit/bank-a' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /people': { page: true, req: () => ({ url: '/people' }), lower: 'aAdmin', ok: { as: 'admin', status: 200 } },
  'POST /people': { page: true, req: () => ({ method: 'POST', url: '/people', body: { name: `c-${Math.random().toString(36).slice(2, 8)}` } }), lower: 'vOperator', ok: { as: 'admin', status: 303 } },
  'POST /people/:name/grants': { page: true, req: async (w) => ({ method: 'POST', url: `/people/${await w.newPerson()}/grants`, body: { grant: 'bank-a:approver' } }), lower: 'aAdmin', ok: { as: 'admin', status: 303 } },
  'POST /people/:name/revoke': { page: true, req: async (w) => ({ method: 'POST', url: `/people/${await w.newPerson()}/revoke`, body: { scope: 'bank-a' } }), lower: 'aAdmin', ok: { as: 'admin', status: 303 } },
  'POST /people/:name/disable': { page: true, req: async (w) => ({ method: 'POST', url: `/people/${await w.newPerson()}/disable` }), lower: 'vOperator', ok: { as: 'admin', status: 303 } },
  'POST /people/:name/enable': { page: true, req: async (w) => ({ method: 'POST', url: `/people/${await w.newPerson()}/enable` }), lower: 'vOperator', ok: { as: 'admin', status: 303 } },
  'GET /tokens': { page: true, req: () => ({ url: '/tokens' }), ok: { as: 'aViewer', status: 200 } },
  'POST /tokens': { page: true, req: () => ({ method: 'POST', url: '/tokens', body: { name: 'ci', role: 'viewer', tenants: 'bank-a' } }), ok: { as: 'aViewer', status: 200 } },
  // someone else's token answers like one that does not exist (the API's 404)
  'POST /tokens/:id/revoke': { page: true, req: async (w) => ({ method: 'POST', url: `/tokens/${await w.newTokenOf('aOperator')}/revoke` }), foreign: 'bOperator', ok: { as: 'admin', status: 303 } },
  // ---- agent bundles (self-upgrade) ------------------------------------------------------------------
  // the vendor publishes agent versions; an institution's admin cannot
  'POST /v1/agent-bundles': { req: () => ({ method: 'POST', url: '/v1/agent-bundles?tenants=bank-a', archive: tinyBundle(`0.8.${++bundleN}`) }), lower: 'aAdmin', ok: { as: 'vRM', status: 201 } },
  'GET /v1/agent-bundles': { list: true, req: () => ({ url: '/v1/agent-bundles' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  'GET /v1/agent-bundles/:version': { req: () => ({ url: '/v1/agent-bundles/0.9.0' }), foreign: 'bOperator', ok: { as: 'aViewer', status: 200 } },
  // a signature that does not verify: authorised, then 403 of the signature check
  // (a real key's signature over something else: all-zero bytes are a small-order key OpenSSL may accept)
  'POST /v1/agent-bundles/:version/signatures': { req: () => ({ method: 'POST', url: '/v1/agent-bundles/0.9.0/signatures', body: WRONG_SIG }), foreign: 'bOperator', lower: 'aViewer', ok: { as: 'aApprover', status: 403 } },
  // signed by an agent key, not a person: unsigned is 401 (upgrade.test.ts downloads for real)
  'GET /agent/v1/bundles/:digest': { public: true, req: () => ({ url: `/agent/v1/bundles/sha256:${'0'.repeat(64)}` }), ok: { as: 'none', status: 401 } },
};

/** An event stream's status, without waiting for it to end. */
function streamStatus(url: string, token: string | null): Promise<{ status: number; first: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let first = '';
      res.setEncoding('utf8');
      const done = () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, first });
      };
      if ((res.statusCode ?? 0) >= 400) {
        res.on('data', (c: string) => (first += c));
        res.on('end', done);
        return;
      }
      res.on('data', (c: string) => {
        first += c;
        if (first.includes('event: ready')) setTimeout(done, 200);
      });
    });
    req.on('error', reject);
  });
}

async function call(w: World, who: Who, r: Req): Promise<{ status: number; text: string; body: any; location?: string }> {
  const token = who === 'none' ? null : w.tokens[who];
  if (r.url.startsWith('/v1/events') || r.url.endsWith('/stream')) {
    const s = await streamStatus(w.th.url + r.url, token);
    return { status: s.status, text: s.first, body: s.status >= 400 ? JSON.parse(s.first) : null };
  }
  const res = await w.th.hub.app.inject({
    method: (r.method ?? 'GET') as 'GET',
    url: r.url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(r.archive ? { 'content-type': 'application/gzip' } : r.body !== undefined ? { 'content-type': 'application/json' } : {}), ...r.headers },
    payload: r.archive ?? (r.body === undefined ? undefined : JSON.stringify(r.body)),
  });
  let body: any;
  if (String(res.headers['content-type'] ?? '').startsWith('text/html')) {
    // A console error page: the same code and message, from its error note.
    const note = /<div class="error-note" data-code="(FERRY_E_[A-Z_]+)"><p><strong>([^<]*)<\/strong>/.exec(res.body);
    body = note ? { error: { code: note[1], message: note[2] } } : { html: true };
  } else {
    try {
      body = JSON.parse(res.body);
    } catch {
      body = res.body;
    }
  }
  return { status: res.statusCode, text: res.body, body, location: res.headers.location as string | undefined };
}

async function world(th: TestHub): Promise<World> {
  const api = apiClient(() => th.url, th.adminToken);
  await simTenant(api, 'bank-a');
  await simTenant(api, 'bank-b');
  await simRelease(api, 'payments', '1.0.0');
  await simRelease(api, 'api', '1.0.0');
  await simRelease(api, 'ledger', '7.0.0');
  const enroll = async (tenant: string, name: string) => {
    const tok = await api('POST', `/v1/tenants/${tenant}/enrollment-tokens`, { ttlSeconds: 600 });
    const r = await postEnroll(th.url, enrollBody(th.url, tok.body.token, generateKeyPair(), name));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.agentId as string;
  };
  const agentA = await enroll('bank-a', 'a-host');
  const agentB = await enroll('bank-b', 'b-host');
  assert.equal((await api('POST', '/v1/deploy', { stack: 'payments', version: '1.0.0', agent: agentA })).status, 200);
  assert.equal((await api('POST', '/v1/deploy', { stack: 'ledger', version: '7.0.0', agent: agentB })).status, 200);
  // Each release is delivered to one tenant only: payments to bank-a, ledger to bank-b.
  const ro = async (stack: string, version: string, selector: string) => {
    const r = await api('POST', '/v1/rollouts', { stack, version, selector, waves: '1,100%', bakeMs: 3_600_000 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const rolloutA = await ro('payments', '1.0.0', 'tenant=bank-a');
  const rolloutB = await ro('ledger', '7.0.0', 'tenant=bank-b');
  // An answered exec on agentA, as the hub records one (the agent is not connected to run a real one).
  const operationA = `op_${'a1'.repeat(10)}`;
  const now = Date.now();
  const transcript = '{"fd":1,"src":"web#0","text":"ok\\n"}\n';
  await th.hub.store.operations.insert({ id: operationA, agentId: agentA, tenant: 'bank-a', seq: 1, kind: 'exec', stack: 'payments', service: 'web', args: { command: 'status' }, envelope: { payloadType: 'application/vnd.ferry.operation+json', payload: '', signatures: [] }, issuedAt: now, expiresAt: now + 60_000, createdBy: null, surface: 'cli', batch: null });
  await th.hub.store.operations.finish(operationA, { status: 'ok', code: null, message: null, result: null, exitCode: 0, bytes: 3, durationMs: 5, streamReason: 'exit', agentDigest: null, transcript, transcriptDigest: digestOfTranscript(transcript) }, now);
  await simRelease(api, 'web', '1.0.0');
  await simRelease(api, 'shop', '1.0.0');
  const rolloutA2 = await ro('web', '1.0.0', 'tenant=bank-a');
  const login = await th.hub.app.inject({ url: '/login' });
  const assetUrl = /href="(\/assets\/console\.[0-9a-f]+\.css)"/.exec(login.body)?.[1] ?? '';
  assert.ok(assetUrl, 'the login page links its stylesheet');
  // An agent version for each tenant: 0.9.0 for bank-a, 0.9.1 for bank-b.
  for (const [version, tenant] of [['0.9.0', 'bank-a'], ['0.9.1', 'bank-b']] as const) {
    const r = await th.hub.app.inject({ method: 'POST', url: `/v1/agent-bundles?tenants=${tenant}`, headers: { authorization: `Bearer ${th.adminToken}`, 'content-type': 'application/gzip' }, payload: tinyBundle(version) });
    assert.equal(r.statusCode, 201, r.body);
  }
  const p = (g: Parameters<TestHub['person']>[0], scope?: Parameters<TestHub['person']>[1]) => th.person(g, scope).then((x) => x.token);
  const tokens = {
    admin: th.adminToken,
    vViewer: await p({ vendorRole: 'viewer' }),
    vOperator: await p({ vendorRole: 'operator' }),
    vRM: await p({ vendorRole: 'release-manager' }),
    aAdmin: await p({ tenants: { 'bank-a': 'tenant-admin' } }),
    aOperator: await p({ tenants: { 'bank-a': 'operator' } }),
    aApprover: await p({ tenants: { 'bank-a': 'approver' } }),
    aViewer: await p({ tenants: { 'bank-a': 'viewer' } }),
    bOperator: await p({ tenants: { 'bank-b': 'operator' } }),
    // a vendor operator's token narrowed to bank-b: bank-a is another tenant to it
    opScopedB: await p({ vendorRole: 'operator' }, { role: 'operator', tenants: ['bank-b'] }),
  };
  // Chat: a transport of each platform (their callbacks), a console room and a lock of bank-a's.
  const chatCfg: Record<string, Record<string, unknown>> = {
    slack: { signingSecret: { value: 'slack-signing' } },
    dingtalk: { appSecret: { value: 'ding-secret' } },
    feishu: { verificationToken: { value: 'feishu-token' } },
    wecom: { token: { value: 'wecom-token' }, encodingAesKey: { value: 'a'.repeat(43) } },
    webhook: { secret: { value: 'hook-secret' } },
  };
  for (const [platform, config] of Object.entries(chatCfg)) {
    const name = platform === 'dingtalk' ? 'm-ding' : platform === 'webhook' ? 'm-hook' : `m-${platform}`;
    assert.equal((await api('POST', '/v1/chat/transports', { name, platform, config })).status, 201);
  }
  assert.equal((await api('POST', '/v1/chat/rooms', { transport: 'console', room: 'a-room', tenants: ['bank-a'] })).status, 201);
  // bank-a's operator's lock: on bank-a only
  const lockA = async () => {
    const r = await th.hub.app.inject({ method: 'POST', url: '/v1/locks', headers: { authorization: `Bearer ${tokens.aOperator}`, 'content-type': 'application/json' }, payload: JSON.stringify({ stack: 'zzz', reason: 'matrix' }) });
    assert.equal(r.statusCode, 201, r.body);
    return JSON.parse(r.body).id as string;
  };
  await lockA();
  let n = 0;
  return {
    th,
    tokens,
    agentA,
    agentB,
    rolloutA,
    rolloutB,
    operationA,
    rolloutA2,
    assetUrl,
    newAgentA: () => enroll('bank-a', `a-extra-${++n}`),
    newPerson: async () => {
      const name = `fresh-${++n}`;
      assert.equal((await api('POST', '/v1/users', { name, vendorRole: null })).status, 201);
      assert.equal((await api('POST', `/v1/users/${name}/grants`, { tenant: 'bank-a', role: 'viewer' })).status, 200);
      return name;
    },
    newTokenOf: async (who) => {
      const r = await th.hub.app.inject({ method: 'POST', url: '/v1/api-tokens', headers: { authorization: `Bearer ${tokens[who]}`, 'content-type': 'application/json' }, payload: JSON.stringify({ name: `t${++n}`, role: 'viewer', tenants: ['bank-a'] }) });
      assert.equal(r.statusCode, 201, r.body);
      return JSON.parse(r.body).id as string;
    },
    newTransport: async () => {
      const name = `x-${++n}`;
      assert.equal((await api('POST', '/v1/chat/transports', { name, platform: 'webhook', config: { secret: { value: 'some secret' } } })).status, 201);
      return name;
    },
    newRoomA: async () => {
      const r = await api('POST', '/v1/chat/rooms', { transport: 'console', room: `a-extra-${++n}`, tenants: ['bank-a'] });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body.id as string;
    },
    newLockA: lockA,
  };
}

for (const backend of await backends()) {
  test(`[${backend}] every route: no credentials, another tenant, a lower role, the right role`, async (t) => {
    const th = await startHub(t, { backend, checkpointMs: 3_600_000, rateLimitPerMinute: 0 });
    const w = await world(th);
    const keys = th.hub.routes.map((r) => `${r.method} ${r.url}`);
    const missing = keys.filter((k) => !CASES[k]);
    assert.deepEqual(missing, [], 'routes without a case in the access matrix (add one: every route needs its rule tested)');
    const stale = Object.keys(CASES).filter((k) => !keys.includes(k));
    assert.deepEqual(stale, [], 'cases for routes the hub no longer serves');

    for (const key of keys) {
      const c = CASES[key]!;
      const rule = th.hub.routes.find((r) => `${r.method} ${r.url}` === key)!.access;
      await t.test(key, async () => {
        assert.equal('public' in rule, c.public === true, `${key}: public in the route table and in the matrix alike`);
        if (!c.public && c.page) {
          // a browser without a session is sent to log in, and back here after
          const r = await call(w, 'none', await c.req(w));
          assert.ok(r.status === 302 || r.status === 303, `${key} without credentials: ${r.status} ${r.text.slice(0, 200)}`);
          assert.match(r.location ?? '', /^\/login\?why=required&next=/, `${key} without credentials goes to the login form`);
          const bad = await w.th.hub.app.inject({ method: ((await c.req(w)).method ?? 'GET') as 'GET', url: (await c.req(w)).url, headers: { authorization: 'Bearer ferry_api_forged' } });
          assert.match(String(bad.headers.location ?? ''), /^\/login\?why=expired/, `${key} with a forged token: ${bad.statusCode}`);
        } else if (!c.public) {
          const r = await call(w, 'none', await c.req(w));
          assert.equal(r.status, 401, `${key} without credentials: ${r.text}`);
          assert.equal(r.body.error.code, 'FERRY_E_AUTH_REQUIRED');
          const bad = await w.th.hub.app.inject({ method: ((await c.req(w)).method ?? 'GET') as 'GET', url: (await c.req(w)).url, headers: { authorization: 'Bearer ferry_api_forged' } });
          if (!key.startsWith('GET /v1/events') && !key.endsWith('/stream')) assert.equal(bad.statusCode, 401, `${key} with a forged token`);
        }
        if (c.foreign) {
          const r = await call(w, c.foreign, await c.req(w));
          if (c.list) {
            assert.ok(r.status < 400, `${key} as ${c.foreign}: ${r.status} ${r.text.slice(0, 300)}`);
            // a page shows names as text too: nothing of them anywhere in it
            for (const secret of ['bank-a', w.agentA, w.rolloutA, w.rolloutA2]) assert.ok(c.page ? !r.text.includes(secret) : !r.text.includes(`"${secret}"`) && !r.text.includes(`:${secret}`), `${key} as ${c.foreign} shows ${secret}: ${r.text.slice(0, 400)}`);
          } else {
            assert.equal(r.status, 404, `${key} as ${c.foreign} (another tenant): ${r.text}`);
            assert.equal(r.body.error.code, c.foreignCode ?? 'FERRY_E_NOT_FOUND');
            assert.ok(!/bank-b|tenant-admin|operator on|forbidden/i.test(r.body.error.message), `${key}: the 404 says nothing more than not found: ${r.body.error.message}`);
          }
        }
        if (c.lower) {
          const r = await call(w, c.lower, await c.req(w));
          assert.equal(r.status, 403, `${key} as ${c.lower} (role too low): ${r.text}`);
          assert.equal(r.body.error.code, 'FERRY_E_FORBIDDEN');
        }
        const r = await call(w, c.ok.as, await c.req(w));
        assert.equal(r.status, c.ok.status, `${key} as ${c.ok.as}: ${r.text.slice(0, 500)}`);
      });
    }
  });
}
