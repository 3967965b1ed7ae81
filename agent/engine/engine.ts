// The narrow seam between Ferry and a container engine. Everything the agent
// does to Docker goes through this interface; only docker.ts implements it
// against a real engine (and is the only module that imports dockerode).
import type { EngineFacts } from '../../shared/protocol.js';

export interface Engine {
  /** Engine version and inventory, for the hub's view of the host. */
  info(): Promise<EngineFacts>;
}
