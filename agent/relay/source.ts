// Where the relay reads an image from. By default the hub's registry origin
// (`{hub}/agent/v1/registry/v2/<image name>/…`), the agent's only outbound
// destination, every request signed with the agent's key (shared/auth.ts,
// signRequest). With bankRegistry.source: direct, the vendor's registry
// itself, but only a registry the institution's policy lists under
// directRegistries; its credentials come from the agent config's
// `registries`, and loopback registries are spoken to over plain http.
import { REGISTRY_PATH, hostOf, signRequest } from '../../shared/auth.js';
import { FerryError } from '../../shared/errors.js';
import type { KeyPair } from '../../shared/keys.js';
import type { AgentConfig } from '../config.js';
import type { Policy } from '../policy.js';
import { RegistryClient } from './registry.js';
import type { PinnedImage } from './relay.js';
import type { Fetch } from './transfer.js';

export interface SourceOptions {
  cfg: AgentConfig;
  policy: Policy;
  hubUrl: string;
  agentId: string;
  key: KeyPair;
  now?: () => number;
}

export function relaySource(o: SourceOptions): { source: (image: PinnedImage) => Fetch; close: () => void } {
  const clients = new Map<string, RegistryClient>();
  const client = (key: string, make: () => RegistryClient) => {
    let c = clients.get(key);
    if (!c) clients.set(key, (c = make()));
    return c;
  };
  const now = o.now ?? Date.now;
  const hubHost = hostOf(o.hubUrl);
  const source = (image: PinnedImage): Fetch => {
    if (o.cfg.bankRegistry?.source === 'direct') {
      if (!o.policy.directRegistries.includes(image.registry)) {
        throw new FerryError('FERRY_E_POLICY_DIRECT', `${image.registry} (policy ${o.policy.source ?? 'absent'} allows ${o.policy.directRegistries.join(', ') || 'none'})`);
      }
      const creds = o.cfg.registries[image.registry];
      const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(image.registry);
      const url = `${loopback ? 'http' : 'https'}://${image.registry === 'docker.io' ? 'registry-1.docker.io' : image.registry}`;
      return { client: client(image.registry, () => new RegistryClient({ url, auth: { kind: 'challenge', ...(creds ? creds : {}) }, proxy: o.cfg.proxy })), name: image.repository };
    }
    const hub = client('hub', () => new RegistryClient({
      url: new URL(REGISTRY_PATH, o.hubUrl).href,
      auth: { kind: 'signed', headers: (method, url) => signRequest({ method, path: url.pathname + url.search, host: hubHost, agentId: o.agentId, time: now() }, o.key.secretKey) },
      proxy: o.cfg.proxy,
      ...(o.cfg.caFile ? { caFile: o.cfg.caFile } : {}),
    }));
    return { client: hub, name: image.name };
  };
  return { source, close: () => clients.forEach((c) => c.close()) };
}
