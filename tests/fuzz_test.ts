// End to end: seeded random mutations of valid requests, sent in pieces to a real server process.
// Every case must end in bounded time with well-formed responses or a closed connection, and the
// server must keep serving. What the first answer must be comes from an independent judge of the
// bytes (tests/_reference_http.ts), never from the parser under test. Rerun one seed with FUZZ_SEED=<seed>; FUZZ_CASES changes the count.
import assert from "node:assert/strict";
import { ERROR_STATUSES, judge, type Verdict } from "./_reference_http.ts";
import { assertHello, get, request, startServer } from "./_server.ts";

const CASES = Number(Deno.env.get("FUZZ_CASES") ?? 5000);
const CONCURRENCY = 16;
// From the first byte written to the server's answer or close.
const CASE_MS = 3000;

const envSeed = Deno.env.get("FUZZ_SEED");
if (envSeed !== undefined && envSeed !== "" && !/^[0-9]+$/.test(envSeed)) {
  throw new Error(`FUZZ_SEED must be an unsigned integer, got ${JSON.stringify(envSeed)}`);
}
const SEED = envSeed === undefined || envSeed === "" ? Math.floor(Math.random() * 2 ** 32) : Number(envSeed) >>> 0;

/** mulberry32: a tiny 32-bit PRNG, good enough to pick mutations; returns numbers in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const BASES: ReadonlyArray<{ name: string; text: string }> = [
  { name: "GET with Host", text: "GET /index.html?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n" },
  {
    name: "POST with a Content-Length body",
    text: "POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
  },
  {
    name: "chunked POST with a trailer",
    text: "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
      '5;name="v"\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc\r\n\r\n',
  },
  { name: "HTTP/1.0", text: "GET / HTTP/1.0\r\nUser-Agent: fuzz\r\n\r\n" },
  {
    name: "pipelined pair",
    text:
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nPOST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc",
  },
];

// Bytes that parsers trip over: line endings, NUL, obs-text, separators, digits, HTAB.
const NASTY = [0x0d, 0x0a, 0x00, 0x20, 0x3a, 0x09, 0x2c, 0x3b, 0x22, 0x30, 0x39, 0x46, 0x7f, 0x80, 0xff];

function randomByte(rng: Random): number {
  if (rng.chance(0.4)) return rng.pick(NASTY);
  if (rng.chance(0.3)) return rng.between(0x80, 0xff);
  return rng.int(256);
}

type Mutation = "flip" | "insert" | "delete" | "duplicate" | "truncate";
const MUTATIONS: readonly Mutation[] = ["flip", "insert", "delete", "duplicate", "truncate"];

function mutate(input: Uint8Array, rng: Random, mutation: Mutation): Uint8Array {
  const bytes = [...input];
  const at = rng.int(bytes.length + 1);
  switch (mutation) {
    case "flip": {
      if (bytes.length === 0) break;
      const i = Math.min(at, bytes.length - 1);
      bytes[i] = rng.chance(0.5) ? bytes[i] ^ (1 << rng.int(8)) : randomByte(rng);
      break;
    }
    case "insert": {
      const count = rng.between(1, 8);
      const inserted = rng.chance(0.2) ? [0x0d, 0x0a] : Array.from({ length: count }, () => randomByte(rng));
      bytes.splice(at, 0, ...inserted);
      break;
    }
    case "delete":
      bytes.splice(at, rng.between(1, 16));
      break;
    case "duplicate": {
      const length = rng.between(1, 32);
      bytes.splice(at, 0, ...bytes.slice(at, at + length));
      break;
    }
    case "truncate":
      bytes.length = Math.max(1, at);
      break;
  }
  return Uint8Array.from(bytes);
}

interface Case {
  index: number;
  base: string;
  mutations: Mutation[];
  bytes: Uint8Array;
  /** Where the bytes are split between writes, ascending. */
  splits: number[];
  /** Milliseconds to wait before each write after the first. */
  pauses: number[];
}

/** Each case has its own generator, so a case is the same whatever ran before it. */
function makeCase(index: number): Case {
  const rng = new Random((SEED ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0);
  const base = rng.pick(BASES);
  let bytes: Uint8Array = encoder.encode(base.text);
  const mutations: Mutation[] = [];
  // A few cases go through unmutated, as a check that valid requests still get answers.
  const count = rng.chance(0.05) ? 0 : rng.between(1, 4);
  for (let k = 0; k < count; k++) {
    const mutation = rng.pick(MUTATIONS);
    mutations.push(mutation);
    bytes = mutate(bytes, rng, mutation);
  }
  const splits = [...new Set(Array.from({ length: rng.between(0, 4) }, () => rng.between(1, bytes.length - 1)))]
    .filter((n) => n > 0 && n < bytes.length)
    .sort((a, b) => a - b);
  const pauses = splits.map(() => (rng.chance(0.5) ? 0 : rng.between(1, 5)));
  return { index, base: base.name, mutations, bytes, splits, pauses };
}

const STATUS_LINE = /^HTTP\/1\.1 [1-5][0-9][0-9] [^\r\n]*$/;

/**
 * Checks that `data` is a sequence of whole, well-formed responses. When the request may have
 * been a HEAD, bodies cannot be told apart from what follows, so only the first status line counts.
 */
function checkResponses(data: Uint8Array, lenient: boolean): { count: number; first?: number; problem?: string } {
  const text = decoder.decode(data);
  let pos = 0;
  let count = 0;
  let first: number | undefined;
  while (pos < data.length) {
    const headEnd = text.indexOf("\r\n\r\n", pos);
    if (headEnd === -1) return { count, problem: `incomplete or malformed response at byte ${pos}` };
    const lines = text.slice(pos, headEnd).split("\r\n");
    if (!STATUS_LINE.test(lines[0])) return { count, problem: `bad status line ${JSON.stringify(lines[0])}` };
    count++;
    const status = Number(lines[0].slice(9, 12));
    first ??= status;
    if (lenient) return { count, first };
    let length = 0;
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) return { count, first, problem: `bad header line ${JSON.stringify(line)}` };
      if (line.slice(0, colon).toLowerCase() === "content-length") length = Number(line.slice(colon + 1).trim());
    }
    if (status < 200) length = 0;
    // The text is only ASCII up to here (status lines and headers), so string and byte offsets agree.
    pos = headEnd + 4 + length;
    if (pos > data.length) return { count, first, problem: "response body cut short" };
  }
  return { count, first };
}

type Outcome = { ok: true; answered: number; closed: boolean } | { ok: false; problem: string };

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function runCase(port: number, fuzz: Case, verdict: Verdict): Promise<Outcome> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const received: Uint8Array[] = [];
  let receivedLength = 0;
  let closed = false;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, CASE_MS);
  // Settles when the server sends its first bytes or closes.
  const heard = Promise.withResolvers<void>();
  const reading = (async () => {
    const chunk = new Uint8Array(65536);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(chunk);
      } catch {
        n = null; // reset by the server, or closed by our timer
      }
      if (n === null) {
        if (!timedOut) closed = true;
        heard.resolve();
        return;
      }
      received.push(chunk.slice(0, n));
      receivedLength += n;
      heard.resolve();
    }
  })();
  try {
    const bounds = [0, ...fuzz.splits, fuzz.bytes.length];
    for (let k = 0; k + 1 < bounds.length; k++) {
      if (k > 0 && fuzz.pauses[k - 1] > 0) await delay(fuzz.pauses[k - 1]);
      const piece = fuzz.bytes.subarray(bounds[k], bounds[k + 1]);
      let offset = 0;
      while (offset < piece.length) offset += await conn.write(piece.subarray(offset));
    }
    // A client that closes its side has gone, as far as the server knows: one that sent a whole
    // request waits for the answer first (within the case's time), as a real client does.
    if (verdict.kind === "valid" || verdict.kind === "invalid") await heard.promise;
    // A truncated request waits for more bytes: EOF tells the server none are coming.
    await conn.closeWrite();
  } catch {
    // The server closed first (after an error answer, say); what it sent is still read below.
  }
  await reading;
  clearTimeout(timer);
  closeQuietly(conn);

  const data = new Uint8Array(receivedLength);
  let at = 0;
  for (const part of received) {
    data.set(part, at);
    at += part.length;
  }
  const lenient = decoder.decode(fuzz.bytes).includes("HEAD");
  const { count, first, problem } = checkResponses(data, lenient);
  const got = JSON.stringify(decoder.decode(data.subarray(0, 300)));
  if (problem !== undefined && (closed || count === 0)) return { ok: false, problem: `${problem}; received ${got}` };
  if (!closed && count === 0) {
    return { ok: false, problem: `neither an answer nor a close within ${CASE_MS} ms` };
  }
  // The judge says what the first answer must be where it is sure: an answer as a request for a
  // plainly valid one, an error status and a close for a plainly malformed one.
  if (verdict.kind === "valid" && (first === undefined || ERROR_STATUSES.has(first))) {
    return { ok: false, problem: `a valid request, but the server answered ${got}${closed ? " and closed" : ""}` };
  }
  if (verdict.kind === "invalid" && (first === undefined || !ERROR_STATUSES.has(first) || !closed)) {
    return { ok: false, problem: `malformed (${verdict.why}), but the server answered ${got}` };
  }
  return { ok: true, answered: count, closed };
}

function describeCase(fuzz: Case): string {
  return [
    `case ${fuzz.index} (seed ${SEED}): ${fuzz.base}, mutations [${fuzz.mutations.join(", ")}], ` +
    `writes split at [${fuzz.splits.join(", ")}]`,
    `  bytes (JSON): ${JSON.stringify(decoder.decode(fuzz.bytes))}`,
    `  bytes (hex):  ${hex(fuzz.bytes)}`,
  ].join("\n");
}

Deno.test(`the server survives ${CASES} mutated requests sent in pieces`, async () => {
  console.log(`fuzz seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);
  await using server = await startServer(["--quiet", "--workers", "2"]);
  const started = performance.now();
  const failures: string[] = [];
  let answered = 0;
  let closedSilently = 0;
  let answeredButOpen = 0;
  let next = 0;
  const verdicts: Record<Verdict["kind"], number> = { valid: 0, invalid: 0, incomplete: 0, unsure: 0 };
  const lane = async () => {
    while (next < CASES) {
      const fuzz = makeCase(next++);
      const verdict = judge(fuzz.bytes);
      verdicts[verdict.kind]++;
      const outcome = await runCase(server.port, fuzz, verdict);
      if (!outcome.ok) failures.push(`${describeCase(fuzz)}\n  problem: ${outcome.problem}`);
      else if (outcome.answered === 0) closedSilently++;
      else if (!outcome.closed) answeredButOpen++;
      else answered++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `${CASES} cases in ${seconds} s: ${answered} answered then closed, ${closedSilently} closed without an answer, ` +
      `${answeredButOpen} answered but left open after EOF, ${failures.length} failed; ` +
      `the judge: ${verdicts.valid} valid, ${verdicts.invalid} invalid, ${verdicts.incomplete} incomplete, ` +
      `${verdicts.unsure} unsure`,
  );

  assert.equal(
    failures.length,
    0,
    `${failures.length} of ${CASES} cases failed (seed ${SEED}):\n${failures.slice(0, 10).join("\n")}`,
  );
  // A client that sent its request and then closed its side has gone: once answered, the server
  // closes too, instead of holding the socket open until a timeout.
  assert.equal(answeredButOpen, 0, `${answeredButOpen} cases were answered but left open after the client's EOF`);
  // The mutations reach both outcomes, or the fuzzer is not exercising the parser; and the judge
  // is sure often enough in both directions to hold the server to something.
  assert.ok(answered > CASES / 10 && closedSilently > 0, `answered ${answered}, closed silently ${closedSilently}`);
  assert.ok(verdicts.valid > CASES / 20 && verdicts.invalid > CASES / 20, `the judge: ${JSON.stringify(verdicts)}`);

  const response = await request(server.port, get("/"));
  assert.equal(response.status, 200);
  assertHello(response.text);
  const exited = await Promise.race([server.status.then(() => true), delay(0).then(() => false)]);
  assert.equal(exited, false, `the server process exited:\n${server.output()}`);
  assert.deepEqual(server.errors, [], "the server wrote to stderr");
});
