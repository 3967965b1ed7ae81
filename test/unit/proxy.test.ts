import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bypassesProxy, proxyFor, proxyFromEnv } from '../../agent/proxy.js';
import { FerryError } from '../../shared/errors.js';

const hub = new URL('https://hub.vendor.example:7443');

test('https targets use https_proxy, http targets http_proxy; lower case wins', () => {
  const env = proxyFromEnv({ https_proxy: 'http://u:p@proxy:3128', HTTPS_PROXY: 'http://other:1', http_proxy: 'proxy2:8080' });
  assert.equal(proxyFor(hub, env)?.href, 'http://u:p@proxy:3128/');
  assert.equal(proxyFor(new URL('http://hub.vendor.example'), env)?.href, 'http://proxy2:8080/');
  assert.equal(proxyFor(hub, proxyFromEnv({ HTTPS_PROXY: 'http://upper:1' }))?.host, 'upper:1');
  assert.equal(proxyFor(hub, {}), null);
});

test('no_proxy: exact hosts, domain suffixes, wildcards, IPs and ports', () => {
  assert.ok(bypassesProxy(hub, '*'));
  assert.ok(bypassesProxy(hub, 'localhost, hub.vendor.example'));
  assert.ok(bypassesProxy(hub, '.example'));
  assert.ok(bypassesProxy(hub, 'vendor.example'));
  assert.ok(bypassesProxy(hub, '*.vendor.example'));
  assert.ok(bypassesProxy(hub, 'hub.vendor.example:7443'));
  assert.ok(!bypassesProxy(hub, 'hub.vendor.example:443'));
  assert.ok(!bypassesProxy(hub, 'endor.example'));
  assert.ok(!bypassesProxy(hub, 'ub.vendor.example'));
  assert.ok(!bypassesProxy(hub, ''));
  assert.ok(bypassesProxy(new URL('http://127.0.0.1:7443'), '127.0.0.1'));
  assert.ok(bypassesProxy(new URL('http://[::1]:7443'), '::1'));
  assert.equal(proxyFor(hub, { httpsProxy: 'http://proxy:3128', noProxy: 'vendor.example' }), null);
});

test('unsupported proxy schemes are a config error, not a silent direct connection', () => {
  assert.throws(() => proxyFor(hub, { httpsProxy: 'socks5://proxy:1080' }), (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_CONFIG_INVALID');
});
