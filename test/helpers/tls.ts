// A private CA and a hub certificate for 127.0.0.1/localhost, made with the
// openssl tool, as an institution's PKI would issue them.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  caFile: string;
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

export function makePki(dir: string): TestPki {
  const p = (f: string) => join(dir, f);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=Ferry Test CA', '-keyout', p('ca.key'), '-out', p('ca.pem'));
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', p('hub.key'), '-out', p('hub.csr'));
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', p('hub.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', p('ext.cnf'), '-out', p('hub.pem'));
  return { caFile: p('ca.pem'), certFile: p('hub.pem'), keyFile: p('hub.key'), cert: readFileSync(p('hub.pem')), key: readFileSync(p('hub.key')) };
}
