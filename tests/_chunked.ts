// A raw HTTP/1.1 response reader that shows the wire format: the exact status line, every header line as sent
// (repeated fields stay separate), and the body framing (Content-Length, chunked transfer coding, or until close).
// Bodies can be streamed piece by piece, so a 1 GiB download never has to sit in memory.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The head of a response, as it was on the wire. */
export interface RawHead {
  /** The status line, without its CRLF. */
  statusLine: string;
  status: number;
  /** The reason phrase: everything after the status code and its space. */
  reason: string;
  /** Every header line in order, the name as sent. */
  fields: Array<[string, string]>;
}

/** The values of every header line called `name` (case-insensitive), in order. */
export function headerValues(head: RawHead, name: string): string[] {
  const lower = name.toLowerCase();
  return head.fields.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

/** The one value of header `name`, or undefined; throws when the header line is repeated. */
export function header(head: RawHead, name: string): string | undefined {
  const values = headerValues(head, name);
  if (values.length > 1) throw new Error(`Header ${name} sent ${values.length} times: ${JSON.stringify(values)}`);
  return values[0];
}

/** How a body was delimited. */
export type Framing = "none" | "length" | "chunked" | "close";

/** One chunk of a chunked body, with the time its last data byte arrived. */
export interface ChunkInfo {
  size: number;
  at: number;
}

/** A body read by {@linkcode RawReader.readBody}. */
export interface RawBody {
  framing: Framing;
  /** Bytes of body data (after removing the chunked coding). */
  length: number;
  /** The chunks of a chunked body, without the last zero-size one. */
  chunks: ChunkInfo[];
  /** Trailer fields of a chunked body. */
  trailers: Array<[string, string]>;
  /** The body itself, when collected. */
  bytes: Uint8Array;
}

/** A whole response. */
export interface RawResponse extends RawHead {
  body: RawBody;
  text: string;
}

export interface BodyOptions {
  /** The response answers HEAD (or is otherwise bodiless): read no body. */
  head?: boolean;
  /** Called with each piece of body data; the bytes are reused afterwards, so consume them at once. */
  onData?: (bytes: Uint8Array) => void;
  /** Keep the body in `RawBody.bytes` (default true; turn off for huge bodies). */
  collect?: boolean;
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
}

/** Thrown when the response is not valid HTTP/1.1 framing. */
export class FramingError extends Error {}

/** Thrown when the peer sends nothing for too long. */
export class ReadTimeout extends Error {}

/** Reads responses from one connection. */
export class RawReader {
  #conn: Deno.Conn;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #timedOut = false;
  /** True once the peer closed the connection (or it failed). */
  closed = false;

  constructor(conn: Deno.Conn, bufferSize = 256 * 1024) {
    this.#conn = conn;
    this.#buf = new Uint8Array(bufferSize);
  }

  get #available(): number {
    return this.#end - this.#start;
  }

  /** Reads more bytes into the buffer; false when the connection has closed. */
  async #fill(deadline: number): Promise<boolean> {
    if (this.#timedOut) throw new ReadTimeout("An earlier read timed out; this reader cannot be used any more");
    if (this.closed) return false;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
    }
    const target = this.#buf.subarray(this.#end);
    const pending = this.#conn.read(target).catch(() => null);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - performance.now()));
    });
    try {
      const n = await Promise.race([pending, timeout]);
      if (n === "timeout") {
        this.#timedOut = true; // the read stays pending until the caller closes the connection
        throw new ReadTimeout("Timed out waiting for the server to send more bytes");
      }
      if (n === null) {
        this.closed = true;
        return false;
      }
      this.#end += n;
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The index just past the next CRLF in the buffer, or -1. */
  #lineEnd(from = this.#start): number {
    for (let i = from; i + 1 < this.#end; i++) {
      if (this.#buf[i] === 13 && this.#buf[i + 1] === 10) return i + 2;
    }
    return -1;
  }

  /** Reads one CRLF-terminated line (without the CRLF); undefined when the connection closes first. */
  async #readLine(deadline: number, limit = 65536): Promise<string | undefined> {
    let scanned = 0; // bytes after #start already searched; #fill may move the data, so never an absolute index
    for (;;) {
      const end = this.#lineEnd(this.#start + scanned);
      if (end !== -1) {
        const line = decoder.decode(this.#buf.subarray(this.#start, end - 2));
        this.#start = end;
        return line;
      }
      if (this.#available > limit) throw new FramingError(`Line longer than ${limit} bytes`);
      scanned = Math.max(0, this.#available - 1);
      if (!await this.#fill(deadline)) {
        if (this.#available > 0) {
          throw new FramingError(`Connection closed inside a line: ${JSON.stringify(this.#peek())}`);
        }
        return undefined;
      }
    }
  }

  #peek(): string {
    return decoder.decode(this.#buf.subarray(this.#start, Math.min(this.#end, this.#start + 200)));
  }

  /** Reads a response head; undefined when the connection closed before any byte of it. */
  async readHead(options: { timeoutMs?: number } = {}): Promise<RawHead | undefined> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    const statusLine = await this.#readLine(deadline);
    if (statusLine === undefined) return undefined;
    const match = statusLine.match(/^HTTP\/1\.[01] (\d{3}) (.*)$/);
    if (!match) throw new FramingError(`Bad status line: ${JSON.stringify(statusLine)}`);
    const fields: Array<[string, string]> = [];
    for (;;) {
      const line = await this.#readLine(deadline);
      if (line === undefined) throw new FramingError("Connection closed inside the response head");
      if (line === "") break;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new FramingError(`Bad header line: ${JSON.stringify(line)}`);
      fields.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    return { statusLine, status: Number(match[1]), reason: match[2], fields };
  }

  /** Reads the body that follows `head`, framed as RFC 9112 section 6.3 says. */
  async readBody(head: RawHead, options: BodyOptions = {}): Promise<RawBody> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    const collect = options.collect ?? true;
    const parts: Uint8Array[] = [];
    let length = 0;
    const deliver = (bytes: Uint8Array) => {
      length += bytes.length;
      options.onData?.(bytes);
      if (collect) parts.push(bytes.slice());
    };
    const result = (framing: Framing, chunks: ChunkInfo[] = [], trailers: Array<[string, string]> = []): RawBody => {
      const bytes = new Uint8Array(collect ? length : 0);
      let offset = 0;
      for (const part of parts) {
        bytes.set(part, offset);
        offset += part.length;
      }
      return { framing, length, chunks, trailers, bytes };
    };

    if (options.head || head.status < 200 || head.status === 204 || head.status === 304) return result("none");
    const codings = headerValues(head, "transfer-encoding").join(",").split(",").map((s) => s.trim().toLowerCase())
      .filter((s) => s !== "");
    const lengths = headerValues(head, "content-length");
    if (codings.length > 0) {
      if (lengths.length > 0) throw new FramingError("Both Transfer-Encoding and Content-Length sent");
      if (codings.at(-1) !== "chunked") throw new FramingError(`Unexpected Transfer-Encoding: ${codings}`);
      const chunks: ChunkInfo[] = [];
      for (;;) {
        const sizeLine = await this.#readLine(deadline);
        if (sizeLine === undefined) throw new FramingError("Connection closed before the last chunk");
        const sizeText = sizeLine.split(";")[0].trim();
        if (!/^[0-9a-fA-F]+$/.test(sizeText)) {
          throw new FramingError(`Bad chunk size line: ${JSON.stringify(sizeLine)}`);
        }
        const size = parseInt(sizeText, 16);
        if (size === 0) break;
        await this.#readExactly(size, deadline, deliver);
        chunks.push({ size, at: performance.now() });
        const end = await this.#readLine(deadline, 2);
        if (end !== "") throw new FramingError(`Chunk data not followed by CRLF: ${JSON.stringify(end)}`);
      }
      const trailers: Array<[string, string]> = [];
      for (;;) {
        const line = await this.#readLine(deadline);
        if (line === undefined) throw new FramingError("Connection closed inside the trailer section");
        if (line === "") break;
        const colon = line.indexOf(":");
        trailers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
      }
      return result("chunked", chunks, trailers);
    }
    if (lengths.length > 0) {
      if (lengths.length > 1 || !/^\d+$/.test(lengths[0])) {
        throw new FramingError(`Bad Content-Length: ${JSON.stringify(lengths)}`);
      }
      await this.#readExactly(Number(lengths[0]), deadline, deliver);
      return result("length");
    }
    // Neither: the body runs until the server closes the connection.
    for (;;) {
      if (this.#available > 0) {
        deliver(this.#buf.subarray(this.#start, this.#end));
        this.#start = this.#end;
      }
      if (!await this.#fill(deadline)) break;
    }
    return result("close");
  }

  async #readExactly(count: number, deadline: number, deliver: (bytes: Uint8Array) => void): Promise<void> {
    let remaining = count;
    while (remaining > 0) {
      if (this.#available === 0 && !await this.#fill(deadline)) {
        throw new FramingError(`Connection closed with ${remaining} of ${count} body bytes missing`);
      }
      const take = Math.min(remaining, this.#available);
      deliver(this.#buf.subarray(this.#start, this.#start + take));
      this.#start += take;
      remaining -= take;
    }
  }

  /** Reads a whole response; undefined when the connection closed before it began. */
  async read(options: BodyOptions = {}): Promise<RawResponse | undefined> {
    const head = await this.readHead(options);
    if (!head) return undefined;
    const body = await this.readBody(head, options);
    return { ...head, body, text: decoder.decode(body.bytes) };
  }

  /** True when the peer closes the connection within `timeoutMs` without sending anything more. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    try {
      while (await this.#fill(deadline)) {
        // keep reading until the close
      }
    } catch (error) {
      if (error instanceof ReadTimeout) return false;
      throw error;
    }
    return this.#available === 0;
  }
}

/** A raw connection to the server on 127.0.0.1 and its reader. */
export interface RawConnection {
  conn: Deno.TcpConn;
  reader: RawReader;
  /** Writes all of `data`. */
  send(data: string | Uint8Array): Promise<void>;
  /** Closes the connection; closing twice is harmless. */
  close(): void;
  [Symbol.dispose](): void;
}

/** Opens a raw connection to 127.0.0.1:`port`. */
export async function openRaw(port: number): Promise<RawConnection> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  return {
    conn,
    reader: new RawReader(conn),
    async send(data: string | Uint8Array) {
      const bytes = typeof data === "string" ? encoder.encode(data) : data;
      let offset = 0;
      while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
    },
    close,
    [Symbol.dispose]: close,
  };
}

/** Sends `raw` on a fresh connection and reads one whole response. */
export async function rawRequest(port: number, raw: string, options: BodyOptions = {}): Promise<RawResponse> {
  using connection = await openRaw(port);
  await connection.send(raw);
  const response = await connection.reader.read(options);
  if (!response) throw new Error(`Connection closed without a response to ${JSON.stringify(raw.split("\r\n")[0])}`);
  return response;
}
