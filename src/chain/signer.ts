/**
 * Providers and nonce-safe signers. ethers caches RPC answers for 250 ms by
 * default, which makes two quick transactions from one wallet read the same
 * pending nonce; the provider here disables that cache and every signer is
 * wrapped in a NonceManager, so concurrent sends get consecutive nonces.
 */
import {
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
 * A NonceManager that never leaves a nonce gap: ethers' NonceManager takes the
 * next nonce before the node has accepted the transaction, so one reverting
 * send would make every later transaction wait forever behind the gap. Here
 * the gas is estimated first (a revert throws before any nonce is taken), and
 * a send that still fails resets the counter from the node.
 *
 * The estimate gets a margin: it is computed against the pending block, but
 * the transaction may be mined in a later block whose timestamp takes a
 * costlier path (a deal checkpoint written to a new storage slot instead of
 * an existing one costs ~20k more gas). Without the margin such a transaction
 * runs out of gas although the estimate succeeded.
 */
export class SafeNonceManager extends NonceManager {
  override connect(provider: null | Provider): SafeNonceManager {
    return new SafeNonceManager(this.signer.connect(provider));
  }

  override async sendTransaction(tx: TransactionRequest): Promise<TransactionResponse> {
    const request = { ...tx };
    if (request.gasLimit === undefined || request.gasLimit === null) {
      const estimate = await this.estimateGas(request);
      request.gasLimit = estimate + estimate / GAS_MARGIN_DIVISOR + GAS_MARGIN_FIXED;
    }
    try {
      return await super.sendTransaction(request);
    } catch (error) {
      this.reset();
      throw error;
    }
  }
}

/** Longest a dstor process waits for a transaction it sent to be mined, in ms. */
export const TX_MINED_TIMEOUT_MS = 120_000;

/** A sent transaction as ethers returns it (plain or from a contract call). */
interface SentTransaction<R> {
  readonly hash?: string;
  readonly nonce?: number;
  wait(confirms?: number, timeout?: number): Promise<R | null>;
}

/**
 * Waits until `sent` is mined, for at most `timeoutMs`. ethers' `wait()`
 * alone waits forever: a transaction stuck behind a nonce gap (an earlier
 * send that failed after later ones went out) or on a chain that stopped
 * mining would hang a put or a farmer's start with nothing in the logs. Here
 * it fails with `TIMEOUT`, naming the transaction; a revert throws as before.
 */
export async function mined<R>(sent: SentTransaction<R> | Promise<SentTransaction<R>>, what: string, timeoutMs = TX_MINED_TIMEOUT_MS): Promise<R> {
  const tx = await sent;
  let receipt: R | null;
  try {
    receipt = await tx.wait(1, timeoutMs);
  } catch (error) {
    if (!isError(error, "TIMEOUT")) throw error;
    throw new DstorError("TIMEOUT", `${what}: transaction ${tx.hash ?? "?"} (nonce ${tx.nonce ?? "?"}) was not mined within ${Math.round(timeoutMs / 1000)} s`, {
      cause: error,
      details: { hash: tx.hash, nonce: tx.nonce, timeoutMs },
    });
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
