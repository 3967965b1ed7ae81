// The Node flags the agent runs with: in its systemd unit, in the quickstart,
// in the tests that run it as a process and in bench/reconcile's idle figure.
//
// --jitless: V8 interprets and never allocates executable memory. The agent
// does little JavaScript work (a reconcile pass is Docker API calls; Ed25519
// and SHA-256 are OpenSSL), so the JIT bought nothing but memory: idle RSS
// went from about 71-79 MB to about 60 MB (bench/README.md, reconcile d), and
// the unit can set MemoryDenyWriteExecute=yes. What it costs: no WebAssembly,
// which only an ssh:// DOCKER_HOST would need (ssh2); the agent talks to the
// local engine's unix socket. --no-expose-wasm says so outright; without it V8
// warns on every start that it turned WebAssembly off for --jitless.
export const AGENT_NODE_FLAGS: readonly string[] = ['--jitless', '--no-expose-wasm'];
