/**
 * Which network addresses deliveries may reach. Private, loopback, link-local,
 * metadata and other special-purpose ranges are refused unless an explicit allow-list
 * names them (local development allows loopback so the mock receiver works).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

const BLOCKED_V4 = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const;
const BLOCKED_V6 = [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23],
  ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const;

export class BlockedAddressError extends Error {
  readonly code = 'EBLOCKEDADDRESS';
  constructor(readonly host: string, readonly address: string) {
    super(`${host} resolves to ${address}, a private or special-purpose address; refused (see HOOKPOST_SSRF_ALLOWLIST)`);
    this.name = 'BlockedAddressError';
  }
}

export interface AddressPolicy {
  /** True when deliveries may connect to this IP address. */
  allows(address: string): boolean;
  /** A `lookup` for net/tls.connect that only ever yields allowed addresses. */
  lookup: LookupFunction;
}

function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', prefixText] = cidr.trim().split('/');
  const version = isIP(address);
  if (version === 0) throw new Error(`not an IP address or CIDR: ${cidr}`);
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const prefix = prefixText === undefined ? (version === 4 ? 32 : 128) : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > (version === 4 ? 32 : 128)) throw new Error(`bad prefix in ${cidr}`);
  return { address, prefix, family };
}

/** `::ffff:10.0.0.1` → `10.0.0.1`; other addresses unchanged. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] ?? address;
}

export function createAddressPolicy(allowlist: readonly string[] = []): AddressPolicy {
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
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const usable = addresses.filter((a) => allows(a.address));
      if (usable.length === 0) {
        return callback(new BlockedAddressError(hostname, addresses[0]?.address ?? '?'), '', 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
      const first = usable[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };

  return { allows, lookup };
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
    dnsLookup(host, { all: true }, (err, list) => {
      clearTimeout(timer);
      resolve(err ? [] : list);
    });
  });
  const refused = addresses.find((a) => !policy.allows(a.address));
  return refused ? { ok: false, reason: `${host} resolves to ${refused.address}, a private or special-purpose address` } : { ok: true };
}
