import { createHash } from 'node:crypto';

/** A seeded PRNG (sfc32): returns floats in [0, 1). */
export type Rng = () => number;

/** A deterministic PRNG seeded from any string (sha256 → sfc32). */
export function seededRng(seed: string): Rng {
  const h = createHash('sha256').update(seed).digest();
  let a = h.readUInt32LE(0);
  let b = h.readUInt32LE(4);
  let c = h.readUInt32LE(8);
  let d = h.readUInt32LE(12);
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

export const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
export const int = (rng: Rng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1));

const ID_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
export function makeId(rng: Rng, prefix: string): string {
  let s = prefix;
  for (let i = 0; i < 12; i++) s += ID_ALPHABET[Math.floor(rng() * ID_ALPHABET.length)];
  return s;
}

/** The free-form fields of a record (everything but id and the timestamps). */
export type Fields = Record<string, unknown>;

/** What a generator needs to know about an account to make plausible records. */
export interface SeedContext {
  /** A random live id of an object type (for company_id, manager_id, …), null when it has none. */
  randomId(objectType: string): string | null;
  owners: readonly string[];
}

export interface ObjectType {
  name: string;
  idPrefix: string;
  /** Fields `filter[<name>]` may name (string equality on the record's value). */
  filterable: readonly string[];
  /** A new record's fields (without `raw`). */
  make(rng: Rng, ctx: SeedContext): Fields;
  /** Fields to merge into an existing record for a plausible update. */
  mutate(rng: Rng, current: Fields, ctx: SeedContext): Fields;
  /** The vendor's own shape of a record, derived from its fields (sent as `raw` unless a record has its own). */
  raw(fields: Fields): Fields;
}

const FIRST = ['Ada', 'Grace', 'Alan', 'Linus', 'Margaret', 'Edsger', 'Barbara', 'Ken', 'Radia', 'Donald', 'Frances', 'John', 'Katherine', 'Dennis', 'Hedy', 'Tim', 'Shafi', 'Leslie', 'Sophie', 'Guido'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Torvalds', 'Hamilton', 'Dijkstra', 'Liskov', 'Thompson', 'Perlman', 'Knuth', 'Allen', 'McCarthy', 'Johnson', 'Ritchie', 'Lamarr', 'Berners-Lee', 'Goldwasser', 'Lamport', 'Wilson', 'van Rossum'];
const CO_A = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Vandelay', 'Stark', 'Wayne', 'Tyrell', 'Cyberdyne', 'Soylent', 'Wonka', 'Aperture', 'Massive', 'Oscorp'];
const CO_B = ['Labs', 'Industries', 'Systems', 'Corp', 'Holdings', 'Dynamics', 'Networks', 'Partners', 'Group', 'Works'];
const INDUSTRIES = ['software', 'manufacturing', 'retail', 'finance', 'healthcare', 'logistics', 'media'];
const CONTACT_TYPES = ['lead', 'customer', 'partner', 'vendor'];
const LIFECYCLE: Record<string, string> = { lead: 'lead', customer: 'customer', partner: 'other', vendor: 'other' };
const STAGES = ['qualification', 'discovery', 'proposal', 'negotiation', 'closed_won', 'closed_lost'];
const DEPARTMENTS = ['engineering', 'sales', 'marketing', 'finance', 'people', 'support', 'operations'];
const EMPLOYMENT = ['active', 'active', 'active', 'active', 'on_leave', 'terminated'];

const personName = (rng: Rng) => ({ first: pick(rng, FIRST), last: pick(rng, LAST) });
const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '');
const optionalId = (rng: Rng, ctx: SeedContext, objectType: string, nullChance = 0.1): string | null =>
  rng() < nullChance ? null : ctx.randomId(objectType);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

function companyRaw(f: Fields): Fields {
  return {
    object: 'company',
    properties: { name: f.name ?? null, domain: f.domain ?? null, industry: f.industry ?? null, hubspot_owner_id: f.owner_id ?? null },
    archived: false,
  };
}

function contactRaw(f: Fields): Fields {
  const [firstname = '', ...rest] = str(f.name).split(' ');
  const emails = Array.isArray(f.emails) ? (f.emails as { email?: unknown }[]) : [];
  return {
    object: 'contact',
    properties: {
      firstname,
      lastname: rest.join(' '),
      email: emails[0]?.email ?? null,
      lifecyclestage: LIFECYCLE[str(f.type)] ?? 'other',
      associatedcompanyid: f.company_id ?? null,
      hubspot_owner_id: f.owner_id ?? null,
    },
    archived: false,
  };
}

function dealRaw(f: Fields): Fields {
  return {
    object: 'deal',
    properties: {
      dealname: f.name ?? null,
      amount: typeof f.amount === 'number' ? f.amount.toFixed(2) : null,
      dealstage: f.stage ?? null,
      hubspot_owner_id: f.owner_id ?? null,
    },
    associations: { companies: f.company_id ? [f.company_id] : [] },
    archived: false,
  };
}

function employeeRaw(f: Fields): Fields {
  const [first = '', ...rest] = str(f.name).split(' ');
  return {
    resource: 'worker',
    personal: { legal_first_name: first, legal_last_name: rest.join(' ') },
    job: { department: f.department ?? null, status: str(f.employment_status).toUpperCase(), reports_to: f.manager_id ?? null },
  };
}

export const OBJECT_TYPES: Record<string, ObjectType> = {
  crm_company: {
    name: 'crm_company',
    raw: companyRaw,
    idPrefix: 'co_',
    filterable: ['id', 'name', 'domain', 'industry', 'owner_id'],
    make(rng, ctx) {
      const name = `${pick(rng, CO_A)} ${pick(rng, CO_B)}`;
      return { name, domain: `${slug(name)}${int(rng, 1, 999)}.example`, industry: pick(rng, INDUSTRIES), owner_id: pick(rng, ctx.owners) };
    },
    mutate(rng, _cur, ctx) {
      const change: Fields = rng() < 0.5 ? { owner_id: pick(rng, ctx.owners) } : { industry: pick(rng, INDUSTRIES) };
      return change;
    },
  },
  crm_contact: {
    name: 'crm_contact',
    raw: contactRaw,
    idPrefix: 'con_',
    filterable: ['id', 'name', 'company_id', 'owner_id', 'type'],
    make(rng, ctx) {
      const { first, last } = personName(rng);
      const emails = [{ email: `${slug(first)}.${slug(last)}${int(rng, 1, 99)}@example.com`, type: 'work' }];
      if (rng() < 0.3) emails.push({ email: `${slug(first)}${int(rng, 100, 999)}@mail.example`, type: 'personal' });
      const f = { name: `${first} ${last}`, emails, company_id: optionalId(rng, ctx, 'crm_company'), owner_id: pick(rng, ctx.owners), type: pick(rng, CONTACT_TYPES) };
      return f;
    },
    mutate(rng, cur, ctx) {
      const r = rng();
      const change: Fields =
        r < 0.4
          ? { type: pick(rng, CONTACT_TYPES) }
          : r < 0.7
            ? { owner_id: pick(rng, ctx.owners) }
            : { emails: [{ email: `${slug(str(cur.name))}${int(rng, 100, 999)}@example.com`, type: 'work' }] };
      return change;
    },
  },
  crm_deal: {
    name: 'crm_deal',
    raw: dealRaw,
    idPrefix: 'deal_',
    filterable: ['id', 'name', 'amount', 'currency', 'stage', 'company_id', 'owner_id'],
    make(rng, ctx) {
      const f = {
        name: `${pick(rng, CO_A)} ${pick(rng, ['renewal', 'expansion', 'pilot', 'upgrade', 'new business'])}`,
        amount: int(rng, 10, 5000) * 100,
        currency: 'USD',
        stage: pick(rng, STAGES),
        company_id: optionalId(rng, ctx, 'crm_company', 0.05),
        owner_id: pick(rng, ctx.owners),
      };
      return f;
    },
    mutate(rng) {
      const change: Fields = rng() < 0.5 ? { amount: int(rng, 10, 5000) * 100 } : { stage: pick(rng, STAGES) };
      return change;
    },
  },
  hris_employee: {
    name: 'hris_employee',
    raw: employeeRaw,
    idPrefix: 'emp_',
    filterable: ['id', 'name', 'department', 'employment_status', 'manager_id'],
    make(rng, ctx) {
      const { first, last } = personName(rng);
      const f = { name: `${first} ${last}`, department: pick(rng, DEPARTMENTS), employment_status: pick(rng, EMPLOYMENT), manager_id: optionalId(rng, ctx, 'hris_employee', 0.15) };
      return f;
    },
    mutate(rng) {
      const change: Fields = rng() < 0.5 ? { department: pick(rng, DEPARTMENTS) } : { employment_status: pick(rng, EMPLOYMENT) };
      return change;
    },
  },
};

/** Seeding order: companies and employees first, so contacts, deals and managers can point at them. */
export const OBJECT_TYPE_NAMES = ['crm_company', 'hris_employee', 'crm_contact', 'crm_deal'] as const;
