// The catalogue of stable error codes. The CLI, the HTTP API, the agent's logs
// and protocol `error` messages all carry these codes; a code never changes
// meaning once released. Each entry says what happened and what to do.

export interface ErrorSpec {
  /** What went wrong, for a person. */
  readonly message: string;
  /** What to do about it. */
  readonly hint: string;
  /** HTTP status when the error crosses the API. */
  readonly status: number;
}

const spec = (status: number, message: string, hint: string): ErrorSpec => ({ status, message, hint });

export const ERRORS = {
  // Input and protocol
  FERRY_E_BAD_REQUEST: spec(400, 'The request is malformed', 'Check the request body against the API reference in README.md.'),
  FERRY_E_VALIDATION: spec(400, 'A field is missing or has the wrong shape', 'Correct the named field and try again.'),
  FERRY_E_PROTOCOL_MALFORMED: spec(400, 'A message is not valid JSON', 'Agent and hub must speak JSON text frames; upgrade the sender.'),
  FERRY_E_PROTOCOL_UNKNOWN_TYPE: spec(400, 'A message has an unknown type', 'Agent and hub versions differ; upgrade the older side.'),
  FERRY_E_PROTOCOL_INVALID: spec(400, 'A message does not match its schema', 'Agent and hub versions differ or the sender is faulty; upgrade the older side.'),
  FERRY_E_PROTOCOL_TOO_LARGE: spec(413, 'A message is larger than the 1 MiB limit', 'Send smaller messages; the connection was closed.'),
  FERRY_E_PAYLOAD_TOO_LARGE: spec(413, 'The request body is too large', 'Send a smaller body.'),
  FERRY_E_NOT_FOUND: spec(404, 'No such resource', 'Check the name or id; list what exists with the matching `ls` command.'),
  FERRY_E_METHOD_NOT_ALLOWED: spec(405, 'That method is not allowed here', 'See the API reference in README.md.'),
  FERRY_E_CONFLICT: spec(409, 'The resource already exists', 'Choose another name, or use the existing one.'),

  // Operator authentication
  FERRY_E_AUTH_REQUIRED: spec(401, 'No API token was given', 'Run `ferry login --hub URL --token TOKEN`, or set FERRY_HUB and FERRY_TOKEN.'),
  FERRY_E_AUTH_INVALID: spec(401, 'The API token is not valid', 'Ask an admin for a new token and run `ferry login` again.'),
  FERRY_E_FORBIDDEN: spec(403, 'Your token\'s role does not allow this', 'Ask an admin to do it, or for a token with a stronger role.'),

  // Enrollment
  FERRY_E_TOKEN_INVALID: spec(401, 'The enrollment token is not valid', 'Ask an operator for a new token: `ferry token create --tenant NAME`.'),
  FERRY_E_TOKEN_EXPIRED: spec(401, 'The enrollment token has expired', 'Ask an operator for a new token: `ferry token create --tenant NAME`.'),
  FERRY_E_TOKEN_USED: spec(401, 'The enrollment token was already used', 'Tokens are single-use; ask an operator for a new one.'),
  FERRY_E_ENROLL_PROOF: spec(400, 'The enrollment request was not signed by the key it registers', 'Run `ferry-agent enroll` again; it generates and signs with a fresh key.'),
  FERRY_E_ALREADY_ENROLLED: spec(409, 'This state directory already holds an enrolled agent', 'Use `ferry-agent run`, or choose an empty --state-dir to enroll a new agent.'),
  FERRY_E_NOT_ENROLLED: spec(400, 'This state directory holds no enrolled agent', 'Run `ferry-agent enroll --hub URL --token TOKEN --state-dir DIR` first.'),

  // Agent authentication at the WebSocket upgrade
  FERRY_E_AGENT_AUTH_MISSING: spec(401, 'The agent connection carries no authentication', 'Upgrade the agent; it must sign a hub challenge before connecting.'),
  FERRY_E_AGENT_AUTH_INVALID: spec(401, 'The agent\'s signature does not verify', 'The agent key does not match its registration; re-enroll the agent.'),
  FERRY_E_AGENT_AUTH_REPLAYED: spec(401, 'The challenge was already used or has expired', 'The agent retries with a fresh challenge; if this repeats, check for a replaying proxy.'),
  FERRY_E_AGENT_AUTH_CLOCK: spec(401, 'The agent\'s clock is too far from the hub\'s', 'Synchronise the agent host\'s clock (NTP) and restart the agent.'),
  FERRY_E_AGENT_AUTH_HOST: spec(401, 'The agent signed for another hub host', 'Point the agent at the hub URL it enrolled with.'),
  FERRY_E_AGENT_UNKNOWN: spec(401, 'The hub does not know this agent', 'Enroll it with `ferry-agent enroll`.'),
  FERRY_E_AGENT_REVOKED: spec(401, 'This agent has been revoked', 'A revoked agent cannot reconnect; enroll the host again with a new token if it should return.'),
  FERRY_E_AGENT_REPLACED: spec(409, 'Another connection for this agent took over', 'Two processes run with the same state directory; stop one.'),

  // Agent side
  FERRY_E_CONFIG_INVALID: spec(400, 'The configuration is not valid', 'Fix the named setting in the config file, flag or environment variable.'),
  FERRY_E_STATE_CORRUPT: spec(500, 'The agent state directory is unreadable or damaged', 'Restore it from backup or re-enroll into an empty --state-dir.'),
  FERRY_E_KEY_PERMISSIONS: spec(500, 'The agent private key file is readable by others', 'Run `chmod 600` on the key file; the agent refuses keys other users can read.'),
  FERRY_E_HUB_UNREACHABLE: spec(503, 'The hub cannot be reached', 'Check the hub URL, DNS, proxy settings (https_proxy, no_proxy) and firewall egress rules.'),
  FERRY_E_HUB_TLS: spec(503, 'The hub\'s TLS certificate is not trusted', 'Give the hub CA with --ca-file / NODE_EXTRA_CA_CERTS, or check the hub URL.'),
  FERRY_E_ENGINE_UNREACHABLE: spec(503, 'The Docker engine cannot be reached', 'Start dockerd, or set DOCKER_HOST; the agent user needs the docker group.'),
  FERRY_E_SERVICE_INSTALL: spec(500, 'The systemd service could not be installed', 'Run as root on a host with systemd, or use --unit-dir to write the unit elsewhere.'),

  // Hub side
  FERRY_E_DB: spec(500, 'The hub database failed', 'Check disk space and permissions of the data directory; see the hub log.'),
  FERRY_E_DB_VERSION: spec(500, 'The database was written by a newer hub', 'Run the newer ferry-hub, or restore a backup made by this version.'),
  FERRY_E_HUB_NOT_INITIALISED: spec(500, 'The data directory holds no hub database', 'Run `ferry-hub init --data-dir DIR` first.'),
  FERRY_E_HUB_ALREADY_INITIALISED: spec(409, 'The data directory already holds a hub database', 'Use `ferry-hub serve`, or choose another --data-dir.'),
  FERRY_E_INTERNAL: spec(500, 'An internal error occurred', 'Retry; if it repeats, report it with the hub log around this time.'),
  FERRY_E_UNAVAILABLE: spec(503, 'The hub is shutting down or not ready', 'Retry in a few seconds.'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && Object.hasOwn(ERRORS, x);
}

/** An error with a stable code. `detail` says what exactly, in this instance. */
export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly detail: string | undefined;
  readonly status: number;
  readonly hint: string;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const s = ERRORS[code];
    super(detail ? `${s.message}: ${detail}` : s.message, options);
    this.name = 'FerryError';
    this.code = code;
    this.detail = detail;
    this.status = s.status;
    this.hint = s.hint;
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message, hint: this.hint };
  }
}

/** The shape every error takes on the wire (HTTP bodies, protocol messages). */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  hint: string;
}

export function errorBody(code: ErrorCode, detail?: string): ErrorBody {
  return new FerryError(code, detail).toJSON();
}

/** Wraps anything thrown into a FerryError, keeping codes that already exist. */
export function asFerryError(err: unknown, fallback: ErrorCode = 'FERRY_E_INTERNAL'): FerryError {
  if (err instanceof FerryError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new FerryError(fallback, msg, { cause: err });
}
