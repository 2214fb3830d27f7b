import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { Wallet } from "ethers";
import fc from "fast-check";
import { DstorError, isDstorError } from "../../src/core/errors.js";
import { buildMerkleTree, merkleMultiproof, verifyMerkleMultiproof } from "../../src/crypto/merkle.js";
import { FrameReader, readAllData, readData, writeData } from "../../src/protocol/codec.js";
import { MAX_HEADER_BYTES, MAX_PIECE_BYTES } from "../../src/protocol/limits.js";
import {
  type AuditRequest,
  type AuditResponse,
  type DeleteRequest,
  decodeAuditRequest,
  decodeAuditResponse,
  decodeDeleteRequest,
  decodeDeleteResponse,
  decodeGetRequest,
  decodeGetResponse,
  decodeInfoRequest,
  decodeInfoResponse,
  decodePutRequest,
  decodePutResponse,
  encodeAuditRequest,
  encodeAuditResponse,
  encodeDeleteRequest,
  encodeDeleteResponse,
  encodeGetRequest,
  encodeGetResponse,
  encodeInfoRequest,
  encodeInfoResponse,
  encodePutRequest,
  encodePutResponse,
  errorFromResponse,
  errorResponse,
  type GetRequest,
  type GetResponse,
  type InfoResponse,
  type PutRequest,
  readMessage,
  resolveGetRange,
  writeMessage,
} from "../../src/protocol/messages.js";
import { createOrder, type DealChecker, OrderAction, signOrder, verifyOrder } from "../../src/protocol/orders.js";
import { MemorySerialStore } from "../../src/protocol/serials.js";
import { countingSource, MemoryPipe, socketSink, splitAt, tcpPair } from "./helpers.js";

const renter = Wallet.createRandom();
const pieceId = randomBytes(32).toString("hex");
const hex32 = (): string => randomBytes(32).toString("hex");
const signed = await signOrder(
  renter,
  31337n,
  createOrder({ chainId: 31337n, dealId: 3n, renter: renter.address, farmer: Wallet.createRandom().address, pieceId, action: OrderAction.Get, maxBytes: 1n << 30n }),
);
const base = { v: 1 as const, order: signed.order, signature: signed.signature, pieceId };

const putRequest: PutRequest = { ...base, size: 5000, root: hex32() };
const getRequest: GetRequest = { ...base, offset: 2048, length: 4096 };
const auditRequest: AuditRequest = { ...base, leafIndex: 12 };
const deleteRequest: DeleteRequest = { ...base };
const getResponse: GetResponse = { v: 1, ok: true, size: 5000, root: hex32(), startLeaf: 1, endLeaf: 3, proof: [hex32(), hex32(), hex32()], leafCount: 5 };
const auditResponse: AuditResponse = { v: 1, ok: true, leaf: new Uint8Array(randomBytes(1024)), proof: [hex32(), hex32(), hex32()], leafCount: 7 };
const infoResponse: InfoResponse = {
  v: 1,
  version: "0.1.0",
  peerId: "12D3KooWGzBmX1xWvQ2pGGD9cJYB8yFyrGmfAu6t6KW2Gg1vr7kD",
  wallet: renter.address.toLowerCase(),
  capacity: 500_000_000_000n,
  free: 400_000_000_000n,
  priceTbMonth: 10n ** 18n,
  chainId: 31337n,
};
const refusal = { v: 1 as const, ok: false as const, code: "ORDER_EXPIRED" as const, message: "the order has expired" };

/** Every decoder with valid encodings of what it accepts, and its encoder for round trips. */
const CODECS: { name: string; decode: (b: Uint8Array) => unknown; encode: (m: never) => Uint8Array; samples: Uint8Array[] }[] = [
  { name: "put request", decode: decodePutRequest, encode: encodePutRequest, samples: [encodePutRequest(putRequest)] },
  { name: "put response", decode: decodePutResponse, encode: encodePutResponse, samples: [encodePutResponse({ v: 1, ok: true }), encodePutResponse(refusal)] },
  { name: "get request", decode: decodeGetRequest, encode: encodeGetRequest, samples: [encodeGetRequest(getRequest), encodeGetRequest({ ...base })] },
  { name: "get response", decode: decodeGetResponse, encode: encodeGetResponse, samples: [encodeGetResponse(getResponse), encodeGetResponse(refusal)] },
  { name: "audit request", decode: decodeAuditRequest, encode: encodeAuditRequest, samples: [encodeAuditRequest(auditRequest)] },
  { name: "audit response", decode: decodeAuditResponse, encode: encodeAuditResponse, samples: [encodeAuditResponse(auditResponse), encodeAuditResponse(refusal)] },
  { name: "delete request", decode: decodeDeleteRequest, encode: encodeDeleteRequest, samples: [encodeDeleteRequest(deleteRequest)] },
  { name: "delete response", decode: decodeDeleteResponse, encode: encodeDeleteResponse, samples: [encodeDeleteResponse({ v: 1, ok: true }), encodeDeleteResponse(refusal)] },
  { name: "info request", decode: decodeInfoRequest, encode: encodeInfoRequest, samples: [encodeInfoRequest()] },
  { name: "info response", decode: decodeInfoResponse, encode: encodeInfoResponse, samples: [encodeInfoResponse(infoResponse)] },
];

const ALLOWED = ["MESSAGE_MALFORMED", "MESSAGE_TOO_LARGE", "UNSUPPORTED_VERSION"] as const;

/** The fuzz oracle: a decoder returns a value that re-encodes to itself, or throws one of the three wire codes. */
function decodeOrAllowedError(codec: (typeof CODECS)[number], bytes: Uint8Array): void {
  let value: unknown;
  try {
    value = codec.decode(bytes);
  } catch (error) {
    assert.ok(error instanceof DstorError, `${codec.name}: non-DstorError ${String(error)}`);
    assert.ok(isDstorError(error, ...ALLOWED), `${codec.name}: unexpected code ${error.code}`);
    return;
  }
  // Accepted: it must be a stable, canonical message.
  assert.deepEqual(codec.decode(codec.encode(value as never)), value, codec.name);
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const json = (bytes: Uint8Array): Record<string, unknown> => JSON.parse(dec.decode(bytes)) as Record<string, unknown>;
const bytesOf = (value: unknown): Uint8Array => enc.encode(JSON.stringify(value));

describe("messages: round trips", () => {
  test("every message decodes to what was encoded", () => {
    assert.deepEqual(decodePutRequest(encodePutRequest(putRequest)), putRequest);
    assert.deepEqual(decodeGetRequest(encodeGetRequest(getRequest)), getRequest);
    assert.deepEqual(decodeGetRequest(encodeGetRequest({ ...base })), { ...base });
    assert.deepEqual(decodeAuditRequest(encodeAuditRequest(auditRequest)), auditRequest);
    assert.deepEqual(decodeDeleteRequest(encodeDeleteRequest(deleteRequest)), deleteRequest);
    assert.deepEqual(decodeInfoRequest(encodeInfoRequest()), { v: 1 });
    assert.deepEqual(decodeGetResponse(encodeGetResponse(getResponse)), getResponse);
    assert.deepEqual(decodeAuditResponse(encodeAuditResponse(auditResponse)), auditResponse);
    assert.deepEqual(decodeInfoResponse(encodeInfoResponse(infoResponse)), infoResponse);
    assert.deepEqual(decodePutResponse(encodePutResponse(refusal)), refusal);
    assert.deepEqual(decodeDeleteResponse(encodeDeleteResponse({ v: 1, ok: true })), { v: 1, ok: true });
  });

  test("bigints travel as decimal strings, hashes as bare lowercase hex", () => {
    const wire = json(encodePutRequest(putRequest));
    const order = wire.order as Record<string, unknown>;
    assert.equal(order.dealId, "3");
    assert.equal(typeof order.expiry, "string");
    assert.match(String(wire.pieceId), /^[0-9a-f]{64}$/);
    assert.match(String(wire.signature), /^0x[0-9a-f]{130}$/);
    assert.equal(json(encodeInfoResponse(infoResponse)).priceTbMonth, "1000000000000000000");
  });

  test("encoders refuse values that would not survive the wire", () => {
    assert.throws(() => encodePutRequest({ ...putRequest, pieceId: pieceId.toUpperCase() }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => encodeGetResponse({ ...getResponse, proof: [hex32()] }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => encodeAuditResponse({ ...auditResponse, leaf: new Uint8Array(1025) }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });
});

describe("messages: strict validation", () => {
  const put = json(encodePutRequest(putRequest));
  const malformed = (e: unknown): boolean => isDstorError(e, "MESSAGE_MALFORMED");

  test("version: checked first; other numbers are UNSUPPORTED_VERSION, non-numbers MESSAGE_MALFORMED", () => {
    assert.throws(() => decodePutRequest(bytesOf({ v: 2, whatever: true })), (e: unknown) => isDstorError(e, "UNSUPPORTED_VERSION"));
    assert.throws(() => decodeInfoResponse(bytesOf({ v: 0 })), (e: unknown) => isDstorError(e, "UNSUPPORTED_VERSION"));
    assert.throws(() => decodeInfoRequest(bytesOf({})), malformed);
    assert.throws(() => decodeInfoRequest(bytesOf({ v: "1" })), malformed);
    assert.throws(() => decodePutRequest(bytesOf({ ...put, v: null })), malformed);
  });

  test("unknown fields, prototype keys, non-objects and bad UTF-8 are MESSAGE_MALFORMED", () => {
    assert.throws(() => decodePutRequest(bytesOf({ ...put, extra: 1 })), malformed);
    assert.throws(() => decodeInfoRequest(enc.encode('{"v":1,"__proto__":{"x":1}}')), malformed);
    for (const text of ["[]", "null", "1", '"x"', "{", ""]) assert.throws(() => decodeInfoRequest(enc.encode(text)), malformed, text);
    assert.throws(() => decodeInfoRequest(new Uint8Array([0x7b, 0xff, 0x7d])), malformed);
    assert.throws(() => decodeInfoRequest(enc.encode(`${"[".repeat(8000)}${"]".repeat(8000)}`)), malformed);
  });

  test("field spellings: lowercase exact-length hex, canonical decimals, integer sizes", () => {
    const order = put.order as Record<string, unknown>;
    const cases: Record<string, unknown>[] = [
      { ...put, pieceId: pieceId.toUpperCase() },
      { ...put, pieceId: `0x${pieceId}` },
      { ...put, pieceId: pieceId.slice(2) },
      { ...put, root: 5 },
      { ...put, size: 1.5 },
      { ...put, size: -1 },
      { ...put, size: "5000" },
      { ...put, signature: String(put.signature).toUpperCase() },
      { ...put, order: { ...order, dealId: "0x3" } },
      { ...put, order: { ...order, dealId: "-3" } },
      { ...put, order: { ...order, expiry: "1e9" } },
      { ...put, order: { ...order, farmer: String(order.farmer).slice(0, 41) } },
      { ...put, order: null },
      { ...put, order: undefined },
    ];
    for (const c of cases) assert.throws(() => decodePutRequest(bytesOf(c)), malformed, JSON.stringify(c).slice(0, 200));
  });

  test("size limits: oversized header frames and pieces are MESSAGE_TOO_LARGE", () => {
    const tooLarge = (e: unknown): boolean => isDstorError(e, "MESSAGE_TOO_LARGE");
    assert.throws(() => decodePutRequest(new Uint8Array(MAX_HEADER_BYTES + 1)), tooLarge);
    assert.throws(() => decodePutRequest(bytesOf({ ...put, size: MAX_PIECE_BYTES + 1 })), tooLarge);
    assert.equal(decodePutRequest(bytesOf({ ...put, size: MAX_PIECE_BYTES })).size, MAX_PIECE_BYTES);
    assert.throws(() => encodeInfoResponse({ ...infoResponse, version: "x".repeat(MAX_HEADER_BYTES) }), (e: unknown) => isDstorError(e, "MESSAGE_TOO_LARGE"));
  });

  test("get: offset leaf-aligned; response range, leafCount and proof length consistent", () => {
    const get = json(encodeGetRequest(getRequest));
    assert.throws(() => decodeGetRequest(bytesOf({ ...get, offset: 1000 })), malformed);
    assert.throws(() => decodeGetRequest(bytesOf({ ...get, length: 0 })), malformed);
    assert.equal(decodeGetRequest(bytesOf({ ...get, length: 1000 })).length, 1000, "an unaligned length may end at the piece end");
    const res = json(encodeGetResponse(getResponse));
    for (const c of [
      { ...res, leafCount: 6 },
      { ...res, startLeaf: 3, endLeaf: 3 },
      { ...res, endLeaf: 6 },
      { ...res, proof: [] },
      { ...res, proof: [hex32(), hex32()] },
      { ...res, proof: [hex32(), hex32(), hex32(), hex32()] },
      { ...res, root: "ab" },
    ]) {
      assert.throws(() => decodeGetResponse(bytesOf(c)), malformed, JSON.stringify(c));
    }
    const { root: _root, ...withoutRoot } = res;
    assert.equal(decodeGetResponse(bytesOf(withoutRoot)).ok, true, "root is optional");
  });

  test("audit: leaf is canonical base64 of at most 1024 bytes", () => {
    const res = json(encodeAuditResponse(auditResponse));
    for (const leaf of ["QR==", "QQ", "Q===", "@@@@", Buffer.alloc(1025).toString("base64"), 7]) {
      assert.throws(() => decodeAuditResponse(bytesOf({ ...res, leaf })), malformed, String(leaf));
    }
    const empty = decodeAuditResponse(bytesOf({ ...res, leaf: "" }));
    assert.ok(empty.ok && empty.leaf.byteLength === 0, "the empty piece's leaf is empty");
    const one = decodeAuditResponse(bytesOf({ ...res, leaf: "QQ==" }));
    assert.ok(one.ok);
    assert.deepEqual([...one.leaf], [65]);
  });

  test("info: peer id, wallet and amounts are validated", () => {
    const res = json(encodeInfoResponse(infoResponse));
    for (const c of [{ ...res, peerId: "not a peer id" }, { ...res, wallet: renter.address }, { ...res, capacity: 5 }, { ...res, free: "01" }, { ...res, chainId: undefined }]) {
      assert.throws(() => decodeInfoResponse(bytesOf(c)), malformed, JSON.stringify(c));
    }
  });

  test("error responses: codes kept, unknown ones become INTERNAL, internals never leak", () => {
    const unknown = decodePutResponse(bytesOf({ v: 1, ok: false, code: "SOMETHING_NEW", message: "hi" }));
    assert.deepEqual(unknown, { v: 1, ok: false, code: "INTERNAL", message: "SOMETHING_NEW: hi" });
    assert.throws(() => decodePutResponse(bytesOf({ v: 1, ok: false, code: "lower", message: "" })), malformed);
    assert.throws(() => decodePutResponse(bytesOf({ v: 1, ok: "yes" })), malformed);
    assert.throws(() => decodePutResponse(bytesOf({ v: 1, ok: true, code: "X" })), malformed);
    const kept = errorResponse(new DstorError("QUOTA_EXCEEDED", "full"));
    assert.equal(kept.code, "QUOTA_EXCEEDED");
    const hidden = errorResponse(new Error("ENOENT: /secret/path"));
    assert.equal(hidden.code, "INTERNAL");
    assert.ok(!hidden.message.includes("secret"));
    const error = errorFromResponse(refusal, "peer1");
    assert.ok(isDstorError(error, "ORDER_EXPIRED"));
    assert.deepEqual(error.details, { remote: true, peer: "peer1" });
  });
});

describe("resolveGetRange", () => {
  test("leaf-aligned ranges, the short last leaf, the empty piece", () => {
    assert.deepEqual(resolveGetRange(5000), { start: 0, end: 5000, startLeaf: 0, endLeaf: 5, leafCount: 5 });
    assert.deepEqual(resolveGetRange(5000, 4096), { start: 4096, end: 5000, startLeaf: 4, endLeaf: 5, leafCount: 5 });
    assert.deepEqual(resolveGetRange(5000, 1024, 2048), { start: 1024, end: 3072, startLeaf: 1, endLeaf: 3, leafCount: 5 });
    assert.deepEqual(resolveGetRange(5000, 2048, 2952), { start: 2048, end: 5000, startLeaf: 2, endLeaf: 5, leafCount: 5 });
    assert.deepEqual(resolveGetRange(0), { start: 0, end: 0, startLeaf: 0, endLeaf: 1, leafCount: 1 });
    const bad = (e: unknown): boolean => isDstorError(e, "INVALID_ARGUMENT");
    for (const [size, offset, length] of [
      [5000, 100, undefined],
      [5000, 0, 1000],
      [5000, 5120, undefined],
      [5000, 4096, 1000],
      [5000, 4096, 2000],
      [5000, 0, 0],
      [0, 0, 1],
      [0, 1024, undefined],
    ] as const) {
      assert.throws(() => resolveGetRange(size, offset, length), bad, `${size} ${offset} ${length}`);
    }
  });
});

describe("messages: fuzz (every decoder, never another exception, never a hang)", () => {
  test("random bytes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: CODECS.length - 1 }), fc.uint8Array({ maxLength: 600 }), (i, bytes) => decodeOrAllowedError(CODECS[i]!, bytes)),
      { numRuns: 2000 },
    );
  });

  test("random JSON values", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: CODECS.length - 1 }), fc.jsonValue({ maxDepth: 4 }), (i, value) => decodeOrAllowedError(CODECS[i]!, bytesOf(value))),
      { numRuns: 2000 },
    );
  });

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("char" as const), at: fc.nat(), char: fc.constantFrom(..."0123456789abcdefABCDEF\"{}[],:-.xeE \\") }),
  );

  test("byte-level mutations of valid messages", () => {
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (ci, si, mutations) => {
        const codec = CODECS[ci % CODECS.length]!;
        let bytes = [...codec.samples[si % codec.samples.length]!];
        for (const m of mutations) {
          const at = bytes.length === 0 ? 0 : m.at % bytes.length;
          if (m.kind === "flip") bytes[at] = (bytes[at] ?? 0) ^ m.bits;
          else if (m.kind === "insert") bytes.splice(at, 0, m.byte);
          else if (m.kind === "delete") bytes.splice(at, m.count);
          else if (m.kind === "truncate") bytes = bytes.slice(0, at);
          else bytes[at] = m.char.charCodeAt(0);
        }
        decodeOrAllowedError(codec, new Uint8Array(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  test("structural mutations: fields replaced, removed or added, at the top and inside the order", () => {
    fc.assert(
      fc.property(
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.constantFrom("replace", "remove", "add"),
        fc.boolean(),
        fc.jsonValue({ maxDepth: 2 }),
        (ci, si, ki, op, inOrder, value) => {
          const codec = CODECS[ci % CODECS.length]!;
          const root = json(codec.samples[si % codec.samples.length]!);
          const target = inOrder && typeof root.order === "object" && root.order !== null ? (root.order as Record<string, unknown>) : root;
          const keys = Object.keys(target);
          const key = op === "add" ? `k${ki % 3}` : keys[ki % keys.length]!;
          if (op === "remove") delete target[key];
          else target[key] = value;
          decodeOrAllowedError(codec, bytesOf(root));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("random byte streams through readMessage end in a value or a wire error", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: CODECS.length - 1 }), fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 5 }), async (i, bytes, rawCuts) => {
        const codec = CODECS[i]!;
        // Half the time, put a plausible prefix in front so bodies get parsed too.
        const framed = i % 2 === 0 ? new Uint8Array([0, 0, (bytes.length >> 8) & 0xff, bytes.length & 0xff, ...bytes]) : bytes;
        const cuts = rawCuts.map((c) => c % (framed.length + 1)).sort((a, b) => a - b);
        try {
          await readMessage(new FrameReader(countingSource(splitAt(framed, cuts))), codec.decode, { timeoutMs: 5000 });
        } catch (error) {
          assert.ok(isDstorError(error, ...ALLOWED), String(error));
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("messages over a stream", () => {
  test("a get exchange: request, header with multiproof, data, verified by the renter", async () => {
    const piece = new Uint8Array(randomBytes(10_000));
    const tree = buildMerkleTree(piece);
    const toFarmer = new MemoryPipe();
    const toRenter = new MemoryPipe(4096);

    const farmer = (async () => {
      const reader = new FrameReader(toFarmer);
      const request = await readMessage(reader, decodeGetRequest);
      const range = resolveGetRange(piece.byteLength, request.offset, request.length);
      const proof = merkleMultiproof(tree, range.startLeaf, range.endLeaf).map((h) => Buffer.from(h).toString("hex"));
      await writeMessage(
        toRenter,
        encodeGetResponse({ v: 1, ok: true, size: piece.byteLength, startLeaf: range.startLeaf, endLeaf: range.endLeaf, proof, leafCount: range.leafCount }),
      );
      await writeData(toRenter, piece.subarray(range.start, range.end), { frameBytes: 1024 });
      toRenter.end();
    })();

    await writeMessage(toFarmer, encodeGetRequest({ ...base, offset: 3072, length: 5120 }));
    toFarmer.end();
    const reader = new FrameReader(toRenter);
    const header = await readMessage(reader, decodeGetResponse);
    assert.ok(header.ok);
    const data = await readAllData(reader, 5120);
    await reader.readEnd();
    await farmer;
    const proof = header.proof.map((h) => new Uint8Array(Buffer.from(h, "hex")));
    assert.ok(verifyMerkleMultiproof(tree.root, header.leafCount, header.startLeaf, data, proof));
    assert.deepEqual(data, piece.subarray(3072, 8192));
  });
});

describe("a put exchange over TCP on 127.0.0.1", () => {
  test("order verified, data checked against the declared root, replay answered with ORDER_REPLAYED", async () => {
    const farmerWallet = Wallet.createRandom();
    const farmerAddress = farmerWallet.address.toLowerCase();
    const piece = new Uint8Array(randomBytes(70_000));
    const root = Buffer.from(buildMerkleTree(piece).root).toString("hex");
    const id = randomBytes(32).toString("hex");
    const serials = new MemorySerialStore();
    const deals: DealChecker = { isFunded: async (r, dealId, f) => r === renter.address.toLowerCase() && dealId === 9n && f === farmerAddress };
    const order = await signOrder(
      renter,
      31337n,
      createOrder({ chainId: 31337n, dealId: 9n, renter: renter.address, farmer: farmerAddress, pieceId: id, action: OrderAction.Put, maxBytes: piece.byteLength }),
    );

    /** The farmer side of one put stream, as src/farmer will do it. */
    const serve = async (socket: import("node:net").Socket): Promise<void> => {
      const reader = new FrameReader(socket);
      const sink = socketSink(socket);
      try {
        const request = await readMessage(reader, decodePutRequest);
        await verifyOrder(request, {
          chainId: 31337n,
          farmerAddress,
          nowSeconds: Math.floor(Date.now() / 1000),
          expectedAction: OrderAction.Put,
          expectedPieceId: request.pieceId,
          bytesRequested: request.size,
          serials,
          deals,
        });
        const received: Uint8Array[] = [];
        for await (const frame of readData(reader, request.size)) received.push(frame.slice());
        const got = Buffer.from(buildMerkleTree(new Uint8Array(Buffer.concat(received))).root).toString("hex");
        if (got !== request.root) throw new DstorError("INTEGRITY_MISMATCH", "the data does not match the declared root");
        await writeMessage(sink, encodePutResponse({ v: 1, ok: true }));
      } catch (error) {
        await writeMessage(sink, encodePutResponse(errorResponse(error)));
      } finally {
        socket.end();
      }
    };

    const put = async (): Promise<void> => {
      const pair = await tcpPair();
      try {
        const served = serve(pair.server);
        const sink = socketSink(pair.client);
        // The farmer may refuse right after the header, so read its answer
        // while uploading and stop the upload as soon as the answer is in.
        const stopUpload = new AbortController();
        const answering = readMessage(new FrameReader(pair.client), decodePutResponse, { timeoutMs: 30_000 }).finally(() => stopUpload.abort());
        const uploading = (async () => {
          await writeMessage(sink, encodePutRequest({ v: 1, ...order, pieceId: id, size: piece.byteLength, root }));
          await writeData(sink, piece, { signal: stopUpload.signal });
        })().catch((error: unknown) => {
          if (!stopUpload.signal.aborted) throw error;
        });
        const answer = await answering;
        await uploading;
        await served;
        if (!answer.ok) throw errorFromResponse(answer);
      } finally {
        await pair.close();
      }
    };

    await put();
    await assert.rejects(put(), (e: unknown) => isDstorError(e, "ORDER_REPLAYED") && e.details.remote === true);
  });
});
