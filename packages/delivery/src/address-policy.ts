/**
 * Which network addresses deliveries may reach. Private, loopback, link-local,
 * metadata and other special-purpose ranges are refused unless an explicit allow-list
 * names them (local development allows loopback so the mock receiver works).
 */
import { ADDRCONFIG, lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

const BLOCKED_V4 = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const;
// ::/96 (unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d) and
// ::ffff:0:0:0/96 (SIIT IPv4-translated) are refused whole. NAT64 64:ff9b::/96 and 6to4
// 2002::/16 are not listed: they are judged by the IPv4 address they embed (see
// embeddedV4), so 6to4 of 10.0.0.1 is refused while NAT64 of a public address, how
// IPv6-only (DNS64) hosts reach IPv4 receivers, is allowed.
const BLOCKED_V6 = [
  ['::', 96], ['::ffff:0:0:0', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23],
  ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const;

/**
 * A connection refused by the policy. The message (which reaches API clients and the attempt
 * log) does not say which address a name resolved to: tenants could map the internal DNS
 * with it. `address` keeps it for the operator's logs.
 */
export class BlockedAddressError extends Error {
  readonly code = 'EBLOCKEDADDRESS';
  constructor(readonly host: string, readonly address: string) {
    super(`${host} resolves to a private or special-purpose address; refused (see HOOKPOST_SSRF_ALLOWLIST)`);
    this.name = 'BlockedAddressError';
  }
}

export interface AddressPolicy {
  /** True when deliveries may connect to this IP address. */
  allows(address: string): boolean;
  /** A `lookup` for net/tls.connect that only ever yields allowed addresses. */
  lookup: LookupFunction;
  /** Every address a name resolves to (shared and cached as for `lookup`); [] when it does not resolve. */
  resolveAll(hostname: string): Promise<LookupAddress[]>;
}

/** How a policy resolves names: dns.lookup (getaddrinfo) unless a test gives its own. */
export type ResolveHost = (hostname: string, family: number, hints: number) => Promise<LookupAddress[]>;

const systemResolve: ResolveHost = (hostname, family, hints) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, family, hints }, (err, list) => (err ? reject(err) : resolve(list))));

/** How long a name's addresses are reused, and how long a failure to resolve it is. */
const RESOLVED_TTL_MS = 30_000;
const UNRESOLVED_TTL_MS = 5_000;

/**
 * Name resolution shared by every connection of the process: one lookup per name at a time,
 * its answer (or its failure) kept a few seconds. getaddrinfo runs on libuv's thread pool (4
 * threads) and cannot be cancelled: sends to a name whose DNS never answers, each starting
 * its own lookup, held every thread until the resolver gave up (~10 s), and every other
 * tenant's new connections (and the poller's) timed out meanwhile.
 */
function sharedResolver(resolveHost: ResolveHost) {
  const known = new Map<string, { until: number; answer: Promise<LookupAddress[]> }>();
  return (hostname: string, family: number, hints: number): Promise<LookupAddress[]> => {
    const key = `${family}|${hints}|${hostname.toLowerCase()}`;
    const now = Date.now();
    const hit = known.get(key);
    if (hit && hit.until > now) return hit.answer;
    if (known.size >= 10_000) known.clear();
    const answer = resolveHost(hostname, family, hints);
    // In flight: shared until it settles; then kept for the TTL of its outcome.
    const entry = { until: Number.POSITIVE_INFINITY, answer };
    known.set(key, entry);
    answer.then(
      () => (entry.until = Date.now() + RESOLVED_TTL_MS),
      () => (entry.until = Date.now() + UNRESOLVED_TTL_MS),
    );
    return answer;
  };
}

function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', prefixText, ...rest] = cidr.trim().split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) throw new Error(`not an IP address or CIDR: ${cidr}`);
  const family = version === 4 ? 'ipv4' : 'ipv6';
  // Digits only: Number() would read '' (as in '10.0.0.0/') as 0, i.e. allow every
  // address, and also take ' 8', '0x8', '1e1', '8.0'; '-0' even aborts the process in
  // BlockList.addSubnet. A typo must be a configuration error, never a wider allow-list.
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) throw new Error(`bad prefix in ${cidr}`);
  const prefix = prefixText === undefined ? (version === 4 ? 32 : 128) : Number(prefixText);
  if (prefix > (version === 4 ? 32 : 128)) throw new Error(`bad prefix in ${cidr}`);
  // A zone id names no range; an address with host bits set (`10.0.0.5/3`, meant as /32) was
  // taken as its whole network (0.0.0.0/3).
  if (address.includes('%')) throw new Error(`a zone id is no range: ${cidr}`);
  const bits = version === 4 ? address.split('.').flatMap((o) => byteBits(Number(o))) : ipv6Groups(address).flatMap((g) => [...byteBits(g >> 8), ...byteBits(g & 255)]);
  if (bits.slice(prefix).some((b) => b === 1)) throw new Error(`host bits set past /${prefix} in ${cidr}: write the network address`);
  return { address, prefix, family };
}

/** The 8 bits of a byte, most significant first. */
function byteBits(byte: number): number[] {
  return Array.from({ length: 8 }, (_, i) => (byte >> (7 - i)) & 1);
}

/** The eight 16-bit groups of a valid IPv6 address (zone id dropped). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%')[0] ?? '';
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const first = head ? head.split(':') : [];
  const last = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - first.length - last.length).fill('0');
  return [...first, ...zeros, ...last].map((g) => parseInt(g, 16));
}

/**
 * The IPv4 address a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address leads to: a
 * connection to one reaches that IPv4 address (through a translator or relay), so it is
 * allowed or refused as that address is.
 */
function embeddedV4(address: string): string | undefined {
  const g = ipv6Groups(address);
  const quad = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0) return quad(g[6] ?? 0, g[7] ?? 0);
  if (g[0] === 0x2002) return quad(g[1] ?? 0, g[2] ?? 0);
  return undefined;
}

/** `::ffff:10.0.0.1` → `10.0.0.1`; other addresses unchanged. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] ?? address;
}

export function createAddressPolicy(allowlist: readonly string[] = [], resolveHost: ResolveHost = systemResolve): AddressPolicy {
  const resolve = sharedResolver(resolveHost);
  const blocked = new BlockList();
  for (const [a, p] of BLOCKED_V4) blocked.addSubnet(a, p, 'ipv4');
  for (const [a, p] of BLOCKED_V6) blocked.addSubnet(a, p, 'ipv6');
  const allowed = new BlockList();
  for (const cidr of allowlist) {
    const { address, prefix, family } = parseCidr(cidr);
    allowed.addSubnet(address, prefix, family);
  }

  const decide = (raw: string): boolean => {
    const address = unmapped(raw);
    const version = isIP(address);
    if (version === 0) return false;
    const family = version === 4 ? 'ipv4' : 'ipv6';
    if (allowed.check(address, family)) return true;
    const inner = version === 6 ? embeddedV4(address) : undefined;
    if (inner !== undefined) return decide(inner);
    return !blocked.check(address, family);
  };
  // The lists never change: remember answers (every send to an IP-literal URL asks).
  const decided = new Map<string, boolean>();
  const allows = (raw: string): boolean => {
    let answer = decided.get(raw);
    if (answer === undefined) {
      answer = decide(raw);
      if (decided.size >= 10_000) decided.clear();
      decided.set(raw, answer);
    }
    return answer;
  };

  const lookup: LookupFunction = (hostname, options, callback) => {
    resolve(hostname, typeof options.family === 'number' ? options.family : 0, options.hints ?? 0).then(
      (addresses) => {
        const usable = addresses.filter((a) => allows(a.address));
        if (usable.length === 0) {
          return callback(new BlockedAddressError(hostname, addresses[0]?.address ?? '?'), '', 0);
        }
        if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
        const first = usable[0] as LookupAddress;
        callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
  // With the hints net.connect passes on Linux for an unspecified family (ADDRCONFIG): the
  // create-time check and the first send then share one lookup and its answer.
  const resolveAll = (hostname: string) => resolve(hostname, 0, ADDRCONFIG).catch((): LookupAddress[] => []);

  return { allows, lookup, resolveAll };
}

export type UrlCheck = { ok: true } | { ok: false; reason: string };

/**
 * Create-time check of a hook URL: http(s) only; an IP literal must be allowed; a host
 * name must not resolve to a refused address. A name that does not resolve now passes
 * (it is checked again, on the address actually connected to, at delivery time).
 */
export async function checkHookUrl(url: string, policy: AddressPolicy, timeoutMs = 2000): Promise<UrlCheck> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: 'must be an absolute URL' };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return { ok: false, reason: 'must use http or https' };
  if (parsed.username || parsed.password) return { ok: false, reason: 'must not carry credentials' };
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) {
    return policy.allows(host) ? { ok: true } : { ok: false, reason: `${host} is a private or special-purpose address` };
  }
  const addresses = await new Promise<LookupAddress[]>((resolve) => {
    const timer = setTimeout(() => resolve([]), timeoutMs);
    void policy.resolveAll(host).then((list) => {
      clearTimeout(timer);
      resolve(list);
    });
  });
  const refused = addresses.find((a) => !policy.allows(a.address));
  // Which address is not said (see BlockedAddressError).
  return refused ? { ok: false, reason: `${host} resolves to a private or special-purpose address` } : { ok: true };
}
