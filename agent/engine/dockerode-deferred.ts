// Imported by docker.ts just before dockerode, for its side effect: two
// modules that dockerode and docker-modem require at load time, and that the
// agent never uses on a unix socket, are loaded on first use instead.
//   - docker-modem/lib/ssh.js pulls in ssh2, whose poly1305 WebAssembly
//     instance alone holds about 16 MB (ssh:// DOCKER_HOST only);
//   - dockerode/lib/session.js pulls in @grpc/grpc-js and protobufjs, about
//     12 MB (BuildKit sessions, for image builds only).
// Together they were 28 MB of the idle agent's RSS (bench/README.md, the
// reconcile section). Each stand-in is a function with the real module's call
// shape that loads the real module the first time it is called, so a
// DOCKER_HOST=ssh://… still works. If dockerode changes its file layout the
// paths no longer resolve and nothing is deferred: more memory, same behaviour.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The modules deferred, as resolved from dockerode's own location. */
export const DEFERRED: readonly string[] = defer();

function defer(): string[] {
  const done: string[] = [];
  let dockerodeMain: string;
  try {
    dockerodeMain = require.resolve('dockerode');
  } catch {
    return done;
  }
  const fromDockerode = createRequire(dockerodeMain);
  const targets: (() => string)[] = [
    () => fromDockerode.resolve('./session.js'), // dockerode/lib/session.js
    () => createRequire(fromDockerode.resolve('docker-modem')).resolve('./ssh.js'), // docker-modem/lib/ssh.js
  ];
  for (const resolve of targets) {
    let file: string;
    try {
      file = resolve();
    } catch {
      continue;
    }
    if (require.cache[file]) continue; // already loaded for real
    let real: ((...args: unknown[]) => unknown) | undefined;
    const standIn = function (this: unknown, ...args: unknown[]): unknown {
      if (!real) {
        const cached = require.cache[file];
        delete require.cache[file];
        try {
          real = require(file) as (...a: unknown[]) => unknown;
        } finally {
          if (cached) require.cache[file] = cached;
        }
      }
      return real.apply(this, args);
    };
    const mod = { id: file, filename: file, loaded: true, exports: standIn, children: [], paths: [], path: file } as unknown as NodeJS.Module;
    require.cache[file] = mod;
    done.push(file);
  }
  return done;
}
