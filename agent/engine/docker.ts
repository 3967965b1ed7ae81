// The Engine implemented against a real Docker engine, through dockerode.
import Docker from 'dockerode';
import { FerryError } from '../../shared/errors.js';
import type { EngineFacts } from '../../shared/protocol.js';
import type { Engine } from './engine.js';

export interface DockerEngineOptions {
  /** unix socket path; by default DOCKER_HOST or /var/run/docker.sock. */
  socketPath?: string;
  /** Timeout for each engine call, ms. */
  timeoutMs?: number;
}

export class DockerEngine implements Engine {
  private readonly docker: Docker;

  constructor(opts: DockerEngineOptions = {}) {
    const timeout = opts.timeoutMs ?? 10_000;
    this.docker = opts.socketPath ? new Docker({ socketPath: opts.socketPath, timeout }) : new Docker({ timeout });
  }

  async info(): Promise<EngineFacts> {
    try {
      const [v, i] = await Promise.all([this.docker.version(), this.docker.info()]);
      return {
        version: String(v.Version ?? ''),
        apiVersion: String(v.ApiVersion ?? ''),
        os: String(i.OperatingSystem ?? v.Os ?? ''),
        arch: String(i.Architecture ?? v.Arch ?? ''),
        kernel: String(i.KernelVersion ?? v.KernelVersion ?? ''),
        containers: Number(i.Containers ?? 0),
        containersRunning: Number(i.ContainersRunning ?? 0),
        images: Number(i.Images ?? 0),
        storageDriver: String(i.Driver ?? ''),
      };
    } catch (err) {
      throw engineError(err);
    }
  }
}

function engineError(err: unknown): FerryError {
  const e = err as NodeJS.ErrnoException & { statusCode?: number };
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EACCES' || e.code === 'ETIMEDOUT') {
    return new FerryError('FERRY_E_ENGINE_UNREACHABLE', `${e.code}: ${e.message}`, { cause: err });
  }
  return new FerryError('FERRY_E_INTERNAL', `docker: ${e.message}`, { cause: err });
}
