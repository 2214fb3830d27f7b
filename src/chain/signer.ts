/**
 * Providers and nonce-safe signers. ethers caches RPC answers for 250 ms by
 * default, which makes two quick transactions from one wallet read the same
 * pending nonce; the provider here disables that cache and every signer is
 * wrapped in a NonceManager, so concurrent sends get consecutive nonces.
 */
import {
  type BlockTag,
  Interface,
  JsonRpcProvider,
  NonceManager,
  type Provider,
  type Signer,
  type TransactionRequest,
  type TransactionResponse,
  Wallet,
  isError,
} from "ethers";
import { DstorError } from "../core/errors.js";
import { BlockhashRandomnessAbi, DstorTokenAbi, MarketAbi, RegistryAbi } from "./generated/contracts.js";

/** How long {@link DstorProvider.close} lets requests in flight finish. */
const CLOSE_GRACE_MS = 5_000;

/**
 * A JSON-RPC provider that can be closed without leaving a rejected request
 * behind. ethers' `destroy()` rejects every request still queued or in flight
 * with "provider destroyed; cancelled request", and some of those nobody
 * awaits: a transaction waiter keeps a per-block listener that checks
 * confirmations (`eth_blockNumber`) and may fire once more after `wait()`
 * resolved. In a CLI that rejection is unhandled and kills the process after
 * its work succeeded (seen in the renter e2e test). `close()` stops every
 * subscription, lets what is in flight finish (bounded), then destroys.
 */
export class DstorProvider extends JsonRpcProvider {
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  override send(method: string, params: Array<unknown> | Record<string, unknown>): Promise<unknown> {
    const request = super.send(method, params);
    const tracked = request.catch(() => {});
    this.#inFlight.add(tracked);
    void tracked.then(() => this.#inFlight.delete(tracked));
    return request;
  }

  /** Stops subscriptions, waits up to `graceMs` for requests in flight, then destroys. Idempotent. */
  close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    this.#closing ??= (async () => {
      await this.removeAllListeners();
      const deadline = Date.now() + graceMs;
      // A finished request may start another (a listener's next step): drain until quiet.
      while (this.#inFlight.size > 0 && Date.now() < deadline) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...this.#inFlight]),
          new Promise((resolve) => {
            timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
          }),
        ]);
        clearTimeout(timer);
        await new Promise((resolve) => setImmediate(resolve));
      }
      this.destroy();
    })();
    return this.#closing;
  }
}

/**
 * A JSON-RPC provider with the response cache disabled (see the module note)
 * and the chain id asked once: without `staticNetwork` ethers sends an
 * `eth_chainId` next to every call, block and log read to notice the endpoint
 * switching chains — 44 % of a dev-chain farmer's requests (2.6 of 6 a
 * second). A switched chain is a misconfiguration that the checks against
 * the deployment's chain id and the chain id in every signature already catch.
 */
export function createProvider(rpcUrl: string, options: { pollingIntervalMs?: number } = {}): DstorProvider {
  const provider = new DstorProvider(rpcUrl, undefined, { cacheTimeout: -1, batchMaxCount: 1, staticNetwork: true });
  provider.pollingInterval = options.pollingIntervalMs ?? 250;
  return provider;
}

/** Gas margin over the estimate: a quarter of it … */
const GAS_MARGIN_DIVISOR = 4n;
/** … plus the price of one fresh storage slot. */
const GAS_MARGIN_FIXED = 25_000n;

/**
 * A NonceManager that never leaves a nonce gap. ethers' NonceManager hands
 * out the next nonce before the node has accepted the transaction and keeps
 * counting when a send fails: a send that failed after a later one went out
 * (a reverting call, a dropped connection while populating the fee data)
 * leaves a gap every later transaction waits behind, and a reset while
 * other sends are between nonce and broadcast hands one nonce out twice.
 *
 * Here the gas is estimated first (a revert throws before any nonce is
 * taken), and taking a nonce, signing and broadcasting run one send at a
 * time: the next nonce is only counted once the node accepted the
 * transaction, and any failure makes the next send ask the node (`pending`
 * counts what it accepted). Sends of one signer wait for each other's
 * signing and broadcast only (one round trip), never for each other's mining.
 *
 * The estimate gets a margin: it is computed against the pending block, but
 * the transaction may be mined in a later block whose timestamp takes a
 * costlier path (a deal checkpoint written to a new storage slot instead of
 * an existing one costs ~20k more gas). Without the margin such a transaction
 * runs out of gas although the estimate succeeded.
 */
export class SafeNonceManager extends NonceManager {
  /** The nonce the next send uses; undefined: ask the node. */
  #next: number | undefined;
  /** The tail of the sends: each broadcasts after the one before it settled. */
  #tail: Promise<unknown> = Promise.resolve();
  /** Counts {@link reset} calls, so a send that began before one does not count on. */
  #resets = 0;
  /** Whether {@link registerSender} knows this manager. */
  #registered = false;

  override connect(provider: null | Provider): SafeNonceManager {
    return new SafeNonceManager(this.signer.connect(provider));
  }

  override async getNonce(blockTag?: BlockTag): Promise<number> {
    if (blockTag === "pending" && this.#next !== undefined) return this.#next;
    return this.signer.getNonce(blockTag);
  }

  /** Skips a nonce (ethers' contract: the next send uses one more). */
  override increment(): void {
    if (this.#next !== undefined) this.#next++;
  }

  /** Forgets the counted nonce: the next send asks the node (also when a send in flight succeeds after this). */
  override reset(): void {
    this.#next = undefined;
    this.#resets++;
  }

  override async sendTransaction(tx: TransactionRequest): Promise<TransactionResponse> {
    const request = { ...tx };
    if (request.gasLimit === undefined || request.gasLimit === null) {
      const estimate = await this.estimateGas(request);
      request.gasLimit = estimate + estimate / GAS_MARGIN_DIVISOR + GAS_MARGIN_FIXED;
    }
    // Fee data and the rest are filled in before the queue (a placeholder
    // nonce keeps the signer from asking the node for one); in the queue only
    // the nonce is set, and signing and the broadcast follow.
    const populated = await this.signer.populateTransaction({ ...request, nonce: 0 });
    if (!this.#registered && typeof populated.from === "string") {
      this.#registered = true;
      registerSender(populated.from, this);
    }
    const send = this.#tail.then(async () => {
      const resets = this.#resets;
      const nonce = this.#next ?? (await this.signer.getNonce("pending"));
      try {
        const sent = await this.signer.sendTransaction({ ...populated, nonce });
        if (this.#resets === resets) this.#next = nonce + 1;
        return sent;
      } catch (error) {
        this.reset();
        throw error;
      }
    });
    this.#tail = send.catch(() => {});
    return send;
  }
}

/**
 * The managers that sent from each address (lowercase `0x`), held weakly: a
 * wait that times out makes them ask the node for the next nonce (see
 * {@link mined}).
 */
const sendersOf = new Map<string, Set<WeakRef<SafeNonceManager>>>();

function registerSender(address: string, manager: SafeNonceManager): void {
  const key = address.toLowerCase();
  const refs = sendersOf.get(key) ?? new Set();
  for (const ref of refs) if (ref.deref() === undefined) refs.delete(ref);
  refs.add(new WeakRef(manager));
  sendersOf.set(key, refs);
}

/** Makes every live manager that sent from `address` ask the node for its next nonce. */
function resetSendersOf(address: string): void {
  const key = address.toLowerCase();
  const refs = sendersOf.get(key);
  if (refs === undefined) return;
  for (const ref of refs) {
    const manager = ref.deref();
    if (manager === undefined) refs.delete(ref);
    else manager.reset();
  }
  if (refs.size === 0) sendersOf.delete(key);
}

/** Longest a dstor process waits for a transaction it sent to be mined, in ms. */
export const TX_MINED_TIMEOUT_MS = 120_000;

/** A sent transaction as ethers returns it (plain or from a contract call). */
interface SentTransaction<R> {
  readonly hash?: string;
  readonly nonce?: number;
  readonly from?: string;
  readonly provider?: Pick<Provider, "getTransaction" | "getTransactionCount"> | null;
  wait(confirms?: number, timeout?: number): Promise<R | null>;
}

/** Why a transaction the node has not mined is stuck, as far as the node tells; "" when it cannot be asked. */
async function stuckReason(tx: SentTransaction<unknown>): Promise<string> {
  const { provider, from, nonce, hash } = tx;
  if (provider === undefined || provider === null || from === undefined || nonce === undefined || hash === undefined) return "";
  try {
    const mined = await provider.getTransactionCount(from, "latest");
    if (mined > nonce) return "another transaction with its nonce was mined (it was replaced)";
    if ((await provider.getTransaction(hash)) === null) return "the node does not know it (dropped)";
    if (mined < nonce) return `it waits behind nonce ${mined}, which was not mined either (a nonce gap or a stalled chain)`;
    return "it is next in line in the node's pool (the chain is not mining)";
  } catch {
    return "";
  }
}

/**
 * Waits until `sent` is mined, for at most `timeoutMs`. ethers' `wait()`
 * alone waits forever: a transaction stuck behind a nonce gap (an earlier
 * send that failed after later ones went out) or on a chain that stopped
 * mining would hang a put or a farmer's start with nothing in the logs. Here
 * it fails with `TIMEOUT`, naming the transaction and what the node says of
 * it (replaced, dropped, behind a gap, or simply not mined), and the signers
 * that sent from its address take their next nonce from the node, so the
 * next send fills a gap a dropped transaction left; a revert throws as before.
 */
export async function mined<R>(sent: SentTransaction<R> | Promise<SentTransaction<R>>, what: string, timeoutMs = TX_MINED_TIMEOUT_MS): Promise<R> {
  const tx = await sent;
  let receipt: R | null;
  try {
    receipt = await tx.wait(1, timeoutMs);
  } catch (error) {
    if (!isError(error, "TIMEOUT")) throw error;
    const reason = await stuckReason(tx);
    // Whatever held it up (a transaction the node dropped leaves a gap that
    // nothing this process sends would fill), the next send asks the node:
    // its pending count stops at the first missing nonce.
    if (tx.from !== undefined) resetSendersOf(tx.from);
    throw new DstorError(
      "TIMEOUT",
      `${what}: transaction ${tx.hash ?? "?"} (nonce ${tx.nonce ?? "?"}) was not mined within ${Math.round(timeoutMs / 1000)} s${reason === "" ? "" : `: ${reason}`}`,
      { cause: error, details: { hash: tx.hash, nonce: tx.nonce, timeoutMs } },
    );
  }
  if (receipt === null) throw new DstorError("CHAIN_CALL_FAILED", `${what}: transaction ${tx.hash ?? "?"} has no receipt`);
  return receipt;
}

/** Wraps `signer` so it can send transactions concurrently (see {@link SafeNonceManager}). */
export function nonceSafe(signer: Signer): SafeNonceManager {
  return signer instanceof SafeNonceManager ? signer : new SafeNonceManager(signer);
}

/** A nonce-safe signer for a private key. */
export function walletSigner(privateKey: string, provider: JsonRpcProvider): SafeNonceManager {
  return nonceSafe(new Wallet(privateKey, provider));
}

const ALL_ERRORS = new Interface([...DstorTokenAbi, ...RegistryAbi, ...MarketAbi, ...BlockhashRandomnessAbi].filter((f) => f.type === "error"));

/**
 * The custom-error name in a failed call or transaction (`"StaleVersion"`),
 * or undefined when the failure carries none.
 */
export function revertName(error: unknown): string | undefined {
  const data = findRevertData(error);
  if (data === undefined) return undefined;
  try {
    return ALL_ERRORS.parseError(data)?.name;
  } catch {
    return undefined;
  }
}

function findRevertData(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; depth < 6 && e !== null && typeof e === "object"; depth++) {
    const obj = e as { data?: unknown; error?: unknown; info?: unknown; cause?: unknown };
    if (typeof obj.data === "string" && obj.data.startsWith("0x") && obj.data.length >= 10) return obj.data;
    if (obj.data !== null && typeof obj.data === "object" && typeof (obj.data as { data?: unknown }).data === "string") {
      return (obj.data as { data: string }).data;
    }
    e = obj.error ?? obj.cause ?? (obj.info as { error?: unknown } | undefined)?.error;
  }
  return undefined;
}

/**
 * Turns an ethers failure into a coded {@link DstorError}: `CHAIN_CALL_FAILED`
 * (with `details.revert` naming the contract's custom error) for reverts,
 * `CHAIN_UNAVAILABLE` for network failures.
 */
export function toChainError(error: unknown, what: string): DstorError {
  if (error instanceof DstorError) return error;
  const revert = revertName(error);
  if (revert !== undefined || isError(error, "CALL_EXCEPTION")) {
    return new DstorError("CHAIN_CALL_FAILED", `${what} was rejected by the contract${revert === undefined ? "" : ` (${revert})`}`, {
      cause: error,
      details: revert === undefined ? {} : { revert },
    });
  }
  if (isError(error, "NETWORK_ERROR") || isError(error, "TIMEOUT") || isError(error, "SERVER_ERROR")) {
    return new DstorError("CHAIN_UNAVAILABLE", `${what} failed: the chain endpoint did not answer; check --chain-rpc`, { cause: error });
  }
  return new DstorError("CHAIN_CALL_FAILED", `${what} failed`, { cause: error });
}
