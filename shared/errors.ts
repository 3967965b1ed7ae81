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
  FERRY_E_FORBIDDEN: spec(403, 'Your role does not allow this', 'Ask an admin to do it, or to grant you a role that allows it (`ferry user grant`); `ferry whoami` shows what you have.'),
  FERRY_E_TOKEN_SCOPE: spec(403, 'A token cannot allow more than its person may do', 'Ask for a role or tenants within your own grants (`ferry whoami`), or ask an admin to grant them first.'),
  FERRY_E_LOGIN_FAILED: spec(401, 'The user name or password is wrong', 'Check both and try again; repeated failures lock the account for a while.'),
  FERRY_E_LOGIN_LOCKED: spec(429, 'Too many failed logins: locked for a while', 'Wait the time named, or ask an admin to set a new password (`ferry user passwd`), which unlocks the account.'),
  FERRY_E_USER_DISABLED: spec(401, 'This account is disabled', 'Ask an admin to enable it again, or to create a new account.'),
  FERRY_E_SESSION_EXPIRED: spec(401, 'The console session has ended', 'Log in again.'),
  FERRY_E_CSRF: spec(403, 'The request lacks a valid CSRF token or comes from another origin', 'Reload the console page and try again; scripts should use an API token (Authorization: Bearer) instead of a session cookie.'),
  FERRY_E_PASSWORD_WEAK: spec(400, 'The password is too short or too long', 'Choose a passphrase of at least 12 characters (a password manager can make one).'),
  FERRY_E_RATE_LIMITED: spec(429, 'Too many requests', 'Slow down and retry after the time the Retry-After header gives.'),
  FERRY_E_STREAMS_LIMIT: spec(429, 'Too many open event streams for this account', 'Close other streams (console tabs, `ferry events`, `--watch`) and retry.'),

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
  FERRY_E_HUB_NOT_TLS: spec(503, 'The server at that address does not speak TLS', 'The hub serves plain HTTP there (no --tls-cert): use an http:// URL, or check the port.'),
  FERRY_E_AGENT_NO_ANSWER: spec(504, 'The agent has not answered yet', 'The directive stays pending and is delivered when the agent connects; see `ferry agent show ID` for when it was last seen.'),
  FERRY_E_ENGINE_UNREACHABLE: spec(503, 'The Docker engine cannot be reached', 'Start dockerd, or set DOCKER_HOST; the agent user needs the docker group.'),
  FERRY_E_SERVICE_INSTALL: spec(500, 'The systemd service could not be installed', 'Run as root on a host with systemd, or use --unit-dir to write the unit elsewhere.'),
  FERRY_E_SERVICE_UNINSTALL: spec(500, 'The systemd service could not be removed', 'Run as root; see `systemctl status ferry-agent` and `ferry-agent service status`.'),

  // Signed documents: envelopes, roots, releases, directives
  FERRY_E_ENVELOPE_INVALID: spec(400, 'A signed envelope is malformed', 'Re-create it with the ferry CLI; envelopes are DSSE JSON with base64 payload and signatures.'),
  FERRY_E_PAYLOAD_TYPE: spec(400, 'A signed envelope has the wrong payload type', 'The document was signed as something else; sign the right document.'),
  FERRY_E_PAYLOAD_INVALID: spec(400, 'A signed document is not valid', 'Documents must be strict JSON (no duplicate keys, integers only) matching their schema; re-create it with the ferry CLI.'),
  FERRY_E_SIG_THRESHOLD: spec(403, 'Not enough valid signatures from distinct trusted keys', 'Collect signatures from more of the keys the trust root names: `ferry release sign` / `ferry trust sign`.'),
  FERRY_E_SIG_UNKNOWN_KEY: spec(403, "The signing key is not named by any tenant's trust root", "Sign with a release key a tenant's root lists (`ferry trust show --tenant T`), or add the key to the root first (`ferry trust add-key`); an institution's co-signer uploads with their own approver account (`ferry login` with its token)."),
  FERRY_E_SIG_LIMIT: spec(409, 'The release already carries as many signatures as an agent accepts (32)', 'Nothing more is needed from extra signers; if a threshold is still unmet, check which keys the tenant root names (`ferry trust show`).'),
  FERRY_E_ROOT_VERSION: spec(409, 'The trust root version does not follow the current one', 'Roots step by one version; apply the missing versions in order.'),
  FERRY_E_ROOT_UNTRUSTED: spec(403, 'The trust root does not match the expected fingerprint', 'Check the fingerprint with the vendor out of band (`ferry trust show`) before enrolling.'),
  FERRY_E_ROOT_MISSING: spec(409, 'The tenant has no signed trust root yet', 'Create and sign one: `ferry trust init --tenant T ...` then `ferry trust sign`.'),
  FERRY_E_DIRECTIVE_BINDING: spec(403, 'The directive is for another tenant or agent', 'The hub sent a directive meant elsewhere; report this to the vendor.'),
  FERRY_E_DIRECTIVE_EXPIRED: spec(403, 'The directive has expired', 'Deploy again from the hub; check the agent host\'s clock if this repeats.'),
  FERRY_E_CLOCK_AHEAD: spec(409, 'A signed document is dated further ahead of this agent\'s clock than the allowed skew', 'Nothing was accepted or stored. The detail says whose clock is wrong: fix the hub\'s clock (NTP) and deploy again, or this host\'s if it is behind; a hub whose clock is right signing documents from the future is a security alarm.'),
  FERRY_E_DIRECTIVE_REPLAY: spec(409, 'The directive is older than one already accepted', 'Nothing to do if it is a stale duplicate; otherwise deploy again from the hub.'),
  FERRY_E_DIRECTIVE_FORK: spec(409, 'Two different directives carry the same sequence number', 'This is a security alarm: the hub signed conflicting state. Stop deployments and investigate.'),
  FERRY_E_DIRECTIVE_RELEASE: spec(400, 'The directive names a release that was not sent or does not match', 'Deploy again; if it repeats, the hub is faulty.'),
  FERRY_E_RELEASE_FLOOR: spec(409, 'The release is below the version floor this agent has seen', 'Deploy a release at or above the floor; rollbacks below a floor are refused by design.'),
  FERRY_E_RELEASE_EXISTS: spec(409, 'That stack version already exists', 'Releases are immutable; publish a new version.'),
  FERRY_E_POLICY_INVALID: spec(400, 'The local policy file is not valid', 'Fix the named setting in the institution\'s policy file (default /etc/ferry/policy.yaml).'),
  FERRY_E_POLICY_REGISTRY: spec(403, 'An image comes from a registry the local policy does not allow', 'Mirror the image to an allowed registry, or have the institution add the registry to its policy.'),
  FERRY_E_POLICY_DIGEST: spec(403, 'An image is not pinned by digest', 'Create the release with `ferry release create`, which pins every image by digest.'),
  FERRY_E_POLICY_COSIGN: spec(403, 'The release lacks the institution\'s required co-signatures', 'Have the institution\'s approvers sign it: `ferry release sign STACK@VERSION --key FILE`.'),
  FERRY_E_POLICY_CONTAINER: spec(403, 'A release asks for more than the local policy lets a container be', 'Nothing was pulled or started. The institution decides: review the release with `ferry-agent policy check --release FILE` and allow what it needs in the policy file\'s containers section, or have the vendor publish a release that needs less.'),
  FERRY_E_POLICY_DIRECT: spec(403, 'The local policy does not allow fetching images from this registry directly', 'Use the hub as the source (bankRegistry.source: hub, the default), or have the institution list the registry under directRegistries in its policy file.'),
  FERRY_E_POLICY_OPERATION: spec(403, 'The local policy does not allow this operation', 'The institution must allow it in its policy file.'),
  FERRY_E_POLICY_WINDOW: spec(409, 'Outside the institution\'s maintenance window', 'Deploy or operate again during a window the local policy allows (see `ferry-agent status`).'),
  FERRY_E_AUDIT_INCONSISTENT: spec(409, 'The audit log is inconsistent with a witnessed checkpoint', 'This is a security alarm: the log was edited, truncated or forked. Keep the agent\'s audit files and investigate.'),
  FERRY_E_DISK_FULL: spec(507, 'Not enough free disk space on the Docker host', 'Free space in the engine\'s data directory (docker system prune, larger disk); the old release keeps running.'),
  FERRY_E_APPLY_TIMEOUT: spec(504, 'The release did not converge in time', 'See `ferry-agent status` for the service that is waiting, and its container logs.'),
  FERRY_E_UNHEALTHY: spec(409, 'A service is unhealthy or not running after the update', 'The agent rolled back to the last good release; fix the release and publish a new version.'),
  FERRY_E_CRASH_LOOP: spec(409, 'A service keeps restarting after the update', 'The agent rolled back to the last good release; see the container logs, fix and publish a new version.'),
  FERRY_E_KEY_FILE: spec(400, 'The key file cannot be used', 'Give a PEM Ed25519 private key made by `ferry key generate`, readable only by you (mode 0600).'),
  FERRY_E_COMPOSE_INVALID: spec(400, 'The compose file cannot be imported', 'Each problem names the file, line and key and what to write instead; README.md lists the compose keys Ferry imports, leaves to the bank\'s policy, ignores and refuses.'),
  FERRY_E_COMPOSE_FILE: spec(400, 'A file of the compose project cannot be read', 'Check the path (--compose, --env-file, include:, extends: or env_file:) and that the file is readable.'),
  FERRY_E_COMPOSE_YAML: spec(400, 'The compose file is not valid YAML', 'Fix the YAML syntax at the named line (indentation, quotes, a duplicate key); `docker compose config` shows the same error.'),
  FERRY_E_BUILD_FAILED: spec(502, 'Building or pushing a service image failed', 'Read the docker output above; check the build context, the Dockerfile and that the --push-to registry accepts pushes.'),
  FERRY_E_SECRET_MISSING: spec(409, 'A secret or config the release needs has no value on this agent host', 'On the agent host, provide it: `ferry-agent secret set NAME --from-file FILE` (or `ferry-agent config set`), or name its file in the local policy; the agent starts the release once it is there.'),
  FERRY_E_SECRET_FILE: spec(500, 'A secret or config value cannot be prepared for its container', 'Check the agent state directory\'s secrets/ and the policy-named file; uid/gid other than the agent\'s own need the agent to run as root.'),
  FERRY_E_REGISTRY_UNREACHABLE: spec(503, 'The registry cannot be reached', 'Check the registry address, network path and proxy settings.'),
  FERRY_E_REGISTRY_AUTH: spec(401, 'The registry refused the credentials', 'Check the credentials for that registry: --registry-user/--registry-password (FERRY_REGISTRY_USER/FERRY_REGISTRY_PASSWORD) for the ferry CLI, bankRegistry username/password in the agent\'s config for the bank\'s registry.'),
  FERRY_E_REGISTRY_DENIED: spec(403, 'The registry does not allow this operation on that repository', 'Give the agent\'s registry account push (and delete, for retention) rights on the vendor prefix (bankRegistry.prefix).'),
  FERRY_E_REGISTRY_QUOTA: spec(507, 'The registry is full or over its quota', 'Free space or raise the quota on the bank\'s registry (delete old images, run its garbage collection); the running release is unchanged and the copy resumes when deployed again.'),
  FERRY_E_REGISTRY_DIGEST: spec(502, 'Content fetched for an image does not match its digest', 'The source (hub, vendor registry, or something in between) served other bytes than were signed; nothing was written to the bank\'s registry. Check for a misbehaving proxy or mirror.'),
  FERRY_E_REGISTRY_FAILED: spec(502, 'The registry failed or answered an operation unexpectedly', 'Read the detail and the registry\'s own log; the copy resumes from where it stopped when retried.'),
  FERRY_E_IMAGE_NOT_FOUND: spec(404, 'The image or tag is not in the registry', 'Push the image first, or correct the image name in the compose file.'),
  FERRY_E_IMAGE_DIGEST: spec(502, 'The pulled image does not have the digest the release pins', 'The registry (or something between it and this host) served other content than was signed: check the registry for tampering or a misbehaving mirror, and do not run the image.'),
  FERRY_E_ENGINE_FAILED: spec(502, 'The Docker engine refused or failed an operation', 'Read the detail; see `docker info` and the dockerd log on the host.'),

  // Hub side
  FERRY_E_DB: spec(500, 'The hub database failed', 'Check disk space and permissions of the data directory; see the hub log.'),
  FERRY_E_DB_UNREACHABLE: spec(503, 'The hub database cannot be reached', 'Check --database (FERRY_HUB_DATABASE): the PostgreSQL server, its address, the database name and the credentials; the hub is not ready until it answers.'),
  FERRY_E_DB_VERSION: spec(500, 'The database was written by a newer hub', 'Run the newer ferry-hub, or restore a backup made by this version.'),
  FERRY_E_HUB_NOT_INITIALISED: spec(500, 'The data directory holds no hub database', 'Run `ferry-hub init --data-dir DIR` first.'),
  FERRY_E_HUB_ALREADY_INITIALISED: spec(409, 'The data directory already holds a hub database', 'Use `ferry-hub serve`, or choose another --data-dir.'),
  FERRY_E_SELECTOR_INVALID: spec(400, 'The agent selector is not valid', 'Write terms joined by commas: tenant=bank-a, env in (prod,dr), id=agt_..., region!=eu, gpu, !legacy (see `ferry rollout create --help`).'),
  FERRY_E_SELECTOR_EMPTY: spec(404, 'The selector matches no agent', 'Check it against `ferry agent ls`; revoked agents are never selected.'),
  FERRY_E_WAVES_INVALID: spec(400, 'The wave specification is not valid', 'Give growing cumulative waves ending at 100%, e.g. --waves 1,10%,50%,100% (counts or percentages of the selected agents).'),
  FERRY_E_ROLLOUT_STATE: spec(409, 'The rollout is not in a state that allows this', 'See `ferry rollout status ID` for its state; finished rollouts cannot be changed.'),
  FERRY_E_ROLLOUT_ACTIVE: spec(409, 'Another active rollout already targets some of these agents for this stack', 'Wait for it to finish, or abort it: `ferry rollout abort ID`.'),
  FERRY_E_CHECK_TIMEOUT: spec(504, 'A check did not answer within its timeout', 'See that the service answers at the address the check names, from the agent host; raise x-ferry.checks.*.timeout if it is only slow.'),
  FERRY_E_VERIFY_FAILED: spec(409, 'A verification job of the release failed', 'Read the job\'s last output lines (`ferry checks ls`, the agent status); the agent rolled the release back to the last good one. Fix the release and deploy a new version.'),
  FERRY_E_VERIFY_TIMEOUT: spec(504, 'A verification job did not finish within its timeout', 'Read its last output lines; raise services.*.x-ferry.verify.timeout if it is only slow. The agent rolled the release back to the last good one.'),
  FERRY_E_WEBHOOK_FAILED: spec(502, 'The alert webhook did not accept an alert', 'Check --alert-webhook (its URL answers 2xx to a POST from the hub) and the hub log; the alert stays in the event stream.'),
  FERRY_E_AGENT_OFFLINE: spec(503, 'The agent is not connected', 'Operations need a live agent: `ferry agent show ID` says when it was last seen; retry once it is connected again.'),
  FERRY_E_OPERATION_TIMEOUT: spec(504, 'The agent did not answer the operation in time', 'It may still be running there: see `ferry operation show ID` and the agent host\'s `ferry-agent status`, then retry if needed.'),
  FERRY_E_CONFIRM_REQUIRED: spec(409, 'An operation on several agents needs its plan confirmed', 'Read the plan (agents and waves) and send it again with its hash: `--yes`, or `confirm` in the API body.'),

  // Remote operations (agent side)
  FERRY_E_OPERATION_INVALID: spec(400, 'The operation is not valid for its target', 'Check the kind, STACK/SERVICE and arguments against `ferry service --help` and what runs on the agent (`ferry agent show ID`).'),
  FERRY_E_OPERATION_BINDING: spec(403, 'The operation is for another tenant or agent', 'The hub sent an operation meant elsewhere; report this to the vendor.'),
  FERRY_E_OPERATION_EXPIRED: spec(403, 'The operation has expired', 'Operations live a minute; send it again. If this repeats, check the clocks of the hub and the agent host (NTP).'),
  FERRY_E_OPERATION_REPLAY: spec(409, 'The operation was already received (a replay)', 'Nothing was done again. Send a new operation if it is still needed.'),
  FERRY_E_POLICY_EXEC: spec(403, 'The local policy does not list this command for the service', 'Only commands named under operations.exec for the service run, with arguments matching their patterns; the institution adds commands to its policy file.'),
  FERRY_E_INTERNAL: spec(500, 'An internal error occurred', 'Retry; if it repeats, report it with the hub log around this time.'),
  FERRY_E_UNAVAILABLE: spec(503, 'The hub is shutting down or not ready', 'Retry in a few seconds.'),

  // Agent bundles and self-upgrade
  FERRY_E_BUNDLE_INVALID: spec(400, 'The agent bundle is not a valid bundle archive', 'Build it with `npm run package` (scripts/package), which writes the archive and its bundle.json; do not repack it by hand.'),
  FERRY_E_BUNDLE_EXISTS: spec(409, 'An agent bundle of that version already exists', 'Bundles are immutable; build and upload a new version.'),
  FERRY_E_BUNDLE_TENANT: spec(403, 'The agent bundle is not signed for this agent\'s tenant', 'Upload the bundle for this tenant too (`ferry agent-bundle upload --tenant T`) and have it signed; nothing was installed.'),
  FERRY_E_BUNDLE_FLOOR: spec(409, 'The agent version is below the floor this agent has seen', 'Roll out an agent version at or above the floor; going back below a floor is refused by design.'),
  FERRY_E_BUNDLE_DIGEST: spec(502, 'The downloaded agent bundle does not match its signed digest', 'The hub (or something between it and this host) served other bytes than were signed; nothing was installed. Check for a misbehaving proxy; the agent downloads it again on the next attempt.'),
  FERRY_E_BUNDLE_STATE_FORMAT: spec(409, 'The agent version cannot read this agent\'s state', 'The bundle reads state formats outside the one this host has (see bundle.json minStateFormat..stateFormat); roll out a version that can migrate from it.'),
  FERRY_E_UPGRADE_UNAVAILABLE: spec(409, 'This agent does not run under the upgrade launcher', 'Install the agent from its package (.deb), or `ferry-agent service install --root /opt/ferry-agent`, so it runs from a versioned directory it can upgrade.'),
  FERRY_E_UPGRADE_LOCKED: spec(409, 'Another upgrade of this agent is in progress', 'Wait for it to finish (`ferry-agent status` shows the pending version); a lock left by a dead process is taken over by itself.'),
  FERRY_E_UPGRADE_DISK: spec(507, 'Not enough free disk space to unpack the agent bundle', 'Free space where the agent is installed (/opt/ferry-agent: old versions no longer kept, other files); the running version is unchanged.'),
  FERRY_E_UPGRADE_CRASHED: spec(409, 'The new agent version exited before it became healthy; the previous version was restored', 'Nothing to do on the host: the previous version and its state are back. Read the reason (the new version\'s last output), fix the bundle and roll out a new version.'),
  FERRY_E_UPGRADE_UNHEALTHY: spec(409, 'The new agent version did not become healthy within its health window; the previous version was restored', 'Nothing to do on the host. The reason says how far it got (connect, authenticate, directive, reconcile); fix the bundle and roll out a new version.'),
  FERRY_E_UPGRADE_INTERRUPTED: spec(409, 'The host or the launcher stopped while the new agent version was on trial; the previous version was restored', 'Roll the version out again to retry; an upgrade is only kept once the new version proved healthy.'),
  FERRY_E_UPGRADE_FAILED: spec(500, 'The agent bundle could not be installed', 'Read the detail (download, unpack, disk); the running version is unchanged and the next directive retries.'),

  // The event stream (GET /v1/events)
  FERRY_E_EVENT_FILTER: spec(400, 'The event stream query is not valid', 'Use rollout=R-<n>, kind= one or more of rollout,wave,target,directive (comma-separated) and since=<event id>, as README.md describes.'),
  FERRY_E_EVENTS_EXPIRED: spec(410, 'Events after the point this client resumed from are no longer kept', 'Re-read the current state (`ferry rollout status ID`); the hub keeps events for 7 days, at most the newest 1,000,000.'),
  // ChatOps (hub/chat/)
  FERRY_E_CHAT_UNKNOWN: spec(400, 'The chat command is not one Ferry knows', 'Type `ferry help` in the room for the commands you may run there; the reply names the closest match.'),
  FERRY_E_CHAT_USAGE: spec(400, 'The chat command is missing an argument or has a wrong one', 'Type `ferry help COMMAND` (e.g. `ferry help rollout create`) for its arguments and an example.'),
  FERRY_E_CHAT_UNLINKED: spec(403, 'This chat account is not linked to a Ferry person', 'Get a one-time code with `ferry user link-chat` (or in the console) and send `ferry link CODE` to the bot; until then only `ferry help` answers.'),
  FERRY_E_CHAT_ROOM_UNBOUND: spec(404, 'This chat room is not bound to Ferry', 'An admin binds it: `ferry chat room bind --transport NAME --room ROOM --tenant T` (or --vendor).'),
  FERRY_E_CHAT_SIGNATURE: spec(401, 'The chat platform request is not signed correctly', "Check the transport's secrets (`ferry chat transport ls`) against the platform's app settings; the hub also refuses requests older than the platform's window."),
  FERRY_E_CHAT_REPLAY: spec(409, 'This chat platform request was already received', 'Nothing was done twice; platforms retry on timeouts and the hub answers each message once.'),
  FERRY_E_CHAT_CONFIRMATION: spec(409, 'The confirmation cannot be used', 'The reply says why (expired, someone else\'s, the plan changed, already used); run the command again for a new plan and code.'),
  FERRY_E_CHAT_MAKER_CHECKER: spec(403, 'A different person with the approver role must approve this', 'Ask a colleague with the approver role on the tenant to send `ferry approve CODE`; the requester cannot approve their own request.'),
  FERRY_E_CHAT_TRANSPORT: spec(502, 'The chat platform refused or failed a message', 'Read the detail (the platform\'s own error code); check the transport and room settings (`ferry chat transport ls`, `ferry chat room ls`); notices are kept and retried.'),
  FERRY_E_CHAT_SECRET: spec(500, 'A chat platform secret cannot be read', 'Give it again (`ferry chat transport add ... --secret-file`), check the named file, or keep the hub data dir\'s signing key that encrypted it.'),
  FERRY_E_LOCKED: spec(409, 'A lock stops deploys to these agents', 'See who locked and why with `ferry lock ls`; deploy after `ferry unlock L-N`, or leave out the locked agents.'),
  FERRY_E_EVENTS_SLOW: spec(503, 'The event stream was closed because the client stopped reading', 'Reconnect with the Last-Event-ID header (the ferry CLI does) to carry on where the stream stopped.'),
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
