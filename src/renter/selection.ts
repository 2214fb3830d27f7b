/**
 * Farmer selection: which farmers get the pieces of a segment.
 *
 * Filters first (hard rules): not disqualified on-chain nor by us, price at
 * or under the ceiling, enough free capacity for a piece, not excluded (this
 * segment already uses it, or it just failed). Then at most one farmer per
 * failure domain — the /24 subnet of its first IPv4 address (/48 for IPv6,
 * the host name for DNS) — so one rack, one NAT or one operator with a block
 * of addresses cannot hold more than one piece of a segment. Loopback tests
 * that run every farmer on 127.0.0.1 switch the rule off (`sameSubnetOk`);
 * farmers on 127.0.N.1 already differ in their /24.
 *
 * Among the survivors the draw is weighted, not greedy: always picking the
 * "best" few would pile every segment onto the same farmers and never learn
 * anything about the others. Weight = reliability² × speed factor, where
 * reliability blends the chain's audit record with our own transfer record
 * (Laplace-smoothed, so new farmers start at 1/2 rather than 0 or 1) and the
 * speed factor compares a farmer's measured throughput with the median
 * (clamped to [¼, 4]). Weighted sampling without replacement uses the
 * Efraimidis–Spirakis keys u^(1/w).
 */
import type { FarmerRecord } from "../metadata/types.js";
import type { FarmerCandidate } from "./types.js";

/** Hard limits of a selection. */
export interface SelectionPolicy {
  /** Highest acceptable price per TB-month (token units); undefined = any. */
  maxPriceTbMonth?: bigint | undefined;
  /** Allow several pieces of one segment in one /24 (loopback tests only). */
  sameSubnetOk?: boolean | undefined;
  /** Our own failure ratio above which a farmer is not used (after at least 4 attempts). Default 0.5. */
  maxFailureRatio?: number | undefined;
  /** Verification failures after which a farmer is not used again. Default 3. */
  maxCorrupt?: number | undefined;
  /**
   * How long a farmer that "fails too often" is left out after its last
   * failure, in ms (default 10 minutes). Without this a farmer that failed
   * while it was down (a restart, a network cut) would be shunned forever,
   * since a farmer that is never tried can never improve its record.
   */
  failureCooldownMs?: number | undefined;
  /** The clock, for tests. Default Date.now. */
  now?: (() => number) | undefined;
}

/** Default of {@link SelectionPolicy.failureCooldownMs}. */
export const FAILURE_COOLDOWN_MS = 10 * 60_000;

/** The failure domain of a farmer (see the module note). */
export function subnetKey(multiaddrs: readonly string[], fallback: string): string {
  for (const ma of multiaddrs) {
    const v4 = /^\/ip4\/(\d+)\.(\d+)\.(\d+)\.(\d+)(\/|$)/.exec(ma);
    if (v4 !== null) return `ip4:${v4[1]}.${v4[2]}.${v4[3]}`;
  }
  for (const ma of multiaddrs) {
    const v6 = /^\/ip6\/([0-9a-fA-F:]+)(\/|$)/.exec(ma);
    if (v6 !== null) return `ip6:${expandIp6(v6[1]!).slice(0, 3).join(":")}`;
    const dns = /^\/dns[46]?\/([^/]+)/.exec(ma);
    if (dns !== null) return `dns:${dns[1]!.toLowerCase()}`;
  }
  return `addr:${fallback}`;
}

function expandIp6(text: string): string[] {
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : new Array(Math.max(0, 8 - h.length - t.length)).fill("0");
  return [...h, ...zeros, ...t].map((g) => g.toLowerCase().padStart(4, "0"));
}

/** The failure domain selection uses for `farmer` under `policy`. */
export function failureDomain(farmer: { address: string; multiaddrs: readonly string[] }, policy: SelectionPolicy): string {
  return policy.sameSubnetOk ? `addr:${farmer.address}` : subnetKey(farmer.multiaddrs, farmer.address);
}

/** Why a candidate was filtered out, or undefined when it is eligible. */
export function ineligibleReason(
  candidate: FarmerCandidate,
  record: FarmerRecord | undefined,
  policy: SelectionPolicy,
  pieceBytes: number,
): string | undefined {
  if (candidate.disqualified) return "disqualified on-chain";
  if (record?.disqualified) return "disqualified by this renter";
  if (policy.maxPriceTbMonth !== undefined && candidate.priceTbMonth > policy.maxPriceTbMonth) return "too expensive";
  if (candidate.freeBytes !== undefined && candidate.freeBytes < BigInt(pieceBytes)) return "not enough free space";
  if (record !== undefined) {
    if (record.corrupt >= (policy.maxCorrupt ?? 3)) return "returned corrupt data";
    const attempts = record.successes + record.failures;
    const cooling =
      record.lastFailureAt !== undefined && (policy.now ?? Date.now)() - record.lastFailureAt < (policy.failureCooldownMs ?? FAILURE_COOLDOWN_MS);
    if (attempts >= 4 && record.failures / attempts > (policy.maxFailureRatio ?? 0.5) && cooling) return "fails too often";
  }
  return undefined;
}

/** Selection weight of a candidate (see the module note). */
export function farmerWeight(candidate: FarmerCandidate, record: FarmerRecord | undefined, medianSpeed: number): number {
  const ok = candidate.chainSuccesses + (record?.successes ?? 0);
  const bad = candidate.chainFailures + (record?.failures ?? 0) + 4 * (record?.corrupt ?? 0);
  const reliability = (ok + 1) / (ok + bad + 2);
  let speed = 1;
  if (record !== undefined && record.ms > 0 && medianSpeed > 0) {
    speed = Math.min(4, Math.max(0.25, record.bytes / record.ms / medianSpeed));
  }
  return reliability * reliability * speed;
}

/** Inputs of {@link selectFarmers}. */
export interface SelectInput {
  candidates: readonly FarmerCandidate[];
  /** Our records by lowercase address. */
  records: ReadonlyMap<string, FarmerRecord>;
  count: number;
  pieceBytes: number;
  policy: SelectionPolicy;
  /** Addresses not to pick (already used by this segment, or failed). */
  exclude?: ReadonlySet<string>;
  /** Failure domains already used by this segment. */
  usedSubnets?: ReadonlySet<string>;
  /** Uniform [0,1) source; tests inject a seeded one. */
  random?: () => number;
}

/**
 * Picks up to `count` distinct eligible farmers, at most one per failure
 * domain (unless the policy allows it), weighted to fast, reliable ones.
 * Returns fewer when not enough are eligible; the caller decides whether that
 * is an error.
 */
export function selectFarmers(input: SelectInput): FarmerCandidate[] {
  const random = input.random ?? Math.random;
  const speeds = [...input.records.values()].filter((r) => r.ms > 0).map((r) => r.bytes / r.ms).sort((a, b) => a - b);
  const median = speeds.length === 0 ? 0 : speeds[Math.floor(speeds.length / 2)]!;
  const keyed: Array<{ c: FarmerCandidate; key: number }> = [];
  for (const c of input.candidates) {
    if (input.exclude?.has(c.address)) continue;
    const record = input.records.get(c.address);
    if (ineligibleReason(c, record, input.policy, input.pieceBytes) !== undefined) continue;
    const w = Math.max(1e-6, farmerWeight(c, record, median));
    keyed.push({ c, key: Math.log(Math.max(Number.MIN_VALUE, random())) / w });
  }
  keyed.sort((a, b) => b.key - a.key);
  const used = new Set(input.usedSubnets ?? []);
  const picked: FarmerCandidate[] = [];
  for (const { c } of keyed) {
    if (picked.length >= input.count) break;
    const subnet = failureDomain(c, input.policy);
    if (used.has(subnet)) continue;
    used.add(subnet);
    picked.push(c);
  }
  return picked;
}
