// Each chat platform's signing against vectors: Slack's published example,
// Feishu's published decryption example, and for the rest values computed
// independently of this code (Python's hmac/hashlib and the openssl CLI, at
// the time the test was written; the commands are in test/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../shared/errors.js';
import {
  dingtalkSign,
  dingtalkUrl,
  feishuCallbackSignature,
  feishuDecrypt,
  feishuEncrypt,
  feishuSign,
  feishuSigned,
  slackSignature,
  verifyDingtalk,
  verifySlack,
  verifyWebhook,
  verifyWecom,
  webhookSignature,
  wecomDecrypt,
  wecomEncrypt,
  wecomSignature,
} from '../../hub/chat/signing.js';

// api.slack.com/authentication/verifying-requests-from-slack
const SLACK = {
  secret: '8f742231b10e8888abcd99yyyzzz85a5',
  ts: '1531420618',
  body: 'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
  sig: 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
};

const refused = (fn: () => void, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof FerryError && e.code === 'FERRY_E_CHAT_SIGNATURE' && re.test(e.message));

test("Slack: the published example verifies; a changed body, an old or future timestamp do not", () => {
  assert.equal(slackSignature(SLACK.secret, SLACK.ts, SLACK.body), SLACK.sig);
  const at = Number(SLACK.ts) * 1000;
  verifySlack(SLACK.secret, { timestamp: SLACK.ts, signature: SLACK.sig }, SLACK.body, at + 299_000);
  refused(() => verifySlack(SLACK.secret, { timestamp: SLACK.ts, signature: SLACK.sig }, SLACK.body + '&x=1', at), /does not match/);
  refused(() => verifySlack(SLACK.secret, { timestamp: SLACK.ts, signature: SLACK.sig }, SLACK.body, at + 301_000), /more than 300 s/);
  refused(() => verifySlack(SLACK.secret, { timestamp: SLACK.ts, signature: SLACK.sig }, SLACK.body, at - 301_000), /more than 300 s/);
  refused(() => verifySlack(SLACK.secret, { timestamp: SLACK.ts }, SLACK.body, at), /does not match/);
});

// python3: base64(hmac.new(secret, f"{ts}\n{secret}", sha256)) and base64(hmac.new(f"{ts}\n{secret}", b"", sha256))
const DING = { secret: 'SECb5d3c2e0f1a4978b6c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2', ts: 1700000000000, sign: 'I0lAa1iwZxcmMSGF5AJw2MfXKgOrvzwgwTMEWUqjgdg=', encoded: 'I0lAa1iwZxcmMSGF5AJw2MfXKgOrvzwgwTMEWUqjgdg%3D' };
const FEISHU = { secret: 'feishu-bot-secret-Qw3rTy', ts: 1700000000, sign: 'Xje2iltmZLN1nwUe+JZidiM/cRbo4c/FKZwem8KfSyQ=' };

test('DingTalk robot: HmacSHA256 keyed by the secret over "timestamp\\nsecret", milliseconds, URL-encoded', () => {
  assert.equal(dingtalkSign(DING.secret, DING.ts), DING.sign);
  const url = dingtalkUrl('https://oapi.dingtalk.com/robot/send?access_token=abc', DING.secret, DING.ts);
  assert.ok(url.endsWith(`access_token=abc&timestamp=${DING.ts}&sign=${DING.encoded}`), url);
  verifyDingtalk(DING.secret, { timestamp: String(DING.ts), sign: DING.sign }, DING.ts + 3_000_000);
  refused(() => verifyDingtalk(DING.secret, { timestamp: String(DING.ts), sign: DING.sign }, DING.ts + 3_700_000), /more than 3600 s/);
  refused(() => verifyDingtalk('SECother', { timestamp: String(DING.ts), sign: DING.sign }, DING.ts), /does not match/);
});

test('Feishu bot: HmacSHA256 keyed by "timestamp\\nsecret" over an empty message, seconds', () => {
  assert.equal(feishuSign(FEISHU.secret, FEISHU.ts), FEISHU.sign);
  assert.deepEqual(feishuSigned(FEISHU.secret, FEISHU.ts * 1000 + 999), { timestamp: String(FEISHU.ts), sign: FEISHU.sign });
  assert.deepEqual(feishuSigned(undefined, 0), {});
});

test("DingTalk's and Feishu's schemes are not each other's (this fails if they are swapped)", () => {
  // The same secret and moment, each platform's own construction and unit of time.
  const s = 'shared-secret';
  const ms = 1700000000000;
  assert.notEqual(dingtalkSign(s, ms), feishuSign(s, ms / 1000));
  assert.notEqual(dingtalkSign(s, ms / 1000), feishuSign(s, ms / 1000), 'even in the same unit the key and message differ');
  assert.notEqual(dingtalkSign(DING.secret, DING.ts), feishuSign(DING.secret, DING.ts));
  assert.notEqual(feishuSign(FEISHU.secret, FEISHU.ts), dingtalkSign(FEISHU.secret, FEISHU.ts));
});

test('Feishu callbacks: the published decryption example, the signature over timestamp+nonce+key+body', () => {
  // open.feishu.cn, "Encrypt Key": "test key" decrypts this to "hello world".
  assert.equal(feishuDecrypt('test key', 'P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk='), 'hello world');
  assert.equal(feishuDecrypt('k2', feishuEncrypt('k2', '{"a":"中文"}')), '{"a":"中文"}');
  refused(() => feishuDecrypt('wrong key', 'P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk='), /cannot decrypt/);
  // python3: sha256("1700000000" + "nonce-abc" + "encrypt-key-1" + body).hexdigest()
  assert.equal(feishuCallbackSignature('1700000000', 'nonce-abc', 'encrypt-key-1', '{"encrypt":"x"}'), 'a60f8ee13df76ccccbe225c042486fa4b36300cb791def1117cb4382d8843f4e');
});

// openssl enc -aes-256-cbc -nopad -K <key> -iv <key[:16]> over random(16) + len + msg + receiveid, padded to 32.
const WECOM = {
  aesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C',
  receiveId: 'wx5823bf96d3bd56c7',
  msg: '<xml><Content><![CDATA[ferry agents]]></Content></xml>',
  ct: 'sKqRbbiSUnDhFHOvPjtUMQ9mFtz8gE7WftUfmbU8BDJ9umg1n0LSlDzp45Q2KgDi6KpEeVNBjLRFjgjsGUGhBj1qq1/NffHGEvMaP5d3MCG+pY6XeWdKqqfSoXiuFPus',
  token: 'QDG6eK',
  timestamp: '1409659813',
  nonce: '1372623149',
  sig: 'c030f3d50d082a9e13376ce3726e6b63f5d30a99',
};

test('WeCom callbacks: WXBizMsgCrypt signature and AES, both ways', () => {
  assert.equal(wecomSignature(WECOM.token, WECOM.timestamp, WECOM.nonce, WECOM.ct), WECOM.sig);
  assert.deepEqual(wecomDecrypt(WECOM.aesKey, WECOM.ct), { message: WECOM.msg, receiveId: WECOM.receiveId });
  assert.equal(wecomEncrypt(WECOM.aesKey, WECOM.msg, WECOM.receiveId, Buffer.from('0123456789abcdef')), WECOM.ct);
  const at = Number(WECOM.timestamp) * 1000;
  verifyWecom(WECOM.token, { msg_signature: WECOM.sig, timestamp: WECOM.timestamp, nonce: WECOM.nonce }, WECOM.ct, at + 60_000);
  refused(() => verifyWecom(WECOM.token, { msg_signature: WECOM.sig, timestamp: WECOM.timestamp, nonce: 'other' }, WECOM.ct, at), /does not match/);
  refused(() => verifyWecom(WECOM.token, { msg_signature: WECOM.sig, timestamp: WECOM.timestamp, nonce: WECOM.nonce }, WECOM.ct, at + 301_000), /more than 300 s/);
});

test("Ferry's webhook: v1 HMAC-SHA256 of timestamp.body", () => {
  // python3: hmac.new(b'hook-secret', b'1700000000000.{"a":1}', sha256).hexdigest()
  assert.equal(webhookSignature('hook-secret', 1700000000000, '{"a":1}'), 'v1=9318bdc20fb95d76c653fd206fb8eeadfcc3fbf0ccf69579cb003f6d84f8eb64');
  verifyWebhook('hook-secret', { timestamp: '1700000000000', signature: 'v1=9318bdc20fb95d76c653fd206fb8eeadfcc3fbf0ccf69579cb003f6d84f8eb64' }, '{"a":1}', 1700000000000);
  refused(() => verifyWebhook('hook-secret', { timestamp: '1700000000000', signature: 'v1=9318bdc20fb95d76c653fd206fb8eeadfcc3fbf0ccf69579cb003f6d84f8eb64' }, '{"a":2}', 1700000000000), /does not match/);
});
