/**
 * The SSRF guard, pinned down address by address: which IPs the policy refuses (with
 * IPv4 embedded in IPv6 in all its spellings), how URLs are normalised before the check,
 * strict allow-list parsing, and the sender's connect-time check (DNS answers with a
 * refused address, DNS rebinding between create and connect, no redirects, no env proxy).
 */
import { createServer, type Server } from 'node:http';
import type * as Dns from 'node:dns';
import { ADDRCONFIG } from 'node:dns';
import type { LookupAddress } from 'node:dns';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { checkHookUrl, createAddressPolicy } from '../src/address-policy.js';
import { outcomeOf } from '../src/outcome.js';
import { Sender } from '../src/sender.js';

// A fake resolver for names under `.review.test` (each lookup takes the next answer;
// the last one repeats); every other name goes to the real resolver.
const fakeDns = vi.hoisted(() => new Map<string, LookupAddress[][]>());
vi.mock('node:dns', async (importOriginal) => {
  const real = await importOriginal<typeof Dns>();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const lookup = (host: string, options: any, callback: any) => {
    const answers = fakeDns.get(host);
    if (!answers) return real.lookup(host, options, callback);
    const answer = (answers.length > 1 ? answers.shift() : answers[0]) as LookupAddress[];
    setImmediate(() => (options?.all ? callback(null, answer) : callback(null, answer[0]?.address, answer[0]?.family)));
  };
  return { ...real, default: { ...real, lookup }, lookup };
});
const v4 = (address: string): LookupAddress => ({ address, family: 4 });

const strict = createAddressPolicy();

describe('refused addresses', () => {
  const refused = [
    // IPv4 special-purpose ranges
    '0.0.0.0', '0.1.2.3', '10.0.0.1', '100.64.0.1', '100.127.255.254', '127.0.0.1', '127.255.255.254',
    '169.254.169.254', '169.254.0.1', '172.16.0.1', '172.31.255.255', '192.0.0.8', '192.0.2.1', '192.88.99.1',
    '192.168.1.1', '198.18.0.1', '198.19.255.255', '198.51.100.1', '203.0.113.1', '224.0.0.1', '239.255.255.250',
    '240.0.0.1', '255.255.255.255',
    // IPv6 special-purpose ranges
    '::', '::1', 'fc00::1', 'fd00::1', 'fd00:ec2::254', 'fe80::1', 'fe80::1%eth0', 'febf::1', 'fec0::1',
    'ff02::1', 'ff05::2', '2001:db8::1', '100::1', '2001::1', '64:ff9b:1::a00:1',
    // IPv4-mapped, in the dotted and the hex spelling (a socket to these reaches IPv4)
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:7F00:1', '0:0:0:0:0:ffff:127.0.0.1', '::ffff:a9fe:a9fe',
    '::ffff:10.0.0.1', '::ffff:0.0.0.0',
    // IPv4-compatible (deprecated) and IPv4-translated (SIIT) forms of private addresses
    '::7f00:1', '::127.0.0.1', '::a9fe:a9fe', '::ffff:0:7f00:1', '::ffff:0:a00:1',
    // NAT64 (well-known prefix) and 6to4 addresses embedding refused IPv4
    '64:ff9b::7f00:1', '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe', '64:ff9b::a00:1', '64:ff9b::c0a8:101',
    '2002:7f00:1::', '2002:7f00:1::1', '2002:a00:1::1', '2002:a9fe:a9fe::1', '2002:c0a8:101:1::1', '2002::1',
  ];
  test.each(refused)('%s is refused', (address) => {
    expect(strict.allows(address)).toBe(false);
  });

  const allowed = [
    '8.8.8.8', '1.1.1.1', '93.184.215.14', '100.63.255.255', '100.128.0.1', '172.15.255.255', '172.32.0.1',
    '192.167.1.1', '198.17.255.255', '198.20.0.1', '223.255.255.255', '11.0.0.1', '126.255.255.255', '128.0.0.1',
    '2606:4700:4700::1111', '2a00:1450:4001:80b::200e', '::ffff:8.8.8.8', '::ffff:808:808',
    // NAT64 and 6to4 of public IPv4 are how IPv6-only (DNS64) hosts reach ordinary receivers
    '64:ff9b::808:808', '64:ff9b::8.8.8.8', '64:ff9b::5db8:d70e', '2002:808:808::1',
  ];
  test.each(allowed)('%s is allowed', (address) => {
    expect(strict.allows(address)).toBe(true);
  });

  test('garbage is refused, not thrown on', () => {
    for (const s of ['', 'localhost', '127.0.0.1.', '1.2.3', 'fe80::1::2', '::ffff:999.0.0.1']) expect(strict.allows(s), s).toBe(false);
  });
});

describe('the allow-list', () => {
  test('loopback allowed for local development, in every spelling, and nothing more', () => {
    const dev = createAddressPolicy(['127.0.0.0/8', '::1/128']);
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1']) expect(dev.allows(a), a).toBe(true);
    for (const a of ['10.0.0.1', '169.254.169.254', '::ffff:a00:1', 'fd00::1', '::', '0.0.0.0']) expect(dev.allows(a), a).toBe(false);
  });

  test('an allow-listed IPv4 range also covers it through NAT64', () => {
    const p = createAddressPolicy(['10.0.0.0/8']);
    expect(p.allows('64:ff9b::a00:1')).toBe(true);
    expect(p.allows('64:ff9b::c0a8:101')).toBe(false);
  });

  test('single addresses and surrounding blanks are accepted', () => {
    const p = createAddressPolicy([' 10.1.2.3 ', 'fd12::5', '192.168.0.0/16']);
    expect(p.allows('10.1.2.3')).toBe(true);
    expect(p.allows('10.1.2.4')).toBe(false);
    expect(p.allows('fd12::5')).toBe(true);
    expect(p.allows('192.168.44.1')).toBe(true);
  });

  // A typo must stop the service at startup, not widen (or silently drop) the allow-list.
  test.each([
    '10.0.0.0/', // used to parse as /0: every IPv4 address allowed
    '::1/', // used to parse as ::/0: every address allowed
    '10.0.0.0/8/16',
    '10.0.0.0/0x8',
    '10.0.0.0/1e1',
    '10.0.0.0/8.0',
    '10.0.0.0/ 8',
    '10.0.0.0/+8',
    '10.0.0.0/-0', // used to abort the whole process (native assertion in BlockList.addSubnet)
    '10.0.0.0/33',
    'fd00::/129',
    'example.com/8',
    '10.0.0/8',
    '/8',
    '',
    // Host bits set: used to widen to the whole network (10.0.0.5/3 allowed 0.0.0.0/3).
    '10.0.0.5/3',
    '192.168.1.10/16',
    '10.0.0.1/8',
    'fd00::1/64',
    'fe80::1%eth0', // a zone id: ignored before
  ])('%j is a configuration error', (cidr) => {
    expect(() => createAddressPolicy([cidr])).toThrow();
  });
});

describe('create-time URL check', () => {
  const refusedUrls = [
    'http://127.0.0.1/',
    'http://2130706433/', // decimal
    'http://0x7f.1/', // hex, short form
    'http://0x7f000001/',
    'http://017700000001/', // octal
    'http://0177.0.0.1/',
    'http://127.1/',
    'http://127.0.0.1./', // trailing dot
    'http://0/',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/', // WHATWG URL writes it as [::ffff:7f00:1]
    'http://[0:0:0:0:0:ffff:169.254.169.254]/latest/meta-data',
    'http://[::7f00:1]/',
    'http://[64:ff9b::a9fe:a9fe]/',
    'http://[2002:a9fe:a9fe::]/',
    'http://[fd00:ec2::254]/',
    'http://169.254.169.254/latest/meta-data',
    'http://localhost/',
    'HTTP://LOCALHOST:8080/',
  ];
  test.each(refusedUrls)('%s is refused', async (url) => {
    const r = await checkHookUrl(url, strict);
    expect(r.ok).toBe(false);
  });

  test.each([
    ['http://public@127.0.0.1/', /credentials/],
    ['http://user:pw@example.com/', /credentials/],
    ['ftp://example.com/', /http or https/],
    ['file:///etc/passwd', /http or https/],
    ['gopher://127.0.0.1:6379/_', /http or https/],
    ['javascript:alert(1)', /http or https/],
    ['http://[fe80::1%25eth0]/', /absolute URL/], // WHATWG URL has no zone ids
    ['//example.com/', /absolute URL/],
  ])('%s is refused (%s)', async (url, reason) => {
    const r = await checkHookUrl(url, strict);
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(reason) });
  });

  test('a refused name is not told what it resolved to (tenants could map the internal DNS)', async () => {
    const r = await checkHookUrl('http://localhost/', strict);
    expect(r).toEqual({ ok: false, reason: 'localhost resolves to a private or special-purpose address' });
  });

  test('public literals pass, including NAT64 of a public address', async () => {
    for (const url of ['https://93.184.215.14/hook', 'http://[2606:4700:4700::1111]/', 'http://[64:ff9b::808:808]/', 'http://[::ffff:8.8.8.8]/']) {
      expect(await checkHookUrl(url, strict), url).toEqual({ ok: true });
    }
  });

  test('a name with any refused address is refused', async () => {
    fakeDns.set('mixed.review.test', [[v4('93.184.215.14'), v4('10.0.0.7')]]);
    expect(await checkHookUrl('https://mixed.review.test/', strict)).toMatchObject({ ok: false, reason: 'mixed.review.test resolves to a private or special-purpose address' });
    fakeDns.set('public.review.test', [[v4('93.184.215.14')]]);
    expect(await checkHookUrl('https://public.review.test./', strict)).toEqual({ ok: true });
  });
});

describe('connect-time check (the sender)', () => {
  const delivery = { body: '{}', headers: { 'content-type': 'application/json' } };
  let hits: string[] = [];
  let port: number;
  const servers: Server[] = [];
  const listen = (host: string, p: number, name: string) =>
    new Promise<Server>((resolve, reject) => {
      const s = createServer((req, res) => {
        req.resume();
        hits.push(`${name} ${req.url}`);
        if (req.url === '/redirect') return res.writeHead(302, { location: `http://${host}:${p}/landed` }).end();
        res.writeHead(200).end('ok');
      });
      s.once('error', reject);
      s.listen(p, host, () => resolve(s));
    });

  beforeAll(async () => {
    const a = await listen('127.0.0.1', 0, 'a');
    servers.push(a);
    port = (a.address() as AddressInfo).port;
    servers.push(await listen('127.0.0.2', port, 'b'));
  });
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  test('IP literals in every spelling are refused before connecting', async () => {
    const sender = new Sender({ policy: strict, timeoutMs: 1000 });
    hits = [];
    for (const host of ['127.0.0.1', '2130706433', '0x7f.0.0.1', '0177.0.0.1', '127.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '0', '[::]']) {
      const r = await sender.send(`http://${host}:${port}/x`, delivery);
      expect(r.failure?.class, host).toBe('blocked_address');
    }
    expect(hits).toEqual([]);
    await sender.close();
  });

  test('a name is refused on the address actually connected to (DNS rebinding)', async () => {
    fakeDns.set('rebind.review.test', [[v4('93.184.215.14')], [v4('127.0.0.1')]]);
    const url = `http://rebind.review.test:${port}/x`;
    expect(await checkHookUrl(url, strict)).toEqual({ ok: true }); // public at create time
    // The worker's own policy (another process than the API's, its own cache of answers).
    const sender = new Sender({ policy: createAddressPolicy(), timeoutMs: 1000 });
    hits = [];
    expect((await sender.send(url, delivery)).failure?.class).toBe('blocked_address');
    expect(hits).toEqual([]);
    await sender.close();
  });

  test('of several addresses only the allowed ones are connected to', async () => {
    const policy = createAddressPolicy(['127.0.0.2/32']);
    fakeDns.set('two.review.test', [[v4('127.0.0.1'), v4('127.0.0.2')]]);
    const sender = new Sender({ policy, timeoutMs: 1000 });
    hits = [];
    for (let i = 0; i < 3; i++) expect((await sender.send(`http://two.review.test:${port}/x`, delivery)).statusCode).toBe(200);
    expect(hits).toEqual(['b /x', 'b /x', 'b /x']);
    await sender.close();
  });

  test('redirects are answers (failures), not followed', async () => {
    const sender = new Sender({ policy: createAddressPolicy(['127.0.0.0/8']), timeoutMs: 1000 });
    hits = [];
    const r = await sender.send(`http://127.0.0.1:${port}/redirect`, delivery);
    expect(r.statusCode).toBe(302);
    expect(outcomeOf(r)).toBe('failure');
    expect(hits).toEqual(['a /redirect']);
    await sender.close();
  });

  test('HTTP_PROXY / HTTPS_PROXY in the environment are not used', async () => {
    const proxyHits: string[] = [];
    const proxy = createServer((req, res) => {
      proxyHits.push(String(req.url));
      res.writeHead(200).end('proxied');
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const saved = { http: process.env.HTTP_PROXY, https: process.env.HTTPS_PROXY, lower: process.env.http_proxy };
    process.env.HTTP_PROXY = process.env.HTTPS_PROXY = process.env.http_proxy = proxyUrl;
    try {
      const sender = new Sender({ policy: strict, timeoutMs: 1000 });
      expect((await sender.send(`http://localhost:${port}/x`, delivery)).failure?.class).toBe('blocked_address');
      expect((await sender.send('http://10.0.0.1/x', delivery)).failure?.class).toBe('blocked_address');
      await sender.close();
      expect(proxyHits).toEqual([]);
    } finally {
      for (const [k, v] of [['HTTP_PROXY', saved.http], ['HTTPS_PROXY', saved.https], ['http_proxy', saved.lower]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    }
  });
});

describe('name resolution', () => {
  test('one lookup per name at a time, shared by every connection; its answer and its failure are kept a few seconds', async () => {
    // Before, each connection ran its own getaddrinfo: sends to a name whose DNS never
    // answered took every libuv thread, and other tenants' new connections timed out.
    let calls = 0;
    let answer: (list: { address: string; family: number }[]) => void = () => undefined;
    const policy = createAddressPolicy([], (hostname) => {
      calls++;
      if (hostname === 'nxdomain.example') return Promise.reject(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }));
      return new Promise((resolve) => (answer = resolve));
    });
    const lookup = (host: string) =>
      new Promise<{ err: Error | null; address: unknown }>((resolve) => policy.lookup(host, { all: true }, (err, address) => resolve({ err, address })));
    const waiting = Array.from({ length: 32 }, () => lookup('slow-dns.example'));
    expect(calls).toBe(1);
    answer([{ address: '93.184.216.34', family: 4 }]);
    for (const r of await Promise.all(waiting)) expect(r).toEqual({ err: null, address: [{ address: '93.184.216.34', family: 4 }] });
    await lookup('slow-dns.example');
    expect(calls).toBe(1); // kept
    expect((await lookup('nxdomain.example')).err).toMatchObject({ code: 'ENOTFOUND' });
    expect((await lookup('nxdomain.example')).err).toMatchObject({ code: 'ENOTFOUND' });
    expect(calls).toBe(2); // the failure kept too
    expect(await policy.resolveAll('nxdomain.example')).toEqual([]);
    // The create-time check and a connection (net passes ADDRCONFIG on Linux) share one answer.
    const checked = policy.resolveAll('checked.example');
    answer([{ address: '93.184.216.35', family: 4 }]);
    await checked;
    const before = calls;
    await new Promise((resolve) => policy.lookup('checked.example', { all: true, hints: ADDRCONFIG }, resolve));
    expect(calls).toBe(before);
  });
});
